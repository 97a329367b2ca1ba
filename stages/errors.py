"""What an image step raises on purpose; the callers decide whether a row is skipped or the run stops."""

from __future__ import annotations


class StagingError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(StagingError):
    """A setting is invalid: the run cannot start."""


class UnknownBackendError(ConfigError):
    """A config names a backend that no registry knows."""


class InputError(StagingError):
    """One product's input is bad (photo missing, corrupt, too large): that row is skipped."""


class ModelUnavailableError(StagingError):
    """A backend's model or weights cannot be loaded; the message says how to provide them."""


class StageError(StagingError):
    """A step failed on one product for a reason other than its input."""
