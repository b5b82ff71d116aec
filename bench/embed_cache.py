"""Re-submitting the same texts: the fleet-wide embedding cache, side by side in one run.

The first job computes every vector (cache empty); the second job of the same texts is
served from the cache; a third with ``cache=False`` recomputes, as a control.

    .venv/bin/python bench/embed_cache.py [--texts 1000]
"""

from __future__ import annotations

import argparse
import time

import _fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    args = parser.parse_args()
    texts = _fleet.load_corpus(args.texts)
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
    with _fleet.server(), _fleet.workers(config):
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        client.embed(["warm up"], model=_fleet.MODEL, timeout=600)
        timings, results = {}, {}
        for label, cache in (
            ("first (computed)", True),
            ("again (cached)", True),
            ("again, cache off", False),
        ):
            t0 = time.perf_counter()
            results[label] = client.submit(texts, model=_fleet.MODEL, cache=cache).wait(3600)
            timings[label] = time.perf_counter() - t0
    first, cached = timings["first (computed)"], timings["again (cached)"]
    for label, seconds in timings.items():
        print(f"{label:18} {len(texts) / seconds:9.1f} texts/s ({seconds:.2f} s)")
    print(f"speedup cached/first        {first / cached:.1f}x")
    same = results["first (computed)"].tobytes() == results["again (cached)"].tobytes()
    print(f"cached vectors identical    {same}")


if __name__ == "__main__":
    main()
