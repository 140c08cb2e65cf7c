"""The harness's default launcher as a Hydra plugin (Hydra loads launchers from the ``hydra_plugins`` package only);
the stacking is in :mod:`harness.stack_jobs` and :mod:`harness.vectorize`."""
