"""The chunk task's one-round-trip cancel check and start mark (tasks.chunks.embed)."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from tasks.chunks.embed import cancelled_else_started
from tasks.jobs import jobstore

pytestmark = pytest.mark.integration


def test_cancel_check_marks_the_start_once_and_sees_cancels(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    order, bounds = np.arange(4), np.array([0, 2, 4])
    jobstore.create(client, "job-checks", "m", "v", order, bounds, ttl_s=600)
    assert jobstore.load(client, "job-checks").started is False
    # When a chunk of a live job starts
    assert cancelled_else_started(client, "job-checks") is False
    # Then the job is RUNNING, and a later chunk keeps the first start time
    first = client.hget(jobstore.PREFIX + "job-checks", "started")
    assert jobstore.load(client, "job-checks").started and first
    assert cancelled_else_started(client, "job-checks") is False
    assert client.hget(jobstore.PREFIX + "job-checks", "started") == first
    jobstore.mark_cancelled(client, "job-checks")
    assert cancelled_else_started(client, "job-checks") is True


def test_cancel_check_creates_no_keys_for_unknown_jobs(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    assert cancelled_else_started(client, "no-such-job") is False
    assert not client.exists(jobstore.PREFIX + "no-such-job")
