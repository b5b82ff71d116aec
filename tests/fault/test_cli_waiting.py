"""The CLI while a job waits: it says when no live worker serves the model (at submit,
and when the last one dies during `--wait`), Ctrl-C prints how to pick the job up again
(exit 130), and `result` of a cancelled job writes what was done, the rest NaN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tasks.contract.catalog import LIVE_S
from tests.fault.conftest import HASH, SLOW, wait_for
from tests.plugins import SLOW_ENV, hash_vector
from tests.support import ROOT, WorkerProcess, run_cli

pytestmark = pytest.mark.fault


class Cli:
    """``embedfleet ARGS`` running in the background; its stderr collected line by line."""

    def __init__(self, fleet, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", *args],
            cwd=ROOT,
            env={**os.environ, **fleet.env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err: list[str] = []
        self.job = self.proc.stdout.readline().strip()  # the id comes first
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.err)

    def stderr(self) -> str:
        return "".join(self.err)


@pytest.fixture
def fleet(make_fleet):
    """A worker serving ``hash-model``; ``idle`` is configured and served by nobody. The
    workers' lapse is 3/4 of the fleet's 5 s visibility timeout: a dead one leaves the
    catalog's live workers that long after its last beat."""
    fleet = make_fleet({"hash-model": HASH, "idle": HASH, "slow": SLOW})
    worker = WorkerProcess(fleet.config, models="hash-model", env=fleet.env, log_dir=fleet.log_dir)
    fleet.workers.append(worker)
    fleet.ready(worker)
    return fleet


def test_ctrl_c_during_wait_says_how_to_pick_the_job_up(fleet):
    # Given `submit --wait` for a model no live worker serves
    cli = Cli(fleet, "submit", "--model", "idle", "--text", "a", "b", "--wait")
    try:
        # Then it says so at once (and the job is queued all the same)
        wait_for(lambda: cli.said("no live worker serves idle"), 60, "the warning")
        assert fleet.client.job(cli.job).status()["state"] == "PENDING"
        # When the user presses Ctrl-C
        cli.proc.send_signal(signal.SIGINT)
        assert cli.proc.wait(60) == 130
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
    # Then the job id and the commands to follow and fetch it are printed
    wait_for(lambda: cli.said("interrupted"), 10, "the interrupt line")
    text = cli.stderr()
    assert f"job {cli.job} goes on" in text
    assert f"embedfleet status {cli.job}" in text and f"embedfleet result {cli.job}" in text
    assert "Traceback" not in text
    assert fleet.client.job(cli.job).status()["state"] == "PENDING"  # not cancelled


def test_wait_says_when_the_last_worker_serving_the_model_dies(fleet):
    # Given a slow job waited on while one worker serves its model
    slow = WorkerProcess(
        fleet.config, models="slow", env={**fleet.env, SLOW_ENV: "0.2"}, log_dir=fleet.log_dir
    )
    fleet.workers.append(slow)
    fleet.ready(slow)
    texts = [f"slow text {i}" for i in range(300)]
    cli = Cli(fleet, "submit", "--model", "slow", "--text", *texts, "--wait")
    try:
        assert not cli.said("no live worker")
        # When that worker is SIGKILLed mid-job (in a chunk: killed between taking a
        # message off the queue and recording it unacked, kombu's Redis transport loses it)
        job = fleet.client.job(cli.job)
        wait_for(lambda: job.status()["state"] == "RUNNING", 60, "the first chunk to start")
        slow.kill()
        # Then `--wait` says no live worker serves it, once its heartbeat has lapsed
        # (a safety net: the lapse here is 3.75 s, the catalog's default LIVE_S 30 s)
        wait_for(lambda: cli.said("no live worker serves slow"), LIVE_S + 40, "the line")
        # ... and a new worker is noticed, and finishes the job
        back = WorkerProcess(fleet.config, models="slow", env=fleet.env, log_dir=fleet.log_dir)
        fleet.workers.append(back)
        wait_for(lambda: cli.said("serves slow again"), 120, "the worker to be noticed")
        assert cli.proc.wait(150) == 0, cli.stderr()
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()


def test_result_of_a_cancelled_job_writes_what_was_done(fleet, tmp_path: Path):
    # Given a job of 6 chunks on a slow worker, cancelled once its first chunk is done
    slow = WorkerProcess(
        fleet.config, models="slow", env={**fleet.env, SLOW_ENV: "0.1"}, log_dir=fleet.log_dir
    )
    fleet.workers.append(slow)
    fleet.ready(slow)
    texts = [f"cancelled text {i}" for i in range(120)]
    job = fleet.client.submit(texts, model="slow", max_texts=20)
    wait_for(lambda: job.status()["done"] >= 1, 120, "a first chunk")
    job.cancel()
    # When `result` writes it, without --partial
    out = tmp_path / "out.npy"
    proc = run_cli("result", job.id, "--output", str(out), env=fleet.env, timeout=120)
    # Then it writes what was done, the rest NaN, and says so
    assert proc.returncode == 0, proc.stderr
    assert f"job {job.id} was cancelled: rows of chunks not done are NaN" in proc.stderr
    vectors = np.load(out)
    done = ~np.isnan(vectors).any(axis=1)
    assert 0 < done.sum() < len(texts)
    for row in np.flatnonzero(done):
        np.testing.assert_array_equal(vectors[row], hash_vector(texts[row]))
    assert np.isnan(vectors[~done]).all()
