"""A worker's boot builds one :class:`Worker` from its app's settings and owns its parts:
the runtime's events reach every emitter and subscriber, the heartbeat beats at the
settings' lapse, the catalog entry comes and goes with it (on the session's real server;
no model is loaded)."""

from __future__ import annotations

import json
import uuid

import pytest

from tasks.app import make_app
from tasks.contract import catalog
from tasks.contract.settings import load_settings
from tasks.jobs.deliveries import ALIVE_PREFIX
from workers.observability.process_events import process_events
from workers.serving.boot import boot_worker
from workers.serving.process import current_runtime, set_runtime
from workers.serving.worker import worker_of


@pytest.fixture
def booted(redis_server, tmp_path):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    model = f"boot-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "models.json"
    config.write_text(
        json.dumps(
            {model: {"type": "sentence_transformer", "model_path": str(tmp_path), "RAM": 0.1}}
        )
    )
    settings = load_settings().model_copy(
        update={
            "config_source": str(config),
            "embed_cache": False,
            "metrics_port": 0,
            "worker_lapse_s": 12.0,
            "watchdog_interval_s": 60.0,
            "threads": 1,  # the onnxruntime knob's default: later tests see it unchanged
        }
    )
    app = make_app(redis_server.url, settings)
    name = f"unit-{model}@host"
    worker = boot_worker(app, name, 1)
    yield app, worker, name, model
    worker.close()
    set_runtime(None)
    torch.set_num_threads(threads)


def test_the_boot_builds_one_worker_from_its_app_s_settings(booted):
    app, worker, name, model = booted
    client = app.backend.client
    # The app holds the worker, and encodes through its runtime, built from its settings
    assert worker_of(app) is worker and current_runtime() is worker.runtime
    assert app.encoder == worker.runtime.embed
    assert worker.runtime.settings is app.settings and model in worker.runtime.config
    assert worker.runtime.client is client  # the app's Redis, not a module's
    # One events object, the process's hub a plugin subscribes to (README): the cache
    # emits to it, the chunk signals and watchdog use it
    assert worker.runtime.events is process_events()
    assert worker.runtime.cache.events is worker.runtime.events
    assert worker.signals.events is worker.runtime.events
    watchdog = worker.start_watchdog()
    assert watchdog.events is worker.runtime.events and watchdog.interval_s == 60.0
    assert worker.start_watchdog() is watchdog  # once
    # Alive at the settings' lapse (12 s: a beat every 2 s), and so is the reclaimer's look
    assert worker.heartbeat is not None and worker.reclaimer is not None
    assert worker.heartbeat.interval_s == 2.0 and worker.reclaimer.interval_s == 2.0
    assert 0 < client.pttl(ALIVE_PREFIX + worker.heartbeat.me) <= 12_000
    # Published before it consumes
    assert name in catalog.live_workers(client, model)
    assert worker.metrics is None  # port 0: off


def test_closing_the_worker_stops_what_it_started(booted):
    app, worker, name, model = booted
    watchdog = worker.start_watchdog()
    worker.close()
    assert not watchdog.is_alive()
    assert name not in catalog.live_workers(app.backend.client, model)
    worker.heartbeat.join(5)
    worker.reclaimer.join(5)
    assert not worker.heartbeat.is_alive() and not worker.reclaimer.is_alive()
