"""The gateway's cost: a 16-text request through ``embedfleet serve`` and the OpenAI SDK
against ``client.embed()`` directly, 16 concurrent clients each, blocks interleaved in
one run; then one client's latency through the gateway while a large dataset job runs on
the same model, against the same request on the idle fleet.

Every request holds 16 distinct real texts of the corpus (never repeated, so the
embedding cache, on in both paths as the gateway uses it, never answers).

    .venv/bin/python bench/gateway.py [--blocks 3] [--busy-requests 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import _fleet

CLIENTS = 16
TEXTS_PER_REQUEST = 16


def start_gateway(config: str) -> tuple[subprocess.Popen[bytes], int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (_fleet._WORK / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers.cli", "serve", "--no-auth", "--port", str(port)],
        cwd=_fleet.ROOT,
        env={**os.environ, "EMBEDFLEET_MODEL_CONFIG": config, "EMBEDFLEET_API_KEYS": ""},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the gateway did not start")


def run_block(
    call: Callable[[int, list[str]], None], batches: list[list[str]]
) -> tuple[float, list[float]]:
    """``CLIENTS`` threads, one request each; (wall seconds, per-request seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t0 = time.perf_counter()
        call(i, batches[i])
        with lock:
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(len(batches))))
    return time.perf_counter() - t0, latencies


def line(label: str, requests: int, wall: float, latencies: list[float]) -> str:
    return (
        f"{label:28} {requests / wall:6.2f} req/s   p50 {_fleet.percentile(latencies, 50) * 1000:7.1f} ms"
        f"   p99 {_fleet.percentile(latencies, 99) * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=3, help="blocks per path, interleaved")
    parser.add_argument("--busy-requests", type=int, default=10)
    parser.add_argument(
        "--dataset-copies", type=int, default=20, help="corpus copies in the dataset job"
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=128,
        help="rows per dataset chunk: a request waits for the chunk the worker runs",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    _fleet.header("gateway: 16-text requests, gateway + OpenAI SDK vs client.embed()")
    flags = [f for f in _fleet.machine().split(", ")[-1].split()]
    print(f"lscpu flags         {' '.join(flags)}")
    need = (2 * args.blocks * CLIENTS + 2 * args.busy_requests + 2) * TEXTS_PER_REQUEST
    texts = _fleet.load_corpus(min(need, 2000))
    if need > len(texts):
        raise SystemExit(f"{need} texts needed, the corpus has {len(texts)}: fewer blocks")
    batches = [texts[i : i + TEXTS_PER_REQUEST] for i in range(0, need, TEXTS_PER_REQUEST)]
    config = _fleet.write_config({_fleet.MODEL: _fleet.model_entry()})
    with _fleet.server(), _fleet.workers(config) as (worker,):
        import openai

        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        _fleet.warm(client, _fleet.MODEL, batches.pop(), 1)
        gateway, port = start_gateway(str(config))
        try:
            sdks = [
                openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
                for _ in range(CLIENTS)
            ]
            sdks[0].embeddings.create(model=_fleet.MODEL, input=batches.pop())  # connect once

            def direct(_: int, batch: list[str]) -> None:
                client.embed(batch, model=_fleet.MODEL)

            def through(i: int, batch: list[str]) -> None:
                sdks[i].embeddings.create(model=_fleet.MODEL, input=batch)

            results: dict[str, list[tuple[float, list[float]]]] = {"direct": [], "gateway": []}
            summary: dict[str, tuple[float, float, float]] = {}
            for _ in range(args.blocks):
                for name, call in (("direct", direct), ("gateway", through)):
                    block = [batches.pop() for _ in range(CLIENTS)]
                    results[name].append(run_block(call, block))
            if args.blocks:
                print(f"-- {CLIENTS} concurrent clients, {args.blocks} interleaved blocks per path")
                for name, label in (
                    ("direct", "client.embed() directly"),
                    ("gateway", "gateway + OpenAI SDK"),
                ):
                    wall = sum(w for w, _ in results[name])
                    lat = [x for _, ls in results[name] for x in ls]
                    summary[name] = (
                        len(lat) / wall,
                        _fleet.percentile(lat, 50),
                        _fleet.percentile(lat, 99),
                    )
                    print(line(label, len(lat), wall, lat))
                d, g = summary["direct"], summary["gateway"]
                print(
                    f"   gateway / direct: req/s x{g[0] / d[0]:.2f}, p50 x{g[1] / d[1]:.2f}, "
                    f"p99 x{g[2] / d[2]:.2f}"
                )

            # One client: idle fleet, then while a large dataset job runs on the model.
            def one_by_one(n: int) -> list[float]:
                out = []
                for _ in range(n):
                    batch = batches.pop()
                    t0 = time.perf_counter()
                    sdks[0].embeddings.create(model=_fleet.MODEL, input=batch)
                    out.append(time.perf_counter() - t0)
                return out

            idle = one_by_one(args.busy_requests)
            corpus = _fleet.load_corpus(2000) * args.dataset_copies
            rows = _fleet.write_corpus(corpus, "dataset.jsonl")
            job = client.submit_dataset(
                str(rows),
                _fleet.MODEL,
                str(_fleet._WORK / "parts") + "/",
                chunk_rows=args.chunk_rows,
            )
            deadline = time.monotonic() + 300
            while job.status()["state"] != "RUNNING" and time.monotonic() < deadline:
                time.sleep(0.2)
            busy = one_by_one(args.busy_requests)
            status = job.status()
            job.cancel()
            # Let the worker finish the chunk it runs, so it stops within its grace.
            deadline = time.monotonic() + 300
            while client.redis.hlen("unacked") and time.monotonic() < deadline:
                time.sleep(0.5)
            print(f"-- one client, {args.busy_requests} requests each, through the gateway")
            for label, values in (
                ("idle fleet", idle),
                (f"dataset job running ({len(corpus)} rows)", busy),
            ):
                print(
                    f"   {label:34} p50 {_fleet.percentile(values, 50) * 1000:7.1f} ms   "
                    f"p99 {_fleet.percentile(values, 99) * 1000:7.1f} ms"
                )
            print(
                f"   busy / idle: p50 x{_fleet.percentile(busy, 50) / _fleet.percentile(idle, 50):.2f}, "
                f"p99 x{_fleet.percentile(busy, 99) / _fleet.percentile(idle, 99):.2f}"
                f"   (dataset job {status['state']}, {args.chunk_rows} rows a chunk, "
                f"{status['rows_done']} rows done meanwhile)"
            )
            chunks = worker.records("dataset_chunk_done")
            if chunks:
                seconds = [float(r["seconds"]) for r in chunks]
                print(f"   a dataset chunk took p50 {_fleet.median(seconds):.2f} s on the worker")
        finally:
            gateway.terminate()
            gateway.wait(30)
    _fleet.footer()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
