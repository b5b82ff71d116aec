"""The ``embedfleet optimize`` command: its arguments (cheap to import) and its output."""

from __future__ import annotations

import argparse
import json
import sys

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


def run(args: argparse.Namespace) -> int:
    """The ``embedfleet optimize`` command."""
    from tasks.contract.settings import load_settings
    from workers.optimize.pipeline import optimize_model

    settings = getattr(args, "settings", None) or load_settings()
    store = args.store or (str(settings.model_store) if settings.model_store else None)
    result = optimize_model(
        args.model,
        args.to,
        config=args.config or settings.config_source,
        name=args.name,
        store=store,
        probe=args.probe,
        probe_field=args.field,
        probes=args.probes,
        min_cosine=args.min_cosine,
        max_retrieval_drop=args.max_retrieval_drop,
        device=args.device,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    prov = result.entry["provenance"]
    if args.json:
        print(
            json.dumps({"name": result.name, "config": str(result.config), "entry": result.entry})
        )
        return 0
    q, s = prov["quality"], prov["speed"]
    print(
        f"registered {result.name!r} in {result.config} (model_path {result.entry['model_path']})"
    )
    print(
        f"  quality   mean cosine {q['cosine_mean']:.4f} (min {q['cosine_min']:.4f}); retrieval MRR "
        f"{q['mrr_source']:.4f} -> {q['mrr_candidate']:.4f}; recall@10 {q['recall_at_10_source']:.3f} -> "
        f"{q['recall_at_10_candidate']:.3f}; top-10 neighbour overlap {q['neighbour_overlap_at_10']:.3f}"
    )
    print(
        f"  speed     {s['source_texts_per_s']:.1f} -> {s['texts_per_s']:.1f} texts/s "
        f"({s['speedup']:.2f}x, {s['threads']} thread(s), device {s['device']})"
    )
    print(f"  next      embedfleet reload   (every worker then serves {result.name!r})")
    return 0
