"""A dataset job of N rows (default 2,000,000) on a model that costs microseconds a text,
so only the fleet is measured: producer peak RSS, Redis peak memory growth, rows/s,
every row exactly once, and the latency of a 1-text job submitted 10 s into it.

The producer is the real CLI (`embedfleet submit --input big.txt --output DEST/ --wait`)
in its own process; its peak RSS is its VmHWM. Redis growth is the peak of INFO
used_memory while the job runs, minus the value before the submit.

    .venv/bin/python bench/dataset_scale.py [--rows 2000000] [--workers 1] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import _fleet

MODEL = "micro-hash"
#: tests.plugins.HashModel: a sha256 per text (a few microseconds), 16-d vectors.
ENTRY = {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}


def write_input(rows: int) -> Path:
    path = _fleet._WORK / "big.txt"
    with path.open("w") as fh:
        block = 100_000
        for start in range(0, rows, block):
            fh.write(
                "".join(
                    f"row {i} of the scale bench\n" for i in range(start, min(rows, start + block))
                )
            )
    return path


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=1024)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--small-after", type=float, default=10.0)
    args = parser.parse_args()
    _fleet.header(f"dataset_scale: one {args.rows:,}-row dataset job, micro model")
    source = write_input(args.rows)
    print(f"input               {source.stat().st_size / 2**20:.1f} MiB, {args.rows:,} rows (.txt)")
    config = _fleet.write_config({MODEL: ENTRY})
    out = _fleet._WORK / "out"
    with _fleet.server(), _fleet.workers(config, args.workers, args.concurrency):
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        redis = client.redis
        client.submit(["warm"], model=MODEL).wait(timeout=60)
        base = int(redis.info("memory")["used_memory"])
        peak = [base]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], int(redis.info("memory")["used_memory"]))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "producers.cli",
                "submit",
                "--model",
                MODEL,
                "--input",
                str(source),
                "--output",
                f"{out}/",
                "--wait",
                "--chunk-rows",
                str(args.chunk_rows),
                "--window",
                str(args.window),
            ],
            cwd=_fleet.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**__import__("os").environ, "EMBEDFLEET_MODEL_CONFIG": str(config)},
        )
        hwm = 0.0
        small_s = None
        job_id = proc.stdout.readline().strip() if proc.stdout else ""
        submitted = time.monotonic() - started
        while proc.poll() is None:
            hwm = max(hwm, vm_hwm_mb(proc.pid) or 0.0)
            if small_s is None and time.monotonic() - started >= args.small_after:
                t0 = time.monotonic()
                client.submit(["one small text"], model=MODEL).wait(timeout=300)
                small_s = time.monotonic() - t0
                small_state = client.job(job_id).status()
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        stop.set()
        watcher.join()
        if proc.returncode != 0:
            raise SystemExit(
                f"submit failed ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        status = client.job(job_id).status()
        keys_after = len(redis.keys(f"embedfleet:job:{job_id}*"))
        job_bytes = sum(
            int(redis.memory_usage(k) or 0) for k in redis.keys(f"embedfleet:job:{job_id}*")
        )

    import numpy as np
    import pyarrow.parquet as pq

    files = sorted(out.glob("part-*.parquet"))
    rows = np.concatenate(
        [pq.read_table(f, columns=["row"]).column("row").to_numpy() for f in files]
    )
    counts = np.bincount(rows, minlength=args.rows)
    growth_mb = (peak[0] - base) / 2**20
    print(f"job                 {status['state']}, {status['total']} chunks, {len(files)} parts")
    print(f"submit returned id  after {submitted:.2f} s (scan + record + window)")
    print(
        f"elapsed             {elapsed:.1f} s, {args.rows / elapsed:,.0f} rows/s "
        f"({args.workers} worker(s) x concurrency {args.concurrency})"
    )
    print(f"producer peak RSS   {hwm:.0f} MB (limit 400 MB)")
    print(
        f"Redis peak growth   {growth_mb:.1f} MB (limit 256 MB); "
        f"{growth_mb * 2**20 / args.rows:.2f} bytes/row; job keys after: {keys_after}, "
        f"{job_bytes / 1024:.1f} KiB"
    )
    print(
        f"rows exactly once   {bool((counts == 1).all()) and rows.size == args.rows} "
        f"(missing {int((counts == 0).sum())}, twice or more {int((counts > 1).sum())})"
    )
    if small_s is not None:
        print(
            f"1-text job at {args.small_after:.0f} s  done in {small_s:.2f} s (limit 15 s); "
            f"the big job was {small_state['state']} at {small_state['rows_done']:,} rows"
        )
    else:
        print("1-text job          not run: the big job ended before it was due")
    _fleet.footer()


if __name__ == "__main__":
    main()
