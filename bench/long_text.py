"""What ``--long-text mean`` and ``windows`` cost against ``truncate``, side by side in one run.

Corpus: documents built from the shipped descriptions (``bench/data``), a mix as a data
team has it: most fit the model's 256-word-piece window, some run to 4-8 windows. The
model is the shipped all-MiniLM-L6-v2 in the worker's own wrapper (fp32, in-process, no
fleet: the fleet's cost per text is the same for all three, see bench/fleet_cost.py).
Rounds alternate the three ways and the best round of each counts (the shared machine's
load swings). Prints seconds, texts encoded (windows), and each way's time as a ratio of
``truncate``'s, with the CPU flags.

    .venv/bin/python bench/long_text.py [--docs 200] [--long-share 0.2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from workers.config.loader import parse_model_config
from workers.models.base import generate_embeddings
from workers.models.registry import build_model
from workers.serving.long_text import MeanOfWindows, WindowRows
from workers.sources.packaged import packaged_model_dir

DATA = Path(__file__).resolve().parent / "data" / "debian_descriptions.jsonl"
OVERLAP = 32  # tokens, the default --window-overlap


def lscpu_flags() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu not available"
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Flags")), "?"
    )


def corpus(n: int, long_share: float) -> list[str]:
    texts = [json.loads(line)["text"] for line in DATA.read_text().splitlines()]
    rng = np.random.default_rng(0)
    docs = []
    for i in range(n):
        if i < int(n * long_share):  # a long document: 8-16 descriptions in a row
            docs.append(" ".join(rng.choice(texts, size=int(rng.integers(8, 17)))))
        else:
            docs.append(str(texts[i % len(texts)]))
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--long-share", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    spec = parse_model_config(
        {
            "m": {
                "type": "sentence_transformer",
                "model_path": str(folder),
                "RAM": 0.5,
                "device": "cpu",
                "precision": "fp32",
            }
        }  # fmt: skip
    )["m"]
    model = build_model("m", spec)
    docs = corpus(args.docs, args.long_share)
    encode = lambda batch: generate_embeddings(model, batch)  # noqa: E731

    def truncate() -> int:
        encode(docs)
        return len(docs)

    def mean() -> int:
        means = MeanOfWindows(model, docs, "", OVERLAP)
        means.encoder(encode)(docs)
        return sum(len(s) for s in means.spans.values())

    def windows() -> int:
        rows = WindowRows(model, docs, "", OVERLAP)
        encode(rows.texts)
        return len(rows.texts)

    ways = {"truncate": truncate, "mean": mean, "windows": windows}
    best = dict.fromkeys(ways, float("inf"))
    encoded = {}
    for _ in range(args.rounds):
        for name, run in ways.items():
            started = time.perf_counter()
            encoded[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    print(f"cpu flags: {lscpu_flags()}")
    print(f"{args.docs} documents, {args.long_share:.0%} long; overlap {OVERLAP} tokens; "
          f"best of {args.rounds} rounds")  # fmt: skip
    print(f"{'way':<10}{'seconds':>10}{'texts encoded':>16}{'x truncate':>12}")
    for name in ways:
        print(
            f"{name:<10}{best[name]:>10.2f}{encoded[name]:>16}{best[name] / best['truncate']:>12.2f}"
        )


if __name__ == "__main__":
    main()
