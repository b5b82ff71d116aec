"""What pinning the input costs the dataset scan: the scan of a 2,000,000-row input with
each chunk's bytes hashed (xxh3-64, tasks/io/pinning.py) against the same scan without
hashing, side by side in one run (interleaved round by round, medians), as a ratio.
Also the scan as it was before pinning (8 MiB blocks, no hashing), for the before/after.

    .venv/bin/python bench/scan_pinning.py [--rows 2000000] [--rounds 15]

The input is read from the page cache (a first scan warms it), so the figure is the
CPU cost of the scan itself, where hashing weighs most; from a disk or S3 it weighs less.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import _fleet


def write_inputs(rows: int) -> dict[str, Path]:
    txt, jsonl = _fleet._WORK / "big.txt", _fleet._WORK / "big.jsonl"
    with txt.open("w") as t, jsonl.open("w") as j:
        for start in range(0, rows, 100_000):
            texts = [
                f"row {i} of the scale bench" for i in range(start, min(rows, start + 100_000))
            ]
            t.write("".join(x + "\n" for x in texts))
            j.write(
                "".join(json.dumps({"id": str(i), "text": x}) + "\n" for i, x in enumerate(texts))
            )
    return {"txt": txt, "jsonl": jsonl}


def lscpu_flags() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu not available"
    return next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Flags")),
        "?",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    _fleet.header(f"scan_pinning: the scan of {args.rows:,} rows with and without chunk hashes")
    print(f"lscpu flags         {lscpu_flags()}")
    from tasks.io import scan, sources

    real_stream = sources.stream

    def old_blocks(url, block=8 * 1024 * 1024, pin=None):  # type: ignore[no-untyped-def]
        return real_stream(url, block, pin)

    for fmt, path in write_inputs(args.rows).items():
        files = sources.resolve(str(path))
        size = path.stat().st_size / 2**20
        ways = {
            "hashed (1 MiB blocks, as shipped)": (True, real_stream),
            "not hashed (1 MiB blocks)": (False, real_stream),
            "before pinning (8 MiB, not hashed)": (False, old_blocks),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        scan.plan(files)  # warm the page cache
        for _ in range(args.rounds):
            for name, (hashing, stream) in ways.items():
                sources.stream = stream
                started = time.perf_counter()
                plan = scan.plan(files, hashing=hashing)
                times[name].append(time.perf_counter() - started)
        sources.stream = real_stream
        print(
            f"input               .{fmt}, {size:.1f} MiB, {plan.rows:,} rows, {plan.chunks.size:,} chunks"
        )
        medians = {name: _fleet.median(values) for name, values in times.items()}
        for name, value in medians.items():
            print(f"  {name:<36} {value * 1000:7.1f} ms  ({size / value:,.0f} MiB/s)")
        hashed, plain = (
            medians["hashed (1 MiB blocks, as shipped)"],
            medians["not hashed (1 MiB blocks)"],
        )
        before = medians["before pinning (8 MiB, not hashed)"]
        print(f"  hashing costs      x{hashed / plain:.3f} of the scan (bound x1.10)")
        print(f"  shipped vs before  x{hashed / before:.3f} (below 1: faster than before pinning)")
    _fleet.footer()


if __name__ == "__main__":
    main()
