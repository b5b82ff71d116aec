"""Experiment (to become the full-Redis test)."""

from __future__ import annotations

import pytest

from tests.fault.conftest import SLOW
from tests.plugins import SLOW_ENV

pytestmark = pytest.mark.fault


def test_experiment(make_fleet, tmp_path):
    fleet = make_fleet({"slow": SLOW}, env={SLOW_ENV: "0.001"}, visibility_s=None)
    worker = fleet.worker()
    fleet.ready(worker)
    redis = fleet.redis()
    used = int(redis.info("memory")["used_memory"])
    redis.config_set("maxmemory", used + 3 * 2**20)
    texts = [f"row {i} " + "x" * 300 for i in range(20000)]
    try:
        job = fleet.client.submit(texts, model="slow", max_texts=50)
        print("submitted", job.id)
    except Exception as exc:
        print("SUBMIT ERROR", type(exc).__name__, exc)
        job = None
    import time
    time.sleep(15)
    print("worker alive:", worker.proc.poll())
    if job is not None:
        print(job.status())
    print(worker.log()[-6000:])
