"""fp32 vs the precision ``auto`` picks vs onnx-int8, in-process and through the fleet,
side by side in one run, on real texts, with the CPU flags that decided.

1. In-process ways to run the model (same texts, same threads, rounds alternating):
   sentence-transformers fp32 (the reference), under ``torch.autocast`` bf16, with
   ``model.to(bfloat16)``, with its linear layers lowered (``workers.models.lowering``,
   what the wrappers do) at batch 16 / 32 / 64 and sorted by real token length, the
   ``sentence_transformer`` wrapper as served (``precision: auto``, probe included),
   and the onnx-int8 model ``embedfleet optimize`` builds. Each with texts/s, the ratio to
   fp32 and the minimum cosine to fp32 over every text.
2. One real worker serving three configs of the same weights (``precision: fp32``, the
   default ``auto``, and the int8 model), end to end from file to .npy, cache off,
   against in-process fp32 sentence-transformers. Goal on AVX512-BF16 CPUs: the default
   config >= 1.4x in-process fp32 (AMX: >= 2.2x), every row cosine >= 0.9999.

    .venv/bin/python bench/precision.py [--texts 300] [--rounds 3] [--threads 2]
        [--no-int8] [--no-variants] [--no-fleet]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import _fleet
import numpy as np
from throughput import fleet, in_process, in_process_model

INT8 = f"{_fleet.MODEL}-onnx-int8"
FP32 = f"{_fleet.MODEL}-fp32"
Encode = Callable[[list[str]], np.ndarray]
#: Texts per interleaved slice (a multiple of the largest batch compared).
SLICE = 64


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    from workers.models.fidelity import row_cosines

    return float(row_cosines(a, b).min())


def token_sorted(model: Any, batch: int) -> Encode:
    """Encode in batches of similar *token* length (sentence-transformers sorts by chars)."""
    import torch

    def encode(texts: list[str]) -> np.ndarray:
        ids = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        with torch.inference_mode():
            out = model.encode([texts[i] for i in order], batch_size=batch)
        back = np.empty_like(out)
        back[order] = out
        return back

    return encode


def variants(threads: int, int8: Any) -> dict[str, Encode]:
    """The in-process ways, by name; the first is the fp32 reference."""
    import torch

    from tasks.contract.spec import parse_model_config
    from workers.models.lowering import lower_linears
    from workers.models.registry import build_model

    base = in_process_model(threads)
    cast = copy.deepcopy(base).to(torch.bfloat16)
    lowered = copy.deepcopy(base)
    lower_linears(lowered[0].auto_model, "bf16")
    spec = parse_model_config({_fleet.MODEL: _fleet.model_entry()})[_fleet.MODEL]
    served = build_model(_fleet.MODEL, spec)

    def st(model: Any, batch: int, ctx: Callable[[], Any] = contextlib.nullcontext) -> Encode:
        def encode(texts: list[str]) -> np.ndarray:
            with torch.inference_mode(), ctx():
                out = model.encode(texts, batch_size=batch, convert_to_tensor=True)
            return out.float().numpy()

        return encode

    def autocast() -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16)

    ways = {
        "st fp32 b32 (reference)": st(base, 32),
        "st autocast bf16 b32": st(base, 32, autocast),
        "st .to(bf16) b32": st(cast, 32),
        "linear-bf16 b16": st(lowered, 16),
        "linear-bf16 b32": st(lowered, 32),
        "linear-bf16 b64": st(lowered, 64),
        "linear-bf16 b32 token-sorted": token_sorted(lowered, 32),
        f"served wrapper (auto -> {served.precision_record.precision})": served.encode,
    }
    if int8 is not None:
        ways["onnx-int8 wrapper"] = int8.encode
    return ways


def in_process_table(texts: list[str], rounds: int, ways: dict[str, Encode]) -> None:
    """Every way runs on the same slice of SLICE texts, one after another in rotating order,
    slice by slice: on a shared machine whose load swings within seconds, each way then
    sees the same load. Times are summed over the slices, per round."""
    names = list(ways)
    for name in names:  # warm
        ways[name](texts[:8])
    took: dict[str, list[float]] = {n: [] for n in names}
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for r in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for k, start in enumerate(range(0, len(texts), SLICE)):
            piece = texts[start : start + SLICE]
            shift = (r + k) % len(names)
            for name in names[shift:] + names[:shift]:
                t0 = time.perf_counter()
                out = ways[name](piece)
                spent[name] += time.perf_counter() - t0
                if r == 0:
                    parts[name].append(out)
        for name in names:
            took[name].append(spent[name])
    vectors = {n: np.concatenate(parts[n]) for n in names}
    ref = names[0]
    base = _fleet.median(took[ref])
    print(
        f"-- in-process, {len(texts)} texts in slices of 64 interleaved across the ways, "
        f"median of {rounds} rounds ({_fleet.load_avg()})"
    )
    print(f"{'way':42} {'texts/s':>8} {'vs fp32':>8} {'min cosine to fp32':>19}")
    for name in names:
        med = _fleet.median(took[name])
        cos = min_cos(vectors[ref], vectors[name])
        print(f"{name:42} {len(texts) / med:8.1f} {base / med:7.2f}x {cos:19.6f}", flush=True)


def optimize_int8(config_path: Any) -> Any:
    from workers.config.loader import load_model_config
    from workers.models.registry import build_model
    from workers.optimize.pipeline import optimize_model

    result = optimize_model(_fleet.MODEL, "onnx-int8", config=str(config_path), name=INT8)
    q = result.entry["provenance"]["quality"]
    print(f"onnx-int8 built     gate mean cosine {q['cosine_mean']:.4f}, min {q['cosine_min']:.4f}")
    return build_model(INT8, load_model_config(str(config_path))[INT8])


def fleet_table(
    texts: list[str], rounds: int, threads: int, config: Any, models: list[str]
) -> None:
    src = _fleet.write_corpus(texts)
    local = in_process_model(threads)
    took: dict[str, list[float]] = {m: [] for m in ["in-process", *models]}
    ratios: dict[str, list[float]] = {m: [] for m in models}
    with _fleet.server(), _fleet.workers(config, 1, 1) as procs:
        from producers import EmbeddingClient

        client = EmbeddingClient(config_source=str(config))
        for m in models:
            _fleet.warm(client, m, texts, 1)
        sides = ["in-process", *models]
        for r in range(rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                out = _fleet._WORK / f"{side}.npy"
                if side == "in-process":
                    took[side].append(in_process(local, src, out))
                else:
                    took[side].append(fleet(client, side, src, out)[0])
            for m in models:
                ratios[m].append(took["in-process"][-1] / took[m][-1])
            print(
                f"round {r + 1}  "
                + "  ".join(f"{s} {len(texts) / took[s][-1]:.1f}/s" for s in sides)
                + f"  ({_fleet.load_avg()})",
                flush=True,
            )
        rows = [row for r in client.models() for row in r["models"]]
        loads = procs[0].loads()
    ref = np.load(_fleet._WORK / "in-process.npy")
    print(
        f"-- through the fleet: 1 worker x concurrency 1, end to end, cache off, "
        f"{len(texts)} texts, median of {rounds} rounds"
    )
    print(
        f"{'served':32} {'precision':>9} {'probe min':>10} {'texts/s':>8} {'vs in-process fp32':>19} {'min cosine':>11}"
    )
    med = _fleet.median(took["in-process"])
    print(
        f"{'in-process st fp32 b32':32} {'fp32':>9} {'-':>10} {len(texts) / med:8.1f} {'1.00x':>19} {1.0:11.6f}"
    )
    for m in models:
        row = next((x for x in rows if x["name"] == m), {})
        probe = row.get("probe_min_cosine")
        cos = min_cos(ref, np.load(_fleet._WORK / f"{m}.npy"))
        print(
            f"{m:32} {row.get('precision') or '?':>9} {probe if probe is not None else '-':>10} "
            f"{len(texts) / _fleet.median(took[m]):8.1f} {_fleet.median(ratios[m]):18.2f}x "
            f"{cos:11.6f}"
        )
    _fleet.print_loads(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    parser.add_argument("--no-int8", action="store_true", help="skip optimize --to onnx-int8")
    parser.add_argument("--no-variants", action="store_true", help="skip the in-process table")
    parser.add_argument("--no-fleet", action="store_true", help="skip the fleet table")
    args = parser.parse_args()
    import os

    os.environ["EMBEDFLEET_THREADS"] = str(args.threads)
    from workers.models.precision import choose_precision, detect_hardware

    hw = detect_hardware("cpu")
    _fleet.header("precision: fp32 vs auto vs onnx-int8, in-process and through the fleet")
    flags = sorted(f for f in hw.cpu_flags if "bf16" in f or "fp16" in f or f.startswith("amx"))
    print(
        f"precision flags     {' '.join(flags) or 'none'} -> auto picks "
        f"{choose_precision('bench', 'auto', hw)}"
    )
    config = _fleet._WORK / "precision" / "models.json"
    config.parent.mkdir()
    config.write_text(
        json.dumps(
            {
                FP32: _fleet.model_entry(precision="fp32"),
                _fleet.MODEL: _fleet.model_entry(),
            }
        )
    )
    int8 = None if args.no_int8 else optimize_int8(config)
    texts = _fleet.load_corpus(args.texts)
    if not args.no_variants:
        in_process_table(texts, args.rounds, variants(args.threads, int8))
    del int8
    models = [FP32, _fleet.MODEL] + ([] if args.no_int8 else [INT8])
    if not args.no_fleet:
        fleet_table(texts, args.rounds, args.threads, config, models)
    _fleet.footer()


if __name__ == "__main__":
    main()
