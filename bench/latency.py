"""One-text jobs on a warm worker: latency p50/p95 and where it goes, in one run.

Each job is one real text submitted with the embedding cache off. Per job:

- ``submit``: ``client.submit`` returning (config check, chunk plan, job record, send);
- ``to stored``: from submit returning to the worker storing the chunk result (the
  result's ``date_done``): queue pickup, validation, encode, result store;
- ``encode``: the worker's own encode time of that chunk (its ``chunk_done`` log line);
- ``to gathered``: from the result stored to ``wait`` returning (the producer's poll
  interval, then one MGET);
- ``in-process``: ``SentenceTransformer.encode([text])`` in this process, as a reference.

The queue overhead per chunk is end to end minus the worker's encode. Run side by side
for each first poll pause given: the producer polls after ``FIRST_POLL_S`` (default
2 ms), the pauses growing 1.5x up to ``POLL_INTERVAL_S`` (100 ms); a first pause of
100 ms is the fixed 100 ms polling the producer had before.

    .venv/bin/python bench/latency.py [--jobs 100] [--first-polls 0.1,0.002]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import _fleet


def one_job(client: Any, text: str) -> dict[str, float]:
    from tasks.jobs.jobstore import chunk_task_id

    t0 = time.time()
    p0 = time.perf_counter()
    job = client.submit([text], model=_fleet.MODEL, cache=False)
    p1 = time.perf_counter()
    job.wait(timeout=60)
    p2 = time.perf_counter()
    meta = client.app.backend.get_task_meta(chunk_task_id(job.id, 0))
    done = meta["date_done"]
    if isinstance(done, str):
        done = datetime.fromisoformat(done)
    if done.tzinfo is None:
        done = done.replace(tzinfo=UTC)
    stored = done.timestamp() - t0  # seconds after submit began
    return {
        "submit": p1 - p0,
        "to stored": stored - (p1 - p0),
        "to gathered": (p2 - p0) - stored,
        "end to end": p2 - p0,
    }


def report(label: str, rows: list[dict[str, float]], encode: list[float]) -> None:
    print(f"-- {label}")
    for key in ("end to end", "submit", "to stored", "to gathered"):
        values = [r[key] for r in rows]
        print(
            f"   {key:14} p50 {_fleet.percentile(values, 50) * 1000:7.1f} ms   "
            f"p95 {_fleet.percentile(values, 95) * 1000:7.1f} ms"
        )
    print(
        f"   {'worker encode':14} p50 {_fleet.percentile(encode, 50) * 1000:7.1f} ms   "
        f"p95 {_fleet.percentile(encode, 95) * 1000:7.1f} ms"
    )
    e2e = _fleet.percentile([r["end to end"] for r in rows], 50)
    print(
        f"   queue overhead per chunk (p50 end to end - p50 encode) {(e2e - _fleet.percentile(encode, 50)) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument(
        "--first-polls", default="0.1,0.002", help="producer first poll pauses, seconds"
    )
    args = parser.parse_args()
    _fleet.header("latency: one-text jobs on a warm worker")
    texts = _fleet.load_corpus(args.jobs)
    config = _fleet.write_config({_fleet.MODEL: _fleet.model_entry()})
    from throughput import in_process_model

    import producers.gather as gather

    local = in_process_model(2)
    local_s = []
    for text in texts:
        t0 = time.perf_counter()
        local.encode([text], batch_size=32)
        local_s.append(time.perf_counter() - t0)
    with _fleet.server(), _fleet.workers(config) as (worker,):
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        _fleet.warm(client, _fleet.MODEL, texts, 1)
        default = gather.FIRST_POLL_S
        for first in [float(p) for p in args.first_polls.split(",")]:
            gather.FIRST_POLL_S = first
            before = len(worker.chunk_seconds())
            rows = [one_job(client, t) for t in texts]
            encode = [s for _, s in worker.chunk_seconds()[before:]]
            tag = " (the default)" if first == default else ""
            report(f"first poll after {first * 1000:.0f} ms{tag}, {args.jobs} jobs", rows, encode)
        gather.FIRST_POLL_S = default
    print(
        f"-- in-process encode of one text  p50 {_fleet.percentile(local_s, 50) * 1000:.1f} ms   "
        f"p95 {_fleet.percentile(local_s, 95) * 1000:.1f} ms"
    )
    _fleet.footer()


if __name__ == "__main__":
    main()
