"""What every job is, list or dataset: the one :class:`Job` protocol, and
:class:`JobClient`, what a job needs of the client that made it.

This module is the floor the job classes (``producers.list_job``,
``producers.dataset_job``) and the client (``producers.client``) all stand on: jobs never
import the client, so nothing here cycles.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from celery import Celery

from tasks.contract.settings import Settings

#: The two kinds of job: ``list`` (texts in, vectors gathered back) and ``dataset``
#: (rows read by the workers, parquet parts written where the job says).
JobKind = Literal["list", "dataset"]


class JobClient(Protocol):
    """What a job needs of the client that made it: the Celery app and its Redis, and
    (for a submit) the fleet's answer to 'which model and version is this?'."""

    app: Celery
    settings: Settings
    #: A model config this client reads instead of the fleet's publication (or None).
    config_source: str | None

    @property
    def redis(self) -> Any: ...

    def resolve_model(self, model: str, key: str) -> tuple[str, str, str]: ...


@runtime_checkable
class Job(Protocol):
    """A submitted job, found again by id from any process (``EmbeddingClient.job``).

    ``status()`` returns the contract's status keys; ``wait()`` blocks until the job
    ends (a list job returns its vectors, a dataset job its output folder) and raises
    :class:`producers.errors.JobFailedError` when chunks failed; ``cancel()`` revokes
    what has not started; ``retry()`` sends again what failed or was never sent;
    ``delete()`` frees the job's keys now. The last three return a count.
    """

    id: str
    model: str
    kind: JobKind

    def status(self) -> dict[str, Any]: ...

    def wait(self, timeout: float | None = 600, progress: bool = False) -> Any: ...

    def cancel(self) -> int: ...

    def retry(self) -> int: ...

    def delete(self) -> int: ...
