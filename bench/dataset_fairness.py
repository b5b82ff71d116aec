"""Fair sharing, side by side in one run: how long a 1-text job waits when it is
submitted while a big job runs on the same model, for three ways of running the big job:

- ``list``: the big job as a list job (every chunk queued at submit, one FIFO queue);
- ``window``: a dataset job at list priority (``EMBEDFLEET_DATASET_PRIORITY=0``): only
  its window of chunk messages is ahead of the small job;
- ``priority``: a dataset job at the default priority step 9: the small job's chunk is
  taken before any waiting dataset chunk.

The model sleeps ``--ms`` per text (tests.plugins.SlowHashModel), so a chunk costs what
a real model's would, without loading the CPU.

    .venv/bin/python bench/dataset_fairness.py [--rows 20000] [--ms 2] [--chunk-rows 200]
"""

from __future__ import annotations

import argparse
import time

import _fleet

MODEL = "slow-hash"
ENTRY = {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.01}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--ms", type=float, default=2.0)
    parser.add_argument("--chunk-rows", type=int, default=200)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    _fleet.header("dataset_fairness: a 1-text job behind a big job on the same model")
    chunk_s = args.chunk_rows * args.ms / 1000
    print(
        f"big job             {args.rows:,} rows, chunks of {args.chunk_rows} "
        f"({chunk_s:.2f} s each), window {args.window}, concurrency {args.concurrency}"
    )
    source = _fleet._WORK / "big.txt"
    texts = [f"row {i} of the fairness bench" for i in range(args.rows)]
    source.write_text("".join(t + "\n" for t in texts))
    config = _fleet.write_config({MODEL: ENTRY})
    results = {}
    with _fleet.server():
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        for mode in ("list", "window", "priority"):
            priority = "0" if mode == "window" else "9"
            client.settings = client.settings.model_copy(update={"dataset_priority": int(priority)})
            env = {
                "EMBEDFLEET_TEST_SLOW_S": str(args.ms / 1000),
                "EMBEDFLEET_DATASET_PRIORITY": priority,
                "EMBEDFLEET_EMBED_CACHE": "0",
            }
            with _fleet.workers(config, 1, args.concurrency, env=env):
                client.submit(["warm"], model=MODEL).wait(timeout=60)
                if mode == "list":
                    big = client.submit(texts, model=MODEL, max_texts=args.chunk_rows)
                else:
                    big = client.submit_dataset(
                        str(source),
                        MODEL,
                        str(_fleet._WORK / f"out-{mode}") + "/",
                        chunk_rows=args.chunk_rows,
                        window=args.window,
                    )
                deadline = time.monotonic() + 120
                while big.status()["done"] < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                t0 = time.monotonic()
                client.submit(["one small text"], model=MODEL).wait(timeout=600)
                results[mode] = time.monotonic() - t0
                big.cancel()
                big.delete()
                client.redis.delete(f"embed.{MODEL}", f"embed.{MODEL}\x06\x169")
            print(f"{mode:9}           1-text job done in {results[mode]:.2f} s", flush=True)
    print(
        f"ratio               list / priority {results['list'] / results['priority']:.0f}x, "
        f"window / priority {results['window'] / results['priority']:.1f}x"
    )
    _fleet.footer()


if __name__ == "__main__":
    main()
