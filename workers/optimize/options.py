"""The arguments of ``embedfleet optimize`` (argparse only: cheap to import)."""

from __future__ import annotations

import argparse

from workers.optimize import (
    DEFAULT_MAX_RETRIEVAL_DROP,
    DEFAULT_MIN_COSINE,
    METHODS,
    STORE_ENV,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the configured model to optimize")
    parser.add_argument("--to", required=True, choices=sorted(METHODS), help="what to build")
    parser.add_argument("--name", help="name of the new config entry (default: MODEL-METHOD)")
    parser.add_argument(
        "--store",
        help=f"model store folder (default: ${STORE_ENV}, else models/ beside the config)",
    )
    parser.add_argument(
        "--config", help="JSON config to read and register in (default: $EMBEDFLEET_MODEL_CONFIG)"
    )
    parser.add_argument(
        "--probe",
        help="texts for the quality gate (.jsonl/.csv/.parquet/.txt; default: data/sample.jsonl)",
    )
    parser.add_argument("--field", help="field or column of --probe holding the text")
    parser.add_argument("--probes", type=int, default=300, help="probe texts used, at most")
    parser.add_argument(
        "--min-cosine",
        type=float,
        default=DEFAULT_MIN_COSINE,
        help="mean cosine to the source model the result must reach",
    )
    parser.add_argument(
        "--max-retrieval-drop",
        type=float,
        default=DEFAULT_MAX_RETRIEVAL_DROP,
        help="largest drop in retrieval MRR on the probe texts",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        help="device of the new entry (default: the source's)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
