"""The errors that cross the wire: what a producer can see of a failed chunk.

Workers raise subclasses (``workers.errors``); the chunk task retries a
:class:`TransientError` and fails the chunk on a :class:`PermanentError`, recording
its message on the job so ``embedfleet status`` names the chunk and the reason.
"""

from __future__ import annotations


class EmbedfleetError(Exception):
    """Raised for any failure embedfleet itself detects (base of the tree)."""


class PermanentError(EmbedfleetError):
    """Raised when retrying cannot help: bad input, bad config, a model that cannot load."""


class TransientError(EmbedfleetError):
    """Raised when the same chunk may succeed later (no room to load a model right now)."""


class InvalidRequest(PermanentError):
    """Raised when a chunk message does not follow the wire format (``tasks.contract.wire``)."""


class JobCancelled(PermanentError):
    """Raised when a chunk of a cancelled job reaches a worker."""


class TooManyDeliveries(PermanentError):
    """Raised when a chunk came back more often than ``EMBEDFLEET_MAX_DELIVERIES``:
    every earlier delivery died with its worker (out of memory, killed, crashed)."""


class UnsignedJob(PermanentError):
    """Raised when a dataset job record's signature does not verify with this fleet's
    job key (``tasks.contract.signing``): a worker then reads and writes nothing."""


class PathRefused(PermanentError):
    """Raised when a dataset job names a local path a worker never reads or writes
    (``/proc``, ``/sys``, ``/dev``, or outside ``EMBEDFLEET_DATA_ROOTS``)."""


class RedisMemoryFull(PermanentError):
    """Raised when Redis refused a write for memory (``maxmemory`` reached, noeviction):
    the chunk is recorded failed, naming Redis memory; ``retry`` sends it once there is room."""


class ConfigError(PermanentError):
    """Raised when a model config or a setting cannot be read or holds an invalid value."""


class UsageError(EmbedfleetError):
    """Raised for a request that cannot be served as given (CLI exit code 2)."""


class UnknownModelError(UsageError, PermanentError):
    """Raised when a job or a chunk names a model the config does not define: a submit
    refuses it (a usage error, exit 2), a worker fails the chunk (never retried)."""


class InputError(UsageError):
    """Raised when an input file or text list is empty or holds a row that is not text."""


class InputChanged(InputError):
    """Raised when a dataset chunk's input no longer holds what the scan pinned at submit
    (``tasks.io.pinning``): ``the input changed since it was submitted: FILE bytes A-B``."""
