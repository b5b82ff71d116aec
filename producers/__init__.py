"""The client side: submit jobs, follow them, gather results. Never imports torch."""

from producers.client import EmbeddingClient
from producers.dataset_job import DatasetJob
from producers.errors import (
    InputError,
    JobFailedError,
    JobNotFoundError,
    UnknownModelError,
    UsageError,
)
from producers.job import Job
from producers.list_job import ListJob

__all__ = [
    "EmbeddingClient",
    "DatasetJob",
    "Job",
    "ListJob",
    "InputError",
    "JobFailedError",
    "JobNotFoundError",
    "UnknownModelError",
    "UsageError",
]
