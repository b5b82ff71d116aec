"""Both kinds of job answer the one ``Job`` protocol, and ``client.job`` is typed by it."""

from __future__ import annotations

import inspect
import typing

import numpy as np

from producers import DatasetJob, Job, ListJob
from producers.client import EmbeddingClient
from tasks.jobs.jobstore import JobRecord

MEMBERS = ("status", "wait", "cancel", "retry", "delete")


def test_both_job_classes_take_every_call_the_protocol_allows() -> None:
    for cls in (ListJob, DatasetJob):
        for name in MEMBERS:
            protocol = inspect.signature(getattr(Job, name))
            actual = inspect.signature(getattr(cls, name))
            # Every parameter of the protocol's method is accepted under the same name.
            for param in protocol.parameters:
                assert param in actual.parameters, f"{cls.__name__}.{name} lacks {param!r}"
        assert cls.kind in typing.get_args(typing.get_type_hints(Job)["kind"])


def test_a_list_job_is_a_job() -> None:
    record = JobRecord(
        id="j1",
        model="m",
        version="v",
        n=1,
        total=1,
        created=0.0,
        order=np.zeros(1, dtype=np.int64),
        bounds=np.array([0, 1]),
    )
    job = ListJob(client=None, record=record)  # type: ignore[arg-type]
    assert isinstance(job, Job) and (job.id, job.model, job.kind) == ("j1", "m", "list")
    assert not isinstance(object(), Job)


def test_client_job_returns_the_protocol() -> None:
    assert typing.get_type_hints(EmbeddingClient.job)["return"] is Job
