"""An ETL task that embeds a dataset and survives its own retries, for any scheduler.

Cron, Airflow, Dagster, Prefect or a shell loop: whatever runs this again after a
failure or a timeout gets the same job back, because the submit carries the run's id as
its idempotency key. A retry queues nothing new and writes nothing twice: it waits for
the job the first try started (resuming failed chunks, rewriting missing parts) and
verifies the output before it reports success.

    python docs/examples/etl_task.py --run-id 2026-12-06 --model all-MiniLM-L6-v2 \\
        --input data/day/2026-12-06/ --output out/2026-12-06/ [--deadline 3600]

Exit 0: the output is complete and verified; 1: the job failed, the deadline passed or
the output does not verify (run it again: it picks up where it stopped); 2: bad usage.
See docs/ORCHESTRATION.md for the same task in Airflow.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from producers import EmbeddingClient
from producers.errors import JobFailedError, UsageError


class OutputNotVerified(RuntimeError):
    """Raised when the output folder does not hold what the job's manifest says."""


def run(
    client: EmbeddingClient,
    run_id: str,
    source: str,
    output: str,
    model: str,
    deadline_s: float = 3600.0,
) -> dict[str, Any]:
    """Embed ``source`` into ``output`` once per ``run_id``; returns the job's summary.

    Raises ``TimeoutError`` when ``deadline_s`` passes (the job keeps running; the next
    try waits for it), :class:`JobFailedError` when chunks failed for good, and
    :class:`OutputNotVerified` when the written output does not match its manifest.
    """
    deadline = time.monotonic() + deadline_s
    job = client.submit_dataset(source, model, output, idempotency_key=f"etl:{run_id}")
    status = job.status()  # a try before this one saw chunks fail, or parts went missing
    if status["state"] == "FAILURE" or status.get("output_problem"):
        job.retry()  # sends only the failed or missing chunks again
    _wait(job, deadline)
    problems = verify(client, job)
    if problems:  # a part went missing since: rewrite exactly those, once
        job.retry()
        _wait(job, deadline)
        problems = verify(client, job)
    if problems:
        raise OutputNotVerified(f"{job.output}: " + "; ".join(problems))
    status = job.status()
    return {"job": job.id, "rows": status["texts"], "parts": status["total"], "output": job.output}


def _wait(job: Any, deadline: float) -> None:
    job.wait(timeout=max(0.0, deadline - time.monotonic()))


def verify(client: EmbeddingClient, job: Any) -> list[str]:
    """What is wrong with the job's output folder (empty when nothing is).

    ``client.verify(dest)`` checks parts against the manifest's checksums where this
    version of embedfleet has it; otherwise the manifest, the part files and their row
    counts are checked here (local folders).
    """
    if hasattr(client, "verify"):  # every row once, every part's checksum, no stray file
        report = client.verify(job.output)
        return [] if report.ok else report.lines()
    import pyarrow.parquet as pq

    folder = Path(job.output)
    manifest_path = folder / "_manifest.json"
    if not manifest_path.exists():
        return ["no _manifest.json: the job has not finished writing"]
    manifest = json.loads(manifest_path.read_text())
    problems = []
    if manifest.get("job") != job.id:
        problems.append(f"the manifest names job {manifest.get('job')}, not {job.id}")
    parts = sorted(folder.glob("part-*.parquet"))
    if len(parts) != manifest.get("parts"):
        problems.append(f"{len(parts)} part files, the manifest says {manifest.get('parts')}")
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    if rows != manifest.get("rows"):
        problems.append(f"{rows} rows in the parts, the manifest says {manifest.get('rows')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", required=True, help="the scheduler's id of this run")
    parser.add_argument("--model", required=True, help="model or alias to embed with")
    parser.add_argument("--input", required=True, help="file, folder, glob or s3:// URL")
    parser.add_argument("--output", required=True, help="DEST/ folder or s3://bucket/prefix/")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds this try waits")
    args = parser.parse_args(argv)
    try:
        summary = run(
            EmbeddingClient(), args.run_id, args.input, args.output, args.model, args.deadline
        )
    except UsageError as exc:
        print(f"etl_task: {exc}", file=sys.stderr)
        return 2
    except (JobFailedError, TimeoutError, OutputNotVerified) as exc:
        print(f"etl_task: {exc} (run again to resume)", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
