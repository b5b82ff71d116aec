"""Planning a dataset job before it is queued: its chunks sized to the job and the
fleet (shared by ``submit_dataset`` and dry runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import producers.resolving as resolving
from tasks.contract import catalog
from tasks.io import scan, sources
from tasks.io.plan import DEFAULT_CHUNK_ROWS, chunk_rows_for
from tasks.jobs.redis_retry import retry_while_unreachable

if TYPE_CHECKING:
    from producers.job import JobClient


def plan_input(
    client: JobClient,
    files: list[sources.InputFile],
    field: str | None,
    id_field: str | None,
    chunk_rows: int | None,
    asked: str | None,
    model: str,
    plan: scan.Plan | None = None,
) -> scan.Plan:
    """Scan ``files`` into chunks of ``chunk_rows`` rows or, when None, of the rows
    :func:`tasks.io.plan.chunk_rows_for` picks for the job's size and the live worker
    threads serving ``model`` (a job smaller than one chunk per thread is scanned
    again, cheaply, with the smaller chunks)."""
    rows = chunk_rows or DEFAULT_CHUNK_ROWS
    if plan is None:
        plan = scan.plan(files, field, id_field, chunk_rows=rows, model=asked)
    if chunk_rows is not None:
        return plan
    threads = retry_while_unreachable(lambda: catalog.live_threads(client.redis, model))
    sized = chunk_rows_for(plan.rows, threads, resolving.seconds_per_text(client.redis, model))
    if sized < rows:
        plan = scan.plan(files, field, id_field, chunk_rows=sized, model=asked)
    return plan
