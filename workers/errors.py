"""The worker's error tree. Permanent errors fail a chunk; transient ones retry it."""

from __future__ import annotations

from tasks.contract.errors import (
    ConfigError,
    EmbedfleetError,
    PermanentError,
    TransientError,
    UnknownModelError,
)


class ModelLoadError(PermanentError):
    """Raised when a configured model cannot be loaded (missing files, bad format...)."""


class ModelTooLargeError(PermanentError):
    """Raised when a model needs more memory than the worker's whole budget."""


class NoRoomError(TransientError):
    """Raised when a model cannot be loaded now because every loaded model is in use."""


class ModelChangedError(PermanentError):
    """Raised when a chunk is pinned to a model version this worker can no longer load."""


class QualityGateError(PermanentError):
    """Raised when an optimized model falls below the quality gate and is not registered."""


class EndpointError(PermanentError):
    """Raised when a remote model endpoint refuses a request (bad input, missing endpoint)."""


class EndpointBusyError(TransientError):
    """Raised when a remote model endpoint stays throttled or unavailable after retries."""


__all__ = [
    "EmbedfleetError",
    "PermanentError",
    "TransientError",
    "ConfigError",
    "UnknownModelError",
    "ModelLoadError",
    "ModelTooLargeError",
    "NoRoomError",
    "ModelChangedError",
    "QualityGateError",
    "EndpointError",
    "EndpointBusyError",
]
