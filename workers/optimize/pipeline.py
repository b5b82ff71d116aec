"""``embedfleet optimize MODEL --to onnx-int8``: export, quantize, gate, measure, register."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.contract.spec import ModelSpec, spec_version
from tasks.routing import MODEL_NAME_RE
from workers.config.loader import load_model_config
from workers.errors import ConfigError
from workers.models.registry import TYPES, resolve_class
from workers.optimize import DEFAULT_MAX_RETRIEVAL_DROP, DEFAULT_MIN_COSINE, METHODS
from workers.optimize.gate import Quality, check_gate, measure_quality, measure_speed
from workers.optimize.register import check_free, config_file, register, store_root

log = logging.getLogger(__name__)

#: Probe texts when ``--probe`` names none: real package descriptions shipped in the repo.
DEFAULT_PROBE = Path(__file__).resolve().parents[2] / "data" / "sample.jsonl"
#: Probe texts the speed measurement encodes (cut into chunks as a producer would).
SPEED_TEXTS = 256


def exportable_types() -> list[str]:
    """The registered types optimize can export: those whose class declares
    ``exports_to`` (``workers.models.base.BaseEmbeddingModel``)."""
    return sorted(n for n in TYPES if resolve_class(n).exports_to is not None)


@dataclass
class OptimizeResult:
    name: str
    config: Path
    artifact: Path
    entry: dict[str, Any]
    quality: Quality
    speed: dict[str, float] = field(default_factory=dict)


def optimize_model(
    model: str,
    method: str,
    config: str | None = None,
    name: str | None = None,
    store: str | None = None,
    probe: str | None = None,
    probe_field: str | None = None,
    probes: int = 300,
    min_cosine: float = DEFAULT_MIN_COSINE,
    max_retrieval_drop: float = DEFAULT_MAX_RETRIEVAL_DROP,
    device: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> OptimizeResult:
    """Build ``method`` of ``model``; register it only if it passes the quality gate."""
    from tasks.io.readers import read_texts
    from workers.serving.threads import configure_threads
    from workers.sources import resolve_model_dir

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    cfg_path = config_file(config)
    cfg = load_model_config(str(cfg_path))
    spec = cfg.get(model)
    if spec is None:
        why = f" ({cfg.errors[model]})" if model in cfg.errors else ""
        raise ConfigError(
            f"{cfg_path}: no valid model {model!r}{why}; known: {', '.join(sorted(cfg))}"
        )
    target = resolve_class(spec.type).exports_to  # declared on the type's class
    if target is None:
        raise ConfigError(
            f"model {model!r} is of type {spec.type!r}; optimize exports "
            f"{', '.join(exportable_types())}"
        )
    name = name or f"{model}-{method}"
    if not MODEL_NAME_RE.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_', '-'")
    root = store_root(cfg_path, store)
    check_free(cfg_path, name, root)
    check_device(name, device or spec.device)
    texts = read_texts(probe or DEFAULT_PROBE, probe_field)[: max(1, probes)]
    threads = configure_threads(1, import_torch=True)  # it exports with torch
    source_dir = resolve_model_dir(spec.model_path, spec.base_dir, spec.region)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        artifact, layout = _build(model, method, source_dir, work / name, say)
        cand_spec = ModelSpec(
            type=target,
            model_path=str(artifact),
            RAM=spec.RAM,
            pooling=layout.pooling,
            # the source wrapper normalizes when its folder or its entry says so, and
            # its entry's window overrides the folder's
            normalize=layout.normalize or bool(spec.normalize),
            max_seq_length=spec.max_seq_length or layout.max_seq_length,
            dimension=layout.dimension or None,
            device=device or spec.device,
            batch_size=spec.batch_size,
        )
        quality, speed, ram_gb = _gate_and_measure(
            model, spec, name, cand_spec, texts, min_cosine, max_retrieval_drop, say
        )
        final = root / name
        os.replace(work / name, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    digest = hashlib.sha256((final / "model.onnx").read_bytes()).hexdigest()
    entry: dict[str, Any] = {
        "type": target,
        "model_path": os.path.relpath(final / "model.onnx", cfg_path.parent),
        "RAM": max(ram_gb, 0.05),
        "preload": spec.preload,
        "pooling": layout.pooling,
        "normalize": cand_spec.normalize,
        "max_seq_length": cand_spec.max_seq_length,
        "device": cand_spec.device,
        "batch_size": spec.batch_size,
        "version": f"{method}-{digest[:12]}",
    }
    if layout.dimension:
        entry["dimension"] = layout.dimension
    entry["provenance"] = _provenance(
        model,
        spec,
        method,
        digest,
        quality,
        speed,
        threads,
        cand_spec.device,
        min_cosine,
        max_retrieval_drop,
    )
    (final / "provenance.json").write_text(json.dumps(entry["provenance"], indent=2) + "\n")
    try:
        register(cfg_path, name, entry)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)  # nothing half-registered stays in the store
        raise
    return OptimizeResult(name, cfg_path, final, entry, quality, speed)


def check_device(name: str, device: str) -> None:
    """Fail before exporting when the new entry's ``device`` cannot run here: ``cuda``
    needs onnxruntime's CUDAExecutionProvider (onnxruntime-gpu); ``auto`` uses it when
    present, else the CPU."""
    import onnxruntime

    from workers.models.onnx import onnx_providers

    onnx_providers(name, device, onnxruntime.get_available_providers())


def _build(
    model: str, method: str, source_dir: Path, dest: Path, say: Callable[[str], None]
) -> tuple[Path, Any]:
    from workers.optimize.export import export_onnx, quantize_int8, read_layout

    layout = read_layout(model, source_dir)
    say(f"exporting {model} to ONNX ({layout.pooling} pooling, normalize={layout.normalize})")
    artifact = export_onnx(model, layout, source_dir, dest)
    if METHODS[method]:
        say("quantizing the weights to int8 (dynamic, per channel)")
        quantized = quantize_int8(artifact, dest / "model.int8.onnx")
        os.replace(quantized, artifact)
    return artifact, layout


def _gate_and_measure(
    model: str,
    spec: ModelSpec,
    name: str,
    cand_spec: ModelSpec,
    texts: list[str],
    min_cosine: float,
    max_drop: float,
    say: Callable[[str], None],
) -> tuple[Quality, dict[str, float], float]:
    from tasks.contract.chunking import plan_chunks
    from workers.memory.readings import rss_gb
    from workers.models.base import generate_embeddings
    from workers.models.registry import build_model

    # The gate's reference is the model in fp32, whatever precision it is served in.
    source = build_model(model, spec.model_copy(update={"precision": "fp32"}))
    before = rss_gb()
    candidate = build_model(name, cand_spec)
    try:
        generate_embeddings(candidate, texts[:32])  # its working memory counts too
        ram_gb = round(max(0.0, rss_gb() - before) * 1.5, 3)
        say(
            f"quality gate on {len(texts)} probe texts (mean cosine >= {min_cosine}, retrieval MRR drop <= {max_drop})"
        )
        quality = measure_quality(source, candidate, texts)
        if 0.5 / quality.pairs > max_drop:
            say(
                f"note: {quality.pairs} retrieval pairs; one query moving from rank 1 to 2 "
                f"changes MRR by {0.5 / quality.pairs:.4f} > {max_drop}: use more --probes"
            )
        check_gate(name, quality, min_cosine, max_drop)
        sample = texts[:SPEED_TEXTS]
        order, bounds = plan_chunks(sample)
        chunks = [
            [sample[r] for r in order[bounds[i] : bounds[i + 1]]] for i in range(len(bounds) - 1)
        ]
        say(f"measuring texts/s of both on {len(sample)} probe texts in {len(chunks)} chunks")
        speed = measure_speed({"source": source, "candidate": candidate}, chunks)
    finally:
        candidate.close()
        source.close()
    return quality, speed, ram_gb


def _provenance(
    model: str,
    spec: ModelSpec,
    method: str,
    digest: str,
    quality: Quality,
    speed: dict[str, float],
    threads: int,
    device: str,
    min_cosine: float,
    max_drop: float,
) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    from workers.optimize.export import OPSET

    return {
        "source": model,
        "source_version": spec_version(spec),
        "source_model_path": spec.model_path,
        "method": method,
        "quantization": {"mode": "dynamic", "weights": "int8", "per_channel": True}
        if METHODS[method]
        else None,
        "opset": OPSET,
        "sha256": digest,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tools": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "quality": {**quality.as_dict(), "min_cosine": min_cosine, "max_retrieval_drop": max_drop},
        "speed": {
            "texts": min(quality.probes, SPEED_TEXTS),
            "threads": threads,
            "device": device,
            "source_texts_per_s": round(speed["source"], 2),
            "texts_per_s": round(speed["candidate"], 2),
            "speedup": round(speed["candidate"] / speed["source"], 3),
        },
    }
