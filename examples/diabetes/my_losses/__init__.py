"""A user's own package, outside the harness: one robust regression loss, used by ``loss=tukey`` (conf/loss/tukey.yaml)."""
