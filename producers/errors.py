"""Errors a producer raises before anything is queued, or when a job ends badly."""

from __future__ import annotations

from tasks.contract.errors import EmbedfleetError, InputError, UnknownModelError, UsageError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "FleetError",
    "InputError",
    "JobFailedError",
    "JobNotFoundError",
    "UnknownModelError",
    "UsageError",
]


#: The ``embedfleet`` CLI's exit codes: done; a job failed (or timed out); bad usage,
#: configuration or input (every :class:`UsageError`, an unreachable Redis).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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


class FleetError(EmbedfleetError):
    """Raised when ``embedfleet up`` or ``down`` cannot do what was asked (a process
    that would not start, a port in use, a pid file naming a live process)."""
