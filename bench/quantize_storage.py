"""Storage saved by each ``--quantize`` precision (and ``--dimensions``), with what it
costs in retrieval, measured side by side in one run on the shipped corpus.

Docs are the descriptions of ``bench/data/debian_descriptions.jsonl`` after their first
sentence; each query is that first sentence. The vectors are the shipped
all-MiniLM-L6-v2's (in-process sentence-transformers, fp32), shaped exactly as the fleet
shapes them (``tasks.contract.vectors``: truncate + re-normalize, then quantize with the
ranges of the shipped calibration set). For each option: bytes of a .npy and of a dataset
part (``tasks.io.parts.part_bytes``, with the tokens/truncated columns) as a ratio of
float32's, and recall@1 (query and docs in the same precision, dot product; binary:
Hamming similarity of the packed bits; uint8 by a raw dot product, uncentred, which
is why int8 is the one to search with).

    .venv/bin/python bench/quantize_storage.py [--docs 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from pathlib import Path

import numpy as np

from tasks.contract.vectors import calibration_ranges, quantize, truncate_dimensions
from tasks.io.parts import part_bytes
from tasks.jobs.quant_ranges import calibration_texts
from workers.sources.packaged import packaged_model_dir

DATA = Path(__file__).resolve().parent / "data" / "debian_descriptions.jsonl"


def lscpu_flags() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu not available"
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Flags")), "?"
    )


def retrieval_set(n: int) -> tuple[list[str], list[str]]:
    queries, docs = [], []
    for line in DATA.read_text().splitlines()[:1500]:  # calibration texts come after 1500
        summary, _, rest = json.loads(line)["text"].partition(". ")
        if len(rest) > 40:
            queries.append(summary)
            docs.append(rest)
    return queries[:n], docs[:n]


def recall_at_1(q: np.ndarray, d: np.ndarray, precision: str) -> float:
    if precision in ("binary", "ubinary"):  # Hamming similarity of the sign bits
        qb = np.unpackbits(q.view(np.uint8), axis=1).astype(np.int16)
        db = np.unpackbits(d.view(np.uint8), axis=1).astype(np.int16)
        scores = -(qb[:, None, :] != db[None, :, :]).sum(axis=2)
    else:
        scores = q.astype(np.float32) @ d.astype(np.float32).T
    return float(np.mean(scores.argmax(axis=1) == np.arange(len(q))))


def npy_bytes(matrix: np.ndarray) -> int:
    sink = io.BytesIO()
    np.save(sink, matrix)
    return sink.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=1000)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")), device="cpu"
    )
    queries, docs = retrieval_set(args.docs)
    q, d = model.encode(queries), model.encode(docs)
    calibration = model.encode(list(calibration_texts()))
    tokens = np.full(len(docs), 100, dtype=np.int32)
    columns = {"tokens": tokens, "truncated": np.zeros(len(docs), dtype=bool)}
    base_npy = npy_bytes(d)
    base_part = len(part_bytes(0, d, None, None, columns))
    base_recall = recall_at_1(q, d, "float32")
    print(f"lscpu flags         {lscpu_flags()}")
    print(
        f"docs {len(docs)}, float32 .npy {base_npy} B, part {base_part} B, recall@1 {base_recall:.3f}"
    )
    print(
        f"{'dimensions':>10} {'quantize':>9} {'npy ratio':>10} {'part ratio':>11} {'recall@1':>9} {'delta':>7}"
    )
    for dims in (384, 256, 128):
        dq = truncate_dimensions(q, dims, normalize=True)
        dd = truncate_dimensions(d, dims, normalize=True)
        ranges = calibration_ranges(truncate_dimensions(calibration, dims, normalize=True))
        for precision in ("float32", "int8", "uint8", "binary", "ubinary"):
            if precision == "float32":
                qq, qd = dq, dd
            else:
                qq, qd = quantize(dq, precision, ranges), quantize(dd, precision, ranges)
            recall = recall_at_1(qq, qd, precision)
            npy = base_npy / npy_bytes(qd)
            part = base_part / len(part_bytes(0, qd, None, None, columns))
            print(
                f"{dims:>10} {precision:>9} {npy:>9.1f}x {part:>10.1f}x {recall:>9.3f} "
                f"{recall - base_recall:>+7.3f}"
            )


if __name__ == "__main__":
    main()
