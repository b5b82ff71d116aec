"""How long `embedfleet models` and `reload` take to answer, side by side in one run:
asking the workers the fleet's catalog lists as live (returns once each answered)
against listening to the whole fleet for a fixed time (models: 3 s; reload's head-count
ping: 1 s), which is what both did before.

    .venv/bin/python bench/fleet_answers.py [--workers 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

import _fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    _fleet.header("fleet answers: catalog-asked vs listened")
    config = _fleet.write_config({_fleet.MODEL: _fleet.model_entry(preload=False)})
    with _fleet.server(), _fleet.workers(config, count=args.workers):
        from producers import EmbeddingClient, fleet_admin

        client = EmbeddingClient(config_source=str(config))
        timings: dict[str, list[float]] = {
            k: [] for k in ("models", "models_old", "reload", "reload_old")
        }
        rows: dict[str, int] = {}
        for _ in range(args.rounds):  # interleaved, so load drifts hit both alike
            for name, call in (
                ("models", lambda: client.models()),
                ("models_old", lambda: fleet_admin.models(client.app, 3.0, None)),
                ("reload", lambda: client.reload()),
                ("reload_old", lambda: fleet_admin.reload(client.app, 10.0, None, False, None)),
            ):
                started = time.perf_counter()
                answered = call()
                timings[name].append(time.perf_counter() - started)
                rows[name] = len(answered)
        for new, old in (("models", "models_old"), ("reload", "reload_old")):
            fast, slow = _fleet.median(timings[new]), _fleet.median(timings[old])
            print(
                f"{new:<19} {fast:.3f} s (catalog-asked, {rows[new]} rows) vs {slow:.3f} s "
                f"(listened, {rows[old]} rows): {slow / fast:.1f}x faster, "
                f"median of {args.rounds}"
            )
    _fleet.footer()


if __name__ == "__main__":
    main()
