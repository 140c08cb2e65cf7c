"""Errors raised before any run is created (each prints one line and exits with status 2)."""


class ConfigError(ValueError):
    """A config that cannot work; raised before any training starts."""
