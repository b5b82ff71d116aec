"""Why ``optimize --to onnx-int8`` quantizes as it does: variants side by side in one run.

The packaged all-MiniLM-L6-v2 is exported once (``workers.optimize.export``), then each
variant is run by onnxruntime with the same threads on the same real texts, encoded in
chunks as the fleet cuts them, against in-process torch:

- ``torch``: ``SentenceTransformer.encode`` (the reference);
- ``onnx fp32``: the export as is;
- ``int8 per-channel``: what optimize builds (``quantize_dynamic``, ``per_channel=True``);
- ``int8 per-tensor``: one scale per weight matrix;
- ``int8 MatMul only``: per-channel, the embedding tables left in fp32;
- ``int8 per-channel, sorted``: the int8 model with each chunk's texts sorted by their
  real token count before batching (less padding in each batch of 32).

    .venv/bin/python bench/quant_variants.py [--texts 512]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import _fleet
import numpy as np


def encode_chunks(model: Any, texts: list[str], sort: bool = False) -> tuple[np.ndarray, float]:
    from tasks.contract.chunking import plan_chunks

    order, bounds = plan_chunks(texts)
    out = np.zeros((len(texts), 384), dtype=np.float32)
    t0 = time.perf_counter()
    for i in range(len(bounds) - 1):
        rows = order[bounds[i] : bounds[i + 1]]
        if sort:
            ids = model.tokenizer([texts[r] for r in rows], truncation=True, max_length=256)
            rows = rows[np.argsort([-len(x) for x in ids["input_ids"]], kind="stable")]
        out[rows] = model.encode([texts[r] for r in rows])
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=512)
    args = parser.parse_args()
    _fleet.header("quantization variants of all-MiniLM-L6-v2 (in-process, same threads)")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from tasks.contract.spec import ModelSpec
    from workers.models.registry import build_model
    from workers.optimize.export import export_onnx, read_layout
    from workers.serving.threads import configure_threads
    from workers.sources.packaged import packaged_model_dir

    threads = configure_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    src_dir = packaged_model_dir(_fleet.HUB_ID)
    layout = read_layout(_fleet.MODEL, src_dir)
    work = _fleet._WORK / "variants"
    fp32 = export_onnx(_fleet.MODEL, layout, src_dir, work)
    files = {"onnx fp32": fp32}
    for label, extra in (
        ("int8 per-channel", {"per_channel": True}),
        ("int8 per-tensor", {"per_channel": False}),
        ("int8 MatMul only", {"per_channel": True, "op_types_to_quantize": ["MatMul"]}),
    ):
        path = work / (label.replace(" ", "_") + ".onnx")
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, **extra)
        files[label] = path
    texts = _fleet.load_corpus(args.texts)
    torch_model = build_model(_fleet.MODEL, ModelSpec.model_validate(_fleet.model_entry()))
    encode_chunks(torch_model, texts[:16])
    ref, ref_s = encode_chunks(torch_model, texts)
    print(f"texts               {len(texts)} real Debian package descriptions, {threads} threads")
    print(f"torch               {len(texts) / ref_s:6.1f} texts/s")
    runs: list[tuple[str, Path, bool]] = [(label, path, False) for label, path in files.items()]
    runs.append(("int8 per-channel, sorted", files["int8 per-channel"], True))
    for label, path, sort in runs:
        spec = ModelSpec(
            type="onnx", model_path=str(path), RAM=0.1, pooling="mean", normalize=True,
            max_seq_length=layout.max_seq_length,
        )  # fmt: skip
        model = build_model(label, spec)
        encode_chunks(model, texts[:16])
        vectors, seconds = encode_chunks(model, texts, sort)
        cos = (vectors * ref).sum(axis=1)
        print(
            f"{label:26} {len(texts) / seconds:6.1f} texts/s = {ref_s / seconds:4.2f}x torch  "
            f"cosine mean {cos.mean():.4f} min {cos.min():.4f}  "
            f"{os.path.getsize(path) / 1e6:5.1f} MB  ({_fleet.load_avg()})",
            flush=True,
        )
        model.close()
    _fleet.footer()


if __name__ == "__main__":
    main()
