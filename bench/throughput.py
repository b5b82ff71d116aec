"""Fleet vs in-process throughput on the same real texts, side by side in one run.

In-process is what a user would write instead:
``SentenceTransformer(...).encode(texts, batch_size=32)``. The fleet figure is end to
end: texts read from a file, submitted, embedded by one worker, gathered in input
order and written to a .npy file. The model is loaded (warm) in both before timing.

    .venv/bin/python bench/throughput.py [--texts 1000] [--workers 1] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import json
import time

import _fleet  # noqa: F401  (sets the env before tasks is imported)
import numpy as np


def in_process(texts: list[str], threads: int) -> tuple[float, np.ndarray]:
    import torch
    from sentence_transformers import SentenceTransformer

    from workers.sources.packaged import packaged_model_dir

    torch.set_num_threads(threads)
    model = SentenceTransformer(
        str(packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")), device="cpu"
    )
    model.encode(texts[:32], batch_size=32)  # warm
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=32)
    return time.perf_counter() - t0, vectors


def fleet(texts: list[str], workers: int, concurrency: int) -> tuple[float, np.ndarray]:
    from producers import EmbeddingClient
    from producers.readers import read_texts
    from producers.writers import write_embeddings

    src = _fleet._WORK / "input.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = _fleet._WORK / "out.npy"
    config = _fleet.write_config(
        {
            _fleet.MODEL: {
                "type": "sentence_transformer",
                "model_path": "sentence-transformers/all-MiniLM-L6-v2",
                "RAM": 0.5,
                "preload": True,
            }
        }
    )
    with _fleet.workers(config, count=workers, concurrency=concurrency):
        client = EmbeddingClient(config_source=str(config))
        client.embed(texts[:8], model=_fleet.MODEL)  # every worker warm: see preload
        for _ in range(workers * concurrency):
            client.embed(texts[:4], model=_fleet.MODEL)
        t0 = time.perf_counter()
        job = client.submit(read_texts(src), model=_fleet.MODEL)
        vectors = job.wait(timeout=3600)
        write_embeddings(out, vectors)
        seconds = time.perf_counter() - t0
    return seconds, np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="in-process torch threads")
    args = parser.parse_args()
    texts = _fleet.load_corpus(args.texts)
    with _fleet.server():
        fleet_s, fleet_v = fleet(texts, args.workers, args.concurrency)
        local_s, local_v = in_process(texts, args.threads)
    a = fleet_v / np.linalg.norm(fleet_v, axis=1, keepdims=True)
    b = local_v / np.linalg.norm(local_v, axis=1, keepdims=True)
    n = len(texts)
    print(f"texts               {n} (real Debian package descriptions)")
    print(f"in-process          {n / local_s:8.1f} texts/s ({local_s:.2f} s)")
    print(
        f"fleet end to end    {n / fleet_s:8.1f} texts/s ({fleet_s:.2f} s, "
        f"{args.workers} worker(s) x concurrency {args.concurrency})"
    )
    print(f"ratio fleet/in-process  {local_s / fleet_s:.3f}")
    print(f"min cosine fleet vs in-process  {(a * b).sum(axis=1).min():.6f}")


if __name__ == "__main__":
    main()
