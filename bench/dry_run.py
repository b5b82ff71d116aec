"""How close a dry run's duration estimate comes to the run it estimates, in one run.

A fleet of one real worker encodes a warm-up job (so it publishes what a token costs it),
then a list job is dry-run and run for real, several rounds; each round prints the
estimate made before the run, the measured time and their ratio (1.0: exact). The
estimate reads the cost the fleet published at its last heartbeat, so the first round
carries the warm-up's cost and later rounds the measured workload's.

    .venv/bin/python bench/dry_run.py [--texts 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import _fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _fleet.header("dry-run estimate against the measured run")
    texts = _fleet.load_corpus(100 + args.texts)
    warm, measured = texts[:100], texts[100:]
    config = _fleet.write_config({_fleet.MODEL: _fleet.model_entry()})
    with _fleet.server(), _fleet.workers(config):
        from producers import EmbeddingClient
        from tasks.contract import catalog

        client = EmbeddingClient(config_source=str(config))
        client.submit(warm, model=_fleet.MODEL, cache=False).wait(600)
        ratios = []
        for round_ in range(1, args.rounds + 1):
            time.sleep(catalog.HEARTBEAT_S + 1)  # the cost of the last run, published
            plan = client.submit(measured, model=_fleet.MODEL, dry_run=True)
            started = time.perf_counter()
            client.submit(measured, model=_fleet.MODEL, cache=False).wait(600)
            took = time.perf_counter() - started
            ratios.append(plan.estimated_s / took)
            print(
                f"round {round_}   estimate {plan.estimated_s:6.2f} s   measured {took:6.2f} s"
                f"   estimate/measured {ratios[-1]:.2f}   ({plan.tokens} estimated tokens)"
            )
    print(f"estimate/measured, median of {len(ratios)} rounds: {_fleet.median(ratios):.2f}")
    _fleet.footer()


if __name__ == "__main__":
    main()
