"""The client side: submit jobs, follow them, gather results. Never imports torch."""

from producers.client import EmbeddingClient, Job
from producers.errors import (
    InputError,
    JobFailedError,
    JobNotFoundError,
    UnknownModelError,
    UsageError,
)

__all__ = [
    "EmbeddingClient",
    "Job",
    "InputError",
    "JobFailedError",
    "JobNotFoundError",
    "UnknownModelError",
    "UsageError",
]
