"""Where the time goes, in one process (no broker): the pieces the fleet adds or changes.

1. Padding and length sorting: padded tokens (texts x longest text, per batch of 32)
   over real tokens, for the in-process reference (sorted by length over the whole
   job), the fleet's chunks (sorted by estimated tokens across the job, cut under the
   token budget, then sorted again per chunk by the model) and no sorting at all.
2. The producer's token estimate (UTF-8 bytes / 4 + 2) against the real tokenizer.
3. The worker's encode path (``Runtime.embed`` on the fleet's chunks, cache off) under
   cProfile: tokenization vs the transformer's forward vs the rest.
4. Token budget sweep: chunks per job and the encode time of all of a job's chunks for
   several ``max_tokens``; per-chunk queue overhead comes from bench/latency.py.
5. Producer and wire costs per chunk: building and sending chunk messages
   (``client.submit`` against a server with no worker), packing and unpacking a result.

    .venv/bin/python bench/breakdown.py [--texts 1000] [--sweep-texts 400]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from typing import Any

import _fleet
import numpy as np


def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from workers.sources.packaged import packaged_model_dir

    return AutoTokenizer.from_pretrained(str(packaged_model_dir(_fleet.HUB_ID)))


def padded(lengths: list[int], batch: int = 32) -> int:
    """Padded tokens when ``lengths`` are encoded in this order, ``batch`` at a time."""
    return sum(
        len(lengths[i : i + batch]) * max(lengths[i : i + batch])
        for i in range(0, len(lengths), batch)
    )


def by_chars(rows: np.ndarray, texts: list[str]) -> list[int]:
    """``rows`` in the order sentence-transformers encodes them (longest text first)."""
    return [int(rows[i]) for i in np.argsort([-len(texts[r]) for r in rows], kind="stable")]


def padding_report(texts: list[str], real: np.ndarray) -> None:
    from tasks.contract.chunking import estimate_tokens, plan_chunks

    total = int(real.sum())
    whole = by_chars(np.arange(len(texts)), texts)
    order, bounds = plan_chunks(texts)
    fleet = 0
    for i in range(len(bounds) - 1):
        rows = by_chars(order[bounds[i] : bounds[i + 1]], texts)
        fleet += padded([int(real[r]) for r in rows])
    cases = {
        "in-process (sorted over the job)": padded([int(real[r]) for r in whole]),
        f"fleet ({len(bounds) - 1} chunks, sorted then per chunk)": fleet,
        "no sorting (input order)": padded([int(x) for x in real]),
    }
    print(f"-- 1. padding: {total} real tokens, {total / len(texts):.1f} per text")
    for label, value in cases.items():
        print(f"   {label:44} {value:8d} padded tokens  {value / total:.3f}x real")
    est = estimate_tokens(texts)
    ratio = est / real
    print(
        f"-- 2. token estimate (bytes/4 + 2): mean est/real {ratio.mean():.3f}, "
        f"p5 {np.percentile(ratio, 5):.3f}, p95 {np.percentile(ratio, 95):.3f}, "
        f"rank correlation {np.corrcoef(np.argsort(np.argsort(est)), np.argsort(np.argsort(real)))[0, 1]:.3f}"
    )


def chunks_of(texts: list[str], max_tokens: int) -> list[list[str]]:
    from tasks.contract.chunking import plan_chunks

    order, bounds = plan_chunks(texts, max_tokens=max_tokens)
    return [[texts[r] for r in order[bounds[i] : bounds[i + 1]]] for i in range(len(bounds) - 1)]


def runtime() -> Any:
    from tasks.contract.settings import load_settings
    from workers.config.loader import parse_model_config
    from workers.serving.runtime import Runtime
    from workers.serving.threads import configure_threads

    configure_threads(1)
    config = parse_model_config({_fleet.MODEL: _fleet.model_entry()})
    # this process's settings (its environment), compute only: no embedding cache, so no
    # cache lookups in Runtime.embed
    settings = load_settings().model_copy(update={"embed_cache": False})
    rt = Runtime(config, settings, budget_gb=4.0)
    rt.embed(_fleet.MODEL, ["warm up", "the model"], {"cache": False})
    return rt


def encode_profile(rt: Any, texts: list[str], tok: Any) -> None:
    chunks = chunks_of(texts, 8192)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for chunk in chunks:
        rt.embed(_fleet.MODEL, chunk, {"cache": False})
    prof.disable()
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    for chunk in chunks:
        for i in range(0, len(chunk), 32):
            tok(
                chunk[i : i + 32],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
    tokenize = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    # The outermost nn.Module forward (the whole model) has the largest cumulative time.
    forward = max((v[3] for k, v in stats.stats.items() if k[2] == "forward"), default=0.0)
    print(f"-- 3. Runtime.embed on {len(chunks)} chunks ({len(texts)} texts), cProfile on")
    print(f"   total {total:.2f} s = {len(texts) / total:.1f} texts/s (profiler overhead included)")
    print(f"   tokenization (same batches, timed alone) {tokenize:.3f} s = {tokenize / total:.1%}")
    print(f"   model forward (outermost module forward) {forward:.2f} s = {forward / total:.1%}")
    print("   top functions by own time:")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:8]
    for (path, line, func), (_, calls, own, cum, _) in rows:
        print(
            f"     {own:7.3f} s own {cum:7.3f} s cum {calls:7d} calls  {os.path.basename(path)}:{line} {func}"
        )


def sweep(rt: Any, texts: list[str], budgets: list[int]) -> None:
    print(f"-- 4. token budget sweep on {len(texts)} texts (encode only, in-process)")
    for budget in budgets:
        chunks = chunks_of(texts, budget)
        t0 = time.perf_counter()
        for chunk in chunks:
            rt.embed(_fleet.MODEL, chunk, {"cache": False})
        took = time.perf_counter() - t0
        sizes = [len(c) for c in chunks]
        print(
            f"   max_tokens {budget:6d}: {len(chunks):4d} chunks, {np.mean(sizes):6.1f} texts/chunk "
            f"(min {min(sizes)}, max {max(sizes)}), {len(texts) / took:6.1f} texts/s  "
            f"({_fleet.load_avg()})",
            flush=True,
        )


def producer_costs(texts: list[str], vectors: np.ndarray) -> None:
    from producers import EmbeddingClient
    from tasks.contract.wire import pack_embeddings, unpack_embeddings

    config = _fleet.write_config({_fleet.MODEL: _fleet.model_entry()})
    with _fleet.server():
        client = EmbeddingClient(config_source=str(config))
        client.submit(texts[:10], model=_fleet.MODEL, cache=False)  # connections warm
        t0 = time.perf_counter()
        job = client.submit(texts, model=_fleet.MODEL, cache=False)
        submit = time.perf_counter() - t0
        backend = client.app.backend
        block = vectors[:80]
        t0 = time.perf_counter()
        for _ in range(100):
            raw = backend.encode(
                {"result": pack_embeddings(block, _fleet.MODEL, "v"), "status": "SUCCESS"}
            )
            unpack_embeddings(backend.decode(raw)["result"])
        roundtrip = (time.perf_counter() - t0) / 100
    print(
        f"-- 5. producer: submit of {len(texts)} texts in {job.record.total} chunks {submit * 1000:.1f} ms "
        f"({submit / job.record.total * 1000:.2f} ms per chunk)"
    )
    print(f"   result pack + msgpack + unpack of an 80x384 chunk: {roundtrip * 1000:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--sweep-texts", type=int, default=400)
    parser.add_argument("--budgets", default="2048,4096,8192,16384")
    args = parser.parse_args()
    _fleet.header("breakdown: padding, token estimate, encode path, token budget, producer")
    texts = _fleet.load_corpus(args.texts)
    tok = tokenizer()
    real = np.array([len(ids) for ids in tok(texts, truncation=True, max_length=256)["input_ids"]])
    padding_report(texts, real)
    rt = runtime()
    encode_profile(rt, texts, tok)
    sweep(rt, texts[: args.sweep_texts], [int(b) for b in args.budgets.split(",")])
    vectors, *_ = rt.embed(_fleet.MODEL, texts[:80], {"cache": False})
    producer_costs(texts, vectors)
    _fleet.footer()


if __name__ == "__main__":
    main()
