"""Thread layouts and worker counts on one Redis, side by side in one run.

Each layout serves the same real texts end to end (submit -> .npy, embedding cache
off), right after an in-process ``SentenceTransformer.encode(batch_size=32)`` run with
as many torch threads as the machine has cores, so each ratio compares two runs made a
minute apart. Layouts (``--layouts``, comma-separated):

- ``1x1t2``: one worker, concurrency 1, 2 torch threads (the default on 2 cores);
- ``1x2t1``: one worker, concurrency 2, 1 thread per task (the default split);
- ``2x1t1``: two workers on the same Redis, concurrency 1, ``EMBEDFLEET_THREADS=1``
  each: what two machines of one core each would do;
- ``2x1t2``: two workers of 2 threads each on these 2 cores (oversubscribed: what
  starting two default workers on one small machine gives).

    .venv/bin/python bench/scale.py [--texts 1000] [--layouts 1x1t2,1x2t1,2x1t1,2x1t2]
"""

from __future__ import annotations

import argparse
import os
import re

import _fleet
from throughput import fleet, in_process, in_process_model

_LAYOUT = re.compile(r"^(\d+)x(\d+)t(\d+)$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--layouts", default="1x1t2,1x2t1,2x1t1,2x1t2")
    args = parser.parse_args()
    _fleet.header("scale: thread layouts and 1 vs 2 workers on one Redis")
    texts = _fleet.load_corpus(args.texts)
    src = _fleet.write_corpus(texts)
    config = _fleet.write_config({_fleet.MODEL: _fleet.model_entry()})
    cores = len(os.sched_getaffinity(0))
    local = in_process_model(cores)
    rows = []
    with _fleet.server():
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        for layout in args.layouts.split(","):
            match = _LAYOUT.match(layout.strip())
            if not match:
                raise SystemExit(f"bad layout {layout!r}: WORKERSxCONCURRENCYtTHREADS, e.g. 1x2t1")
            count, conc, threads = (int(g) for g in match.groups())
            env = {"EMBEDFLEET_THREADS": str(threads)}
            with _fleet.workers(config, count, conc, env=env) as procs:
                _fleet.warm(client, _fleet.MODEL, texts, count * conc)
                local_s = in_process(local, src, _fleet._WORK / "local.npy")
                before = [len(w.chunk_seconds()) for w in procs]
                fleet_s, _ = fleet(client, _fleet.MODEL, src, _fleet._WORK / "fleet.npy")
                shares = [len(w.chunk_seconds()) - b for w, b in zip(procs, before, strict=True)]
            rows.append((layout, count, conc, threads, local_s, fleet_s))
            print(
                f"{layout:8} {count} worker(s) x concurrency {conc} x {threads} thread(s): "
                f"fleet {args.texts / fleet_s:6.1f} texts/s, in-process {args.texts / local_s:6.1f}"
                f" texts/s, ratio {local_s / fleet_s:.3f}, chunks per worker {shares}  "
                f"({_fleet.load_avg()})",
                flush=True,
            )
    print(f"texts               {args.texts} real Debian package descriptions")
    base = {r[0]: r for r in rows}
    if "1x1t2" in base and "2x1t1" in base:
        one, two = base["1x1t2"], base["2x1t1"]
        print(
            f"2 workers vs 1 on the same cores: {one[5] / two[5]:.3f}x "
            "(more machines: each worker brings its own cores)"
        )
    _fleet.footer()


if __name__ == "__main__":
    main()
