"""The fleet's own cost of moving rows (issue 16), side by side in one run.

A model that costs microseconds a text (``bench/_micromodel.py``: 384-d vectors from a
sha256, ~23 us a text) makes the fleet's own work the whole cost: reading and framing
on the producer, Redis round trips, the worker's decoding, the embedding cache's hashing
and lookups, packing, marking chunks done, gathering. Measured, all in one run:

1. in-process: read the same .txt file, ``model.encode`` the texts (rows/s);
2. the fleet end to end for one list job of N texts (read, submit, wait, gathered in
   input order), one worker of concurrency 2, embedding cache off, then on (new texts,
   every one a miss: the default), then the same texts again (every one a hit, checked
   bit-identical). In-process runs between the jobs; each job's reference is the mean
   of the in-process runs just before and after it (the machine's load drifts), and
   CPU seconds of the producer, the worker and the server are printed per text (they
   hold still under load when rows/s do not). ``--rounds`` repeats, medians printed;
3. a profile of a smaller job (cache on): cProfile of the producer (this process) and
   of the worker (``EMBEDFLEET_PROFILE``: pool threads per chunk task, and the main
   thread), plus Redis ``INFO commandstats`` (calls and server time) per chunk and per
   text. Profiling slows both sides: its figures are shares, not speed.

The texts are corpus sentences made unique with a counter (short, 60-130 bytes), so no
job hits the cache of another unless it means to. 2 cores are shared with other work on
the bench machine: the load average is printed before and after.

    PYTHONPATH=. .venv/bin/python bench/fleet_cost.py [--texts 200000]
        [--rounds 1] [--profile-texts 50000] [--max-texts N] [--no-profile]
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import time
from pathlib import Path
from typing import Any

import _fleet
import numpy as np

MODEL = "micro-hash"
ENTRY = {
    "type": "bench._micromodel:MicroHashModel",
    "model_path": "-",
    "RAM": 0.05,
    "preload": True,
}


def make_texts(n: int, salt: str) -> list[str]:
    """``n`` distinct short texts: corpus sentences with a counter."""
    sentences: list[str] = []
    for text in _fleet.load_corpus(2000):
        sentences += [s.strip() for s in re.split(r"(?<=\.)\s+", text) if 20 <= len(s) <= 110]
    return [f"{sentences[i % len(sentences)]} [{salt}{i}]" for i in range(n)]


def write_texts(texts: list[str], name: str) -> Path:
    path = _fleet._WORK / name
    path.write_text("".join(t + "\n" for t in texts))
    return path


def in_process(model: Any, src: Path, cpu: list[float]) -> float:
    """Seconds to read and encode ``src`` in this process (CPU seconds appended to ``cpu``)."""
    from tasks.io.readers import read_texts

    c0 = time.process_time()
    t0 = time.perf_counter()
    texts = read_texts(src)
    out = np.concatenate([model.encode(texts[i : i + 4096]) for i in range(0, len(texts), 4096)])
    assert out.shape == (len(texts), 384)
    cpu.append(time.process_time() - c0)
    return time.perf_counter() - t0


def fleet(
    client: Any, src: Path, cache: bool, worker_pid: int = 0, **submit: Any
) -> tuple[float, float, Any, np.ndarray, dict[str, float]]:
    """(seconds end to end, seconds in submit, job, vectors, CPU seconds per process)."""
    from tasks.io.readers import read_texts

    pids = {"producer": os.getpid(), "worker": worker_pid, "redis": _fleet.SERVER_PID}
    cpu0 = {k: _fleet.cpu_seconds(p) for k, p in pids.items() if p}
    t0 = time.perf_counter()
    job = client.submit(read_texts(src), model=MODEL, cache=cache, **submit)
    t1 = time.perf_counter()
    vectors = job.wait(timeout=3600)
    seconds = time.perf_counter() - t0
    cpu = {k: _fleet.cpu_seconds(pids[k]) - v for k, v in cpu0.items()}
    return seconds, t1 - t0, job, vectors, cpu


def warm_up(client: Any) -> float | None:
    """Run a job so the worker measures the model; wait for the cost in the catalog."""
    from tasks.contract import catalog

    client.submit(make_texts(8192, "warm-"), model=MODEL, cache=False).wait(timeout=600)
    deadline = time.monotonic() + 2 * catalog.HEARTBEAT_S
    while time.monotonic() < deadline:
        cost = client.seconds_per_text(MODEL)
        if cost is not None:
            return cost
        time.sleep(0.2)
    return None


def in_process_dataset(model: Any, src: Path, out: Path) -> float:
    """Seconds to read ``src``, encode it and write one parquet file (row, embedding)."""
    from tasks.io.parts import part_bytes
    from tasks.io.readers import read_texts

    t0 = time.perf_counter()
    texts = read_texts(src)
    vectors = np.concatenate(
        [model.encode(texts[i : i + 4096]) for i in range(0, len(texts), 4096)]
    )
    out.write_bytes(part_bytes(0, vectors))
    return time.perf_counter() - t0


def dataset_job(client: Any, src: Path, out: Path, worker_pid: int) -> tuple[float, Any, dict]:
    """Seconds end to end of a dataset job (submit, wait for its manifest), job, CPU."""
    pids = {"producer": os.getpid(), "worker": worker_pid, "redis": _fleet.SERVER_PID}
    cpu0 = {k: _fleet.cpu_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    job = client.submit_dataset(str(src), MODEL, str(out) + "/")
    job.wait(timeout=3600)
    seconds = time.perf_counter() - t0
    return seconds, job, {k: _fleet.cpu_seconds(pids[k]) - v for k, v in cpu0.items()}


def run_dataset(client: Any, model: Any, rows: int, worker_pid: int) -> None:
    import pyarrow.parquet as pq

    src = write_texts(make_texts(rows, "ds-"), "dataset.txt")
    ref = _fleet._WORK / "in-process.parquet"
    before = rows / in_process_dataset(model, src, ref)
    out = _fleet._WORK / "dataset-out"
    seconds, job, cpu = dataset_job(client, src, out, worker_pid)
    after = rows / in_process_dataset(model, src, ref)
    rate, reference = rows / seconds, (before + after) / 2
    table = pq.read_table(out)
    assert table.num_rows == rows and sorted(table.column("row").to_pylist()) == list(range(rows))
    print(
        f"dataset job        {rate:7.0f} rows/s = {rate / reference:.2f}x in-process "
        f"({before:.0f} before, {after:.0f} after: read, encode, write one parquet); "
        f"{rows} rows, {seconds:.2f} s, {job.record.total} chunks, every row once"
    )
    print(
        "    CPU us/row      "
        + ", ".join(f"{k} {v / rows * 1e6:.1f}" for k, v in cpu.items())
        + f" (total {sum(cpu.values()) / rows * 1e6:.1f})",
        flush=True,
    )


def redis_stats(client: Any) -> dict[str, tuple[int, float]]:
    """cmd -> (calls, server microseconds) since the last reset."""
    info = client.redis.info("commandstats")
    return {
        k.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"])) for k, v in info.items()
    }


def print_redis(stats: dict[str, tuple[int, float]], chunks: int, texts: int) -> None:
    calls = sum(c for c, _ in stats.values())
    usec = sum(u for _, u in stats.values())
    print(
        f"   redis: {calls} commands = {calls / chunks:.1f} per chunk, server time "
        f"{usec / 1e6:.2f} s = {usec / chunks / 1000:.3f} ms per chunk, {usec / texts:.2f} us per text"
    )
    top = sorted(stats.items(), key=lambda kv: -kv[1][1])[:8]
    print("   " + ", ".join(f"{k} {c / chunks:.1f}/chunk {u / 1e3:.0f} ms" for k, (c, u) in top))


#: (label, file name part, function name) of what the profiles are summarized by.
PRODUCER_PARTS = [
    ("read file", "readers.py", "read_texts"),
    ("submit (all)", "client.py", "submit"),
    ("  check texts", "readers.py", "check_texts"),
    ("  plan chunks", "chunking.py", "plan_chunks"),
    ("  job record", "jobstore.py", "create"),
    ("  send_task (framing, sending)", "base.py", "send_task"),
    ("wait (all)", "client.py", "wait"),
    ("  progress polls", "jobstore.py", "progress"),
    ("  gather: fetch", "gather.py", "fetch"),
    ("  gather: mget", "redis.py", "mget"),
    ("  gather: decode_result", "base.py", "decode_result"),
    ("  gather: place rows", "gather.py", "_place"),
    ("  sleeping", "~", "<built-in method time.sleep>"),
]
WORKER_PARTS = [
    ("chunk task body", "embed.py", "embed_chunk"),
    ("  validate request", "wire.py", "validate_request"),
    ("  count delivery", "embed.py", "count_delivery"),
    ("  cancel + started checks", "jobstore.py", "is_cancelled"),
    ("  ", "jobstore.py", "mark_started"),
    ("  Runtime.embed", "runtime.py", "embed"),
    ("    cache: keys (hashing)", "store.py", "keys"),
    ("    cache: key (per text)", "store.py", "key"),
    ("    cache: lookups", "store.py", "get_many"),
    ("    model encode", "_micromodel.py", "encode"),
    ("    cache: writes", "store.py", "put_many"),
    ("  pack result", "wire.py", "pack_embeddings"),
    ("store result (backend)", "base.py", "store_result"),
    ("mark done (on_success)", "embed.py", "on_success"),
    ("task signals/events", "dispatch/signal.py", "send"),
]


def cumulative(stats: pstats.Stats, file_part: str, func: str) -> tuple[int, float]:
    calls, cum = 0, 0.0
    for (path, _, name), (_, nc, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name == func and file_part in path:
            calls, cum = calls + nc, max(cum, ct) if func == "send" else cum + ct
    return calls, cum


def print_profile(title: str, stats: pstats.Stats, parts: list, chunks: int, texts: int) -> None:
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"   {title}: {total:.2f} s profiled = {total / chunks * 1000:.2f} ms per chunk")
    for label, file_part, func in parts:
        calls, cum = cumulative(stats, file_part, func)
        if not calls:
            continue
        print(
            f"     {(label.strip() and label) or '  ' + func:34} {cum:7.3f} s {calls:8d} calls "
            f"{cum / chunks * 1000:8.3f} ms/chunk {cum / texts * 1e6:7.2f} us/text"
        )
    print("     top own time:")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:10]  # type: ignore[attr-defined]
    for (path, line, func), (_, calls, own, _, _) in rows:
        print(f"       {own:7.3f} s {calls:8d} calls  {Path(path).name}:{line} {func}")


def profile_run(config: Path, n: int, submit: dict[str, Any]) -> None:
    import cProfile

    from producers import EmbeddingClient

    prefix = str(_fleet._WORK / "worker-profile")
    src = write_texts(make_texts(n, "profile-"), "profile.txt")
    with _fleet.workers(config, concurrency=2, env={"EMBEDFLEET_PROFILE": prefix}):
        client = EmbeddingClient()
        client.embed(["warm up", "the worker"], model=MODEL)  # one tiny task in the profile
        client.redis.config_resetstat()
        producer = cProfile.Profile()
        producer.enable()
        seconds, _, job, _, _ = fleet(client, src, True, **submit)
        producer.disable()
        redis = redis_stats(client)
    chunks, texts = job.record.total, job.record.n
    print(f"-- profile: {texts} texts in {chunks} chunks, cache on, {seconds:.2f} s under cProfile")
    print_redis(redis, chunks, texts)
    print_profile("producer", pstats.Stats(producer), PRODUCER_PARTS, chunks, texts)
    for part in ("pool", "main"):
        path = Path(f"{prefix}.{part}.pstats")
        if not path.exists():
            print(f"   worker {part}: no profile written")
            continue
        parts = WORKER_PARTS if part == "pool" else []
        print_profile(f"worker {part} threads", pstats.Stats(str(path)), parts, chunks, texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--profile-texts", type=int, default=50_000)
    parser.add_argument("--max-texts", type=int, default=None, help="override chunk size")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dataset-rows", type=int, default=500_000, help="0: no dataset job")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    _fleet.header("fleet cost: micro-hash model (~23 us/text), fleet vs in-process")
    from bench._micromodel import MicroHashModel
    from tasks.contract.spec import parse_model_config

    spec = parse_model_config({MODEL: ENTRY})[MODEL]
    model = MicroHashModel(MODEL, spec)
    submit = {} if args.max_texts is None else {"max_texts": args.max_texts}
    config = _fleet.write_config({MODEL: ENTRY})
    n = args.texts
    print(
        f"texts               {n} ({np.mean([len(t) for t in make_texts(1000, 'x')]):.0f} chars on average)"
    )
    off = write_texts(make_texts(n, "off-"), "off.txt")
    cases = ("cache off", "cache on (misses)", "cache on (hits)")
    ratios: dict[str, list[float]] = {c: [] for c in cases}
    with _fleet.server():
        from producers import EmbeddingClient

        with _fleet.workers(config, concurrency=2) as started:
            client = EmbeddingClient()
            cost = warm_up(client)
            print(
                f"published cost      {cost * 1e6:.1f} us/text"
                if cost
                else "published cost      none"
            )
            ref_cpu: list[float] = []
            before = n / in_process(model, off, ref_cpu)
            for round_ in range(args.rounds):
                fresh = write_texts(make_texts(n, f"on{round_}-"), f"on{round_}.txt")
                for label, src, cache in zip(
                    cases, (off, fresh, fresh), (False, True, True), strict=True
                ):
                    client.redis.config_resetstat()
                    seconds, submitted, job, vectors, cpu = fleet(
                        client, src, cache, started[0].proc.pid, **submit
                    )
                    redis = redis_stats(client)
                    after = n / in_process(model, off, ref_cpu)
                    rate, reference = n / seconds, (before + after) / 2
                    ratios[label].append(rate / reference)
                    calls = sum(c for c, _ in redis.values())
                    print(
                        f"fleet {label:18} {rate:7.0f} rows/s = {rate / reference:.2f}x in-process "
                        f"({before:.0f} before, {after:.0f} after); {seconds:.2f} s, submit "
                        f"{submitted:.2f} s, {job.record.total} chunks, "
                        f"{calls / job.record.total:.1f} Redis commands/chunk"
                    )
                    print(
                        "    CPU us/text     "
                        + ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in cpu.items())
                        + f" (total {sum(cpu.values()) / n * 1e6:.1f}; in-process "
                        f"{ref_cpu[-1] / n * 1e6:.1f})",
                        flush=True,
                    )
                    if label == "cache on (misses)":
                        missed = vectors
                    elif label == "cache on (hits)":
                        print(
                            f"    hits bit-identical to the misses' vectors: {missed.tobytes() == vectors.tobytes()}"
                        )
                    before = after
            if args.dataset_rows:
                run_dataset(client, model, args.dataset_rows, started[0].proc.pid)
            encode_s = sum(s for _, s in started[0].chunk_seconds())
        for label in cases:
            print(
                f"median {label:17} {float(np.median(ratios[label])):.2f}x in-process "
                f"over {args.rounds} round(s)"
            )
        print(f"worker chunk time   {encode_s:.2f} s in all jobs (chunk_done log: Runtime.embed)")
        if not args.no_profile:
            # A fresh worker has published no cost yet: the profiled job gets the chunk
            # size the measured worker's cost gave.
            from tasks.contract.chunking import budget_for

            tokens, texts = budget_for(cost, args.profile_texts)
            profile_run(
                config, args.profile_texts, {"max_tokens": tokens, "max_texts": texts} | submit
            )
    _fleet.footer()


if __name__ == "__main__":
    main()
