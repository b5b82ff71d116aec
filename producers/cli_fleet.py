"""The CLI's fleet verbs: run it (``up``, ``down``, ``worker``, ``serve``), ask it
(``reload``, ``models``, ``compare``, ``demo``) and ``optimize`` a model for it.

Each takes the parsed arguments (``producers.cli`` builds the parser) and returns an exit
code. ``worker``, ``serve`` and ``optimize`` dispatch to the worker side's and the
gateway's entry points (the one crossing ``tests/unit/test_layers.py`` allows).
"""

from __future__ import annotations

import argparse
import json
import sys

from producers import output
from producers.cli_jobs import client
from producers.errors import EXIT_FAILED, EXIT_OK


def up(args: argparse.Namespace) -> int:
    import producers.local_fleet as fleet
    from producers.local_fleet_report import up_text

    started = fleet.up(
        workers=args.workers,
        flower=args.flower,
        models=args.models,
        flower_port=args.flower_port,
        flower_auth=args.flower_auth,
    )
    print(up_text(started, args.flower_port))
    return EXIT_OK


def down(args: argparse.Namespace) -> int:
    import producers.local_fleet as fleet
    from producers.local_fleet_report import down_note

    note = down_note()
    if note:
        print(f"embedfleet: {note}", file=sys.stderr)
    stopped = fleet.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return EXIT_OK


def worker(args: argparse.Namespace) -> int:
    from workers.serving.main import run_worker

    return run_worker(args.models, args.concurrency, args.name, args.loglevel, args.settings)


def serve(args: argparse.Namespace) -> int:
    from gateway.serve import run_gateway

    return run_gateway(args.settings, args.host, args.port, args.no_auth)


def reload(args: argparse.Namespace) -> int:
    rows = client().reload(
        timeout=args.timeout, destination=args.worker, allow_empty=args.allow_empty
    )
    print(json.dumps(rows) if args.json else output.reload_text(rows))
    if not rows:
        return EXIT_FAILED
    return EXIT_OK if all(r["ok"] for r in rows) else EXIT_FAILED


def models(args: argparse.Namespace) -> int:
    rows = client().models(destination=args.worker)
    if args.json:
        print(json.dumps(output.models_json(rows)))
    else:
        print(output.models_text(rows))
    return EXIT_OK


def compare(args: argparse.Namespace) -> int:
    from producers.compare import compare as run_compare
    from tasks.io.readers import read_texts

    texts = read_texts(args.input, args.field)[: args.sample]
    report = run_compare(client(), args.model_a, args.model_b, texts, k=args.k)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:14} {value}")
    return EXIT_OK


def optimize(args: argparse.Namespace) -> int:
    from workers.optimize.cli import run

    return run(args)


def demo(args: argparse.Namespace) -> int:
    from producers.demo import run_demo

    return run_demo(args.input, args.model, args.output)
