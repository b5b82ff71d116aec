"""Broadcast reload under load: time from broadcast to the last reply with two workers,
and the chunks lost (goal 0) while jobs stream through the reloads.

    .venv/bin/python bench/reload.py [--reloads 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import _fleet
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = {
        _fleet.MODEL: {
            "type": "sentence_transformer",
            "model_path": "sentence-transformers/all-MiniLM-L6-v2",
            "RAM": 0.5,
            "preload": True,
        }
    }
    extra = {**base, "mini-b": {**base[_fleet.MODEL], "preload": False, "version": "b"}}
    texts = _fleet.load_corpus(400)
    config = _fleet.write_config(base)
    with _fleet.server(), _fleet.workers(config, count=args.workers):
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        client.embed(texts[:4], model=_fleet.MODEL)
        stop = threading.Event()
        jobs = []

        def stream() -> None:
            i = 0
            while not stop.is_set():
                chunk = texts[(i * 16) % 384 : (i * 16) % 384 + 16]
                jobs.append(client.submit(chunk, model=_fleet.MODEL, max_texts=4))
                i += 1
                time.sleep(0.05)

        producer = threading.Thread(target=stream)
        producer.start()
        nodes = client.workers()
        latencies, with_discovery, not_ok = [], [], 0
        try:
            for i in range(args.reloads):
                config.write_text(json.dumps(extra if i % 2 == 0 else base))
                t0 = time.perf_counter()
                if i % 2:  # as `embedfleet reload` does: ping to count workers, then broadcast
                    rows = client.reload()
                    with_discovery.append(time.perf_counter() - t0)
                else:  # broadcast to the known workers: returns on the last reply
                    rows = client.reload(destination=nodes)
                    latencies.append(time.perf_counter() - t0)
                not_ok += sum(1 for r in rows if not r["ok"]) + (args.workers - len(rows))
                time.sleep(0.2)
        finally:
            stop.set()
            producer.join()
        failed = lost = 0
        for job in jobs:
            try:
                vectors = job.wait(timeout=600, allow_failed=True)
            except TimeoutError:
                lost += job.record.total - job.status()["done"]
                continue
            status = job.status()
            failed += status["failed"]
            lost += job.record.n - int((~np.isnan(vectors).any(axis=1)).sum())
    print(f"workers                       {args.workers}")
    print(f"reloads                       {args.reloads} (adding/removing a model each time)")
    print(
        f"broadcast -> last reply       median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print(
        f"same, incl. 1 s worker ping   median {statistics.median(with_discovery) * 1000:.0f} ms "
        "(`embedfleet reload` counts workers first)"
    )
    print(f"replies not ok / missing      {not_ok}")
    print(f"jobs streamed during reloads  {len(jobs)} ({sum(j.record.total for j in jobs)} chunks)")
    print(f"chunks failed                 {failed}")
    print(f"rows lost                     {lost}")


if __name__ == "__main__":
    main()
