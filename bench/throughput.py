"""Fleet vs in-process throughput on the same real texts, side by side in one run.

In-process is what a user would write instead: read the file,
``SentenceTransformer(...).encode(texts, batch_size=32)``, ``np.save``. The fleet figure
is end to end: texts read from the same file, submitted (embedding cache off, so every
vector is computed), embedded by the worker(s), gathered in input order and written to
a .npy file. Both are warm before timing. Rounds alternate the order (A B, B A, ...)
so drift in the machine's load falls on both sides; the ratio is the median of the
rounds' ratios.

Printed besides: what the worker spent encoding (from its ``chunk_done`` log lines),
so the fleet's own cost is visible as ``overhead per chunk`` = (fleet wall time -
encode time) / chunks.

    .venv/bin/python bench/throughput.py [--texts 1000] [--rounds 3] [--workers 1]
        [--concurrency 1] [--threads 2] [--device cpu|cuda] [--model-entry JSON]

On a GPU machine, ``--device cuda`` serves the job with ``device: cuda`` and prints the
fleet/in-process ratio on the GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import _fleet
import numpy as np


def in_process_model(threads: int, device: str = "cpu") -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    from workers.sources.packaged import packaged_model_dir

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(packaged_model_dir(_fleet.HUB_ID)), device=device)
    model.encode(["warm up", "the model before timing"], batch_size=32)
    return model


def in_process(model: Any, src: Path, out: Path) -> float:
    from tasks.io.readers import read_texts

    t0 = time.perf_counter()
    vectors = model.encode(read_texts(src), batch_size=32)
    np.save(out, vectors)
    return time.perf_counter() - t0


def fleet(client: Any, model: str, src: Path, out: Path) -> tuple[float, int]:
    from producers.writers import write_embeddings
    from tasks.io.readers import read_texts

    t0 = time.perf_counter()
    job = client.submit(read_texts(src), model=model, cache=False)
    write_embeddings(out, job.wait(timeout=3600))
    return time.perf_counter() - t0, job.record.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="in-process torch threads")
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda: in-process and the fleet's `device` field"
    )
    parser.add_argument(
        "--model-entry", default=None, help="JSON config entry the fleet serves (default: torch)"
    )
    args = parser.parse_args()
    _fleet.header("throughput: fleet end to end vs in-process encode")
    texts = _fleet.load_corpus(args.texts)
    src = _fleet.write_corpus(texts)
    entry = json.loads(args.model_entry) if args.model_entry else _fleet.model_entry()
    entry.setdefault("device", args.device)
    config = _fleet.write_config({_fleet.MODEL: entry})
    local = in_process_model(args.threads, args.device)
    ratios, local_s, fleet_s, chunks = [], [], [], 0
    with _fleet.server(), _fleet.workers(config, args.workers, args.concurrency) as procs:
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        _fleet.warm(client, _fleet.MODEL, texts, args.workers * args.concurrency)
        encoded_before = sum(s for w in procs for _, s in w.chunk_seconds())
        for r in range(args.rounds):
            order = ("local", "fleet") if r % 2 == 0 else ("fleet", "local")
            took: dict[str, float] = {}
            for side in order:
                if side == "local":
                    took[side] = in_process(local, src, _fleet._WORK / "local.npy")
                else:
                    took[side], chunks = fleet(
                        client, _fleet.MODEL, src, _fleet._WORK / "fleet.npy"
                    )
            local_s.append(took["local"])
            fleet_s.append(took["fleet"])
            ratios.append(took["local"] / took["fleet"])
            print(
                f"round {r + 1}            in-process {args.texts / took['local']:6.1f} texts/s  "
                f"fleet {args.texts / took['fleet']:6.1f} texts/s  ratio {ratios[-1]:.3f}  "
                f"({_fleet.load_avg()})",
                flush=True,
            )
        encoded = sum(s for w in procs for _, s in w.chunk_seconds()) - encoded_before
        loads = [row for w in procs for row in w.loads()]
    a, b = np.load(_fleet._WORK / "fleet.npy"), np.load(_fleet._WORK / "local.npy")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    n, slots = args.texts, args.workers * args.concurrency
    wall = sum(fleet_s)
    print(f"texts               {n} real Debian package descriptions, {chunks} chunks per job")
    print(
        f"in-process          {n / _fleet.median(local_s):8.1f} texts/s (median of {args.rounds})"
    )
    print(
        f"fleet end to end    {n / _fleet.median(fleet_s):8.1f} texts/s ({args.workers} worker(s) "
        f"x concurrency {args.concurrency}, cache off)"
    )
    print(f"ratio fleet/in-process  {_fleet.median(ratios):.3f} (median of per-round ratios)")
    if slots == 1:
        overhead = (wall - encoded) / (chunks * args.rounds)
        print(
            f"worker encoding     {encoded / wall:6.1%} of fleet wall time; overhead per chunk "
            f"{overhead * 1000:.1f} ms (submit, queue, store, gather, write)"
        )
    print(f"min cosine fleet vs in-process  {cos.min():.6f}")
    _fleet.print_loads(loads)
    _fleet.footer()


if __name__ == "__main__":
    main()
