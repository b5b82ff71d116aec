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
    status = job.status()
    # A try before this one saw chunks fail, or a part went missing since the job
    # finished: send again exactly those chunks (the parts already written stay).
    if status["state"] == "FAILURE" or status.get("output_problem"):
        job.retry()
    job.wait(timeout=max(0.0, deadline - time.monotonic()))
    problems = verify(client, job)
    if problems:
        raise OutputNotVerified(f"{job.output}: " + "; ".join(problems))
    status = job.status()
    return {"job": job.id, "rows": status["texts"], "parts": status["total"], "output": job.output}


def verify(client: EmbeddingClient, job: Any) -> list[str]:
    """What is wrong with the job's output (empty when nothing is): ``client.verify``
    checks every part against the manifest (rows, checksums) and the manifest names
    this job."""
    report = client.verify(job.output)
    problems = [line for line in report.lines() if "FAIL" in line]
    if report.job != job.id:
        problems.append(f"the manifest names job {report.job}, not {job.id}")
    if not report.ok and not problems:
        problems.append("nothing to verify: no manifest yet")
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
