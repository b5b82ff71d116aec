"""A worker's delivery keys, liveness and refused-chunk records follow the settings its
app was built with, not values read when a module was imported (on the real server)."""

from __future__ import annotations

import uuid

import pytest

from tasks.app import make_app
from tasks.chunks import embed
from tasks.contract.settings import load_settings
from tasks.jobs import deliveries, jobstore


def app_with(redis_server, **values):
    settings = load_settings().model_copy(update=values)
    return make_app(redis_server.url, settings)


@pytest.mark.parametrize("lapse_s, ttl_s", [(12.0, 500), (24.0, 900)])
def test_a_delivery_uses_the_lapse_and_ttl_of_its_app_s_settings(redis_server, lapse_s, ttl_s):
    # Given an app built from settings of its own (two apps in one process: nothing fixed
    # at import can satisfy both)
    app = app_with(redis_server, worker_lapse_s=lapse_s, result_ttl_s=ttl_s)
    client = app.backend.client
    job = uuid.uuid4().hex
    client.hset(jobstore.PREFIX + job, "total", 1)
    task_id = jobstore.chunk_task_id(job, 0)
    # When a chunk's delivery is counted through it
    embed.begin_delivery(app, task_id, 0)
    # Then this process is alive for the app's lapse, and the delivery keys last its TTL
    alive_ms = client.pttl(deliveries.ALIVE_PREFIX + deliveries.worker_id())
    assert (lapse_s - 5) * 1000 < alive_ms <= lapse_s * 1000
    counter = client.ttl(deliveries.DELIVERIES_PREFIX + task_id + ":0")
    assert ttl_s - 5 < counter <= ttl_s
    embed.end_delivery(app, task_id, 0)
    assert not client.exists(deliveries.DELIVERIES_PREFIX + task_id + ":0")
    client.delete(jobstore.PREFIX + job)


def test_the_lapse_is_capped_by_the_visibility_timeout_of_the_same_settings(redis_server):
    app = app_with(redis_server, worker_lapse_s=30.0, visibility_timeout_s=16)
    embed.begin_delivery(app, jobstore.chunk_task_id(uuid.uuid4().hex, 0), 0)
    alive_ms = app.backend.client.pttl(deliveries.ALIVE_PREFIX + deliveries.worker_id())
    assert 7_000 < alive_ms <= 12_000  # 3/4 of 16 s


def test_a_heartbeat_beats_six_times_a_lapse_and_writes_for_one(redis_server):
    client = redis_server.client()
    heartbeat = deliveries.Heartbeat(client, 18.0)
    assert heartbeat.interval_s == 3.0
    client.delete(deliveries.ALIVE_PREFIX + heartbeat.me)
    heartbeat.beat_once()
    assert 13_000 < client.pttl(deliveries.ALIVE_PREFIX + heartbeat.me) <= 18_000
    assert deliveries.Heartbeat(client, 0.3).interval_s == deliveries.MIN_ALIVE_TTL_S / 6


def test_the_broker_channel_records_refused_chunks_for_the_app_s_ttl(redis_server):
    # The channel records a chunk failed when a full Redis refuses the message it took:
    # for as long as the app's settings keep records
    app = app_with(redis_server, result_ttl_s=777)
    with app.connection_for_write() as connection:
        assert connection.default_channel.result_ttl_s == 777
