"""A user's own package, outside the harness: a loss, a model and a registered loss (used by the tests)."""
