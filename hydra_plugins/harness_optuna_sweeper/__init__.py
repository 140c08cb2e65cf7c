"""The harness's Optuna sweeper as a Hydra plugin (Hydra loads sweepers from the ``hydra_plugins`` package only);
the work is in :mod:`harness.tuning`."""
