"""Errors a producer raises before anything is queued, or when a job ends badly."""

from __future__ import annotations

from tasks.contract.errors import EmbedfleetError, InputError, UnknownModelError, UsageError

__all__ = [
    "InputError",
    "JobFailedError",
    "JobNotFoundError",
    "UnknownModelError",
    "UsageError",
]


class JobNotFoundError(UsageError):
    """Raised when no record exists for a job id (never submitted, or expired)."""


class JobFailedError(EmbedfleetError):
    """Raised by ``Job.wait`` when chunks failed; ``errors`` maps chunk -> reason."""

    def __init__(self, job_id: str, errors: dict[int, str], total: int) -> None:
        self.job_id = job_id
        self.errors = errors
        first = min(errors)
        super().__init__(
            f"job {job_id}: {len(errors)} of {total} chunks failed; chunk {first}: {errors[first]}"
        )
