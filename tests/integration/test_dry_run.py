"""Dry runs against a real server and the real model's worker: nothing is queued or
recorded; the estimate is the fleet's published cost of the job's tokens, and the output
size follows the job's options (how close the estimate comes to a real run:
bench/dry_run.py)."""

from __future__ import annotations

import json

import pytest

from tasks.contract import catalog
from tasks.contract.chunking import estimate_windows
from tasks.io.plan import CHUNK_OVERHEAD_S
from tasks.io.readers import read_texts
from tests.support import DEFAULT_MODEL, SAMPLE, run_cli
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def fleet_keys(client) -> tuple[set[bytes], dict[bytes, int]]:
    """Every job key and the length of every list (the queues) in the server."""
    redis = client.redis
    keys = set(redis.scan_iter(match="embedfleet:*", count=1000))
    queues = {
        k: int(redis.llen(k)) for k in redis.scan_iter(count=1000) if redis.type(k) == b"list"
    }
    return {k for k in keys if b":job" in k or b":idem:" in k}, queues


def test_dry_run_queues_nothing_and_its_estimate_holds(client, worker, tmp_path):
    texts = read_texts(str(SAMPLE), None)
    warm, measured = texts[:100], texts[100:300]
    # Given a fleet that has encoded this model and published what a token costs it
    client.submit(warm, DEFAULT_MODEL, cache=False).wait(timeout=300)
    wait_for(
        lambda: catalog.read(client.redis).models[DEFAULT_MODEL].seconds_per_token,
        3 * catalog.HEARTBEAT_S,
        "the worker's heartbeat to publish its measured cost",
    )
    before = fleet_keys(client)

    # When a list job and a dataset job are dry-run (Python and CLI)
    def steady_plan():
        """A dry run made while the published cost stood still (a heartbeat may publish
        the warm-up's cost while it runs), with the cost it read."""
        cost = catalog.read(client.redis).models[DEFAULT_MODEL].seconds_per_token
        made = client.submit(measured, DEFAULT_MODEL, dry_run=True)
        same = catalog.read(client.redis).models[DEFAULT_MODEL].seconds_per_token == cost
        return (made, cost) if same else None

    plan, spt = wait_for(steady_plan, 3 * catalog.HEARTBEAT_S, "a steady published cost")
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

    # And the estimate is the fleet's published cost of a token times the job's tokens,
    # spread over the live threads (how close that comes to a real run, which a test
    # cannot time on a shared machine: bench/dry_run.py)
    parallel = max(1, min(plan.threads, plan.chunks))
    work = plan.tokens * spt + plan.chunks * CHUNK_OVERHEAD_S
    assert plan.estimated_s == pytest.approx(work / parallel, abs=0.01)

    # And the output size follows the job's dimensions and quantization
    shaped = {
        (128, None): 200 * 128 * 4,
        (128, "int8"): 200 * 128,
        (128, "binary"): 200 * 16,
        (None, "ubinary"): 200 * 48,
    }
    for (dimensions, quantize), size in shaped.items():
        got = client.submit(
            measured, DEFAULT_MODEL, dry_run=True, dimensions=dimensions, quantize=quantize
        )
        assert got.output_bytes == size, (dimensions, quantize, got.output_bytes)


def test_a_windows_dry_run_counts_every_window(client, worker, tmp_path):
    # Given texts of several windows each (the sample's descriptions joined) and short ones
    sample = read_texts(str(SAMPLE), None)
    texts = [" ".join(sample[i : i + 12]).replace("\n", " ") for i in range(0, 120, 12)]
    texts += sample[200:210]
    windows, _ = estimate_windows(texts)  # 256 tokens, 32 overlap: the model's defaults
    assert windows.max() > 1
    source = tmp_path / "rows.txt"
    source.write_text("".join(t.replace("\n", " ") + "\n" for t in texts))
    # When the same job is dry-run truncated, as windows and as the mean of windows
    plain = client.submit(texts, DEFAULT_MODEL, dry_run=True)
    split = client.submit(texts, DEFAULT_MODEL, dry_run=True, long_text="windows")
    mean = client.submit(texts, DEFAULT_MODEL, dry_run=True, long_text="mean")
    dataset = client.submit_dataset(
        str(source), DEFAULT_MODEL, str(tmp_path / "o") + "/", dry_run=True, long_text="windows"
    )
    shown = run_cli(
        "submit", "--model", DEFAULT_MODEL, "--input", str(source), "--dry-run",
        "--long-text", "windows", "--window-overlap", "64",
    )  # fmt: skip
    # Then every window's tokens count, and windows give an output row each
    assert split.tokens == mean.tokens > plain.tokens
    assert (plain.output_rows, mean.output_rows) == (20, 20)
    assert split.rows == 20 and split.output_rows == int(windows.sum()) > 20
    assert split.output_bytes == split.output_rows * (384 * 4 + 8)
    assert mean.output_bytes == plain.output_bytes == 20 * 384 * 4
    # (a dataset job's from a sample of its chunks, scaled to its rows)
    assert dataset.rows == 20 and dataset.output_rows > 20 and dataset.tokens > plain.tokens
    assert any("the producer has no tokenizer" in n for n in split.notes)
    assert shown.returncode == 0, shown.stderr
    assert "output rows: one a window" in shown.stdout
    assert "windows of 256 tokens overlapping by 64" in shown.stdout
