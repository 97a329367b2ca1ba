"""Error hierarchy: what went wrong decides whether a row is skipped, retried or the run stops."""

from __future__ import annotations


class StagingError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(StagingError):
    """The configuration is invalid: the run cannot start."""


class CatalogError(StagingError):
    """The catalog file as a whole is unusable (missing columns, unreadable, empty)."""


class InputError(StagingError):
    """One product's input is bad (photo missing, corrupt, too large): that row is skipped."""


class ModelUnavailableError(StagingError):
    """A backend's model or weights cannot be loaded; the message says how to provide them."""


class StageError(StagingError):
    """A stage failed on one product for a reason other than its input."""


class CheckFailed(StagingError):
    """A written output failed a fidelity check; it must not be published."""


class SigningError(StagingError):
    """Content credentials could not be made or read back."""


class UnknownBackendError(ConfigError):
    """A config names a backend that no registry knows."""
