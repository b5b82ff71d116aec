"""A worker's boot builds one :class:`Worker` from its app's settings and owns its parts:
the runtime's events reach every emitter and subscriber, the heartbeat beats at the
settings' lapse, the catalog entry comes and goes with it (on the session's real server;
no model is loaded)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid

import pytest

from producers.server import free_port
from tasks.app import make_app
from tasks.contract import catalog
from tasks.contract.errors import ConfigError
from tasks.contract.settings import load_settings
from tasks.jobs.deliveries import ALIVE_PREFIX
from tests.support import run_celery
from workers.models.compute_threads import set_threads, threads_set
from workers.observability.process_events import process_events
from workers.serving.boot import boot_worker, pool_on_command_line, pool_problem
from workers.serving.process import current_runtime, set_runtime
from workers.serving.worker import worker_of


def _settings(tmp_path, **update):
    """Settings of a worker serving one model (never loaded) from ``tmp_path``."""
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
            **update,
        }
    )
    return settings, model


@pytest.fixture
def torch_threads():
    """The boot sets the process's torch threads (:func:`configure_threads`): put back."""
    torch = pytest.importorskip("torch")
    threads, count = torch.get_num_threads(), threads_set()
    yield
    set_runtime(None)
    set_threads(count)
    torch.set_num_threads(threads)


@pytest.fixture
def booted(redis_server, tmp_path, torch_threads):
    settings, model = _settings(tmp_path, metrics_port=free_port(), metrics_addr="127.0.0.1")
    app = make_app(redis_server.url, settings)
    name = f"unit-{model}@host"
    worker = boot_worker(app, name, 1)
    yield app, worker, name, model
    worker.close()


def _answers(port: int) -> bool:
    """True when ``/metrics`` on ``port`` answers; False when the port refuses."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return reply.status == 200
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return False
        raise


def _our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("embedfleet-")}


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
    # /metrics serves the worker's metrics, subscribed to its events
    assert worker.endpoint is not None and worker.metrics is worker.endpoint.metrics
    assert _answers(app.settings.metrics_port)


def test_closing_the_worker_stops_what_it_started(booted):
    app, worker, name, model = booted
    watchdog = worker.start_watchdog()
    worker.close()
    assert not watchdog.is_alive()
    assert name not in catalog.live_workers(app.backend.client, model)
    worker.heartbeat.join(5)
    worker.reclaimer.join(5)
    assert not worker.heartbeat.is_alive() and not worker.reclaimer.is_alive()
    # and /metrics no longer answers: its port is closed
    assert not worker.endpoint.thread.is_alive()
    assert not _answers(app.settings.metrics_port)


def test_the_worker_publishes_on_a_full_redis_and_a_stopped_one_stays_gone(booted, redis_server):
    app, worker, name, model = booted
    client = app.backend.client
    # Given a full Redis (every write that may grow memory refused)
    before = client.config_get("maxmemory")["maxmemory"]
    catalog.forget(client, name)
    client.config_set("maxmemory", 1)
    try:
        # When the worker publishes (a reload does), it is in the catalog all the same
        assert worker.publisher.publish()
        assert name in catalog.live_workers(client, model)
    finally:
        client.config_set("maxmemory", before)
    # And once its publisher stopped, a beat under way does not bring its entry back
    worker.publisher.stop()
    worker.publisher.beat()
    assert not worker.publisher.publish()
    assert name not in catalog.live_workers(client, model)


def test_a_boot_that_fails_half_way_stops_what_it_started(redis_server, tmp_path, torch_threads):
    # Given a setting the boot finds wrong after the catalog entry, the heartbeat, the
    # reclaimer and /metrics have started (a profile prefix in a folder that is not there)
    port = free_port()
    settings, model = _settings(
        tmp_path, metrics_port=port, metrics_addr="127.0.0.1", profile=str(tmp_path / "no" / "p")
    )
    app = make_app(redis_server.url, settings)
    before = _our_threads()
    # When the worker boots
    with pytest.raises(ConfigError, match="EMBEDFLEET_PROFILE="):
        boot_worker(app, f"unit-{model}@host", 1)
    # Then everything it started is stopped, and the app has no worker and no encoder
    for thread in _our_threads() - before:
        thread.join(5)
        assert not thread.is_alive(), thread.name
    assert f"unit-{model}@host" not in catalog.live_workers(app.backend.client, model)
    assert not _answers(port)
    assert worker_of(app) is None and getattr(app, "encoder", None) is None


@pytest.mark.parametrize("pool_args", [[], ["-P", "prefork"]])
def test_a_celery_worker_whose_boot_fails_stops_instead_of_consuming(
    redis_server, tmp_path, pool_args
):
    # Given `celery -A tasks worker` with a setting its boot refuses (on `-P prefork`
    # too, which Celery turns into the configured threads pool)
    env = {
        "EMBEDFLEET_REDIS_URL": redis_server.url,
        "EMBEDFLEET_PROFILE": str(tmp_path / "no" / "p"),
    }
    queue = f"embed.boot-{uuid.uuid4().hex[:8]}"  # consumes nothing another test sends
    # When it starts, then the worker exits (2: a bad setting) naming the setting, rather
    # than consuming chunks it would fail with "no encoder" (a hang here times out)
    proc = run_celery("worker", "-Q", queue, "-c", "1", *pool_args, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "event=worker_boot_failed" in proc.stderr and "EMBEDFLEET_PROFILE=" in proc.stderr
    assert "Traceback" not in proc.stderr
    # ... and an explicit `-P prefork` is told it runs threads, in one line
    kept = [ln for ln in proc.stderr.splitlines() if "event=pool_kept" in ln]
    assert len(kept) == (1 if pool_args else 0), proc.stderr[-3000:]


@pytest.mark.parametrize("pool", ["threads", "solo", "tasks.guards.pool:ThreadPool"])
def test_the_threads_and_solo_pools_are_accepted(pool):
    assert pool_problem(pool) is None


@pytest.mark.parametrize("pool", ["prefork", "processes", "eventlet", "no.such:Pool"])
def test_every_other_pool_is_refused_naming_the_threads_pool(pool):
    problem = pool_problem(pool)
    assert problem is not None and problem.endswith("use -P threads") and "\n" not in problem


@pytest.mark.parametrize(
    ("argv", "pool"),
    [
        (["-A", "tasks", "worker", "-P", "prefork"], "prefork"),
        (["worker", "-Pprefork", "-Q", "q"], "prefork"),
        (["worker", "--pool", "threads"], "threads"),
        (["worker", "--pool=eventlet", "-c", "2"], "eventlet"),
        (["-A", "tasks", "worker", "-Q", "q"], None),
        (["worker", "-P"], None),
    ],
)
def test_the_pool_a_command_line_names_is_read(argv, pool):
    assert pool_on_command_line(argv) == pool


def test_a_prefork_celery_worker_stops_at_boot_naming_the_threads_pool(redis_server):
    # Given `celery -A tasks worker` on the prefork pool (its children would take chunks
    # under worker ids that never beat, and be reclaimed as dead). `-P processes` names
    # it: `-P prefork`, Celery's default, gives the app's configured pool (threads), and
    # the boot says so (pool_on_command_line).
    queue = f"embed.boot-{uuid.uuid4().hex[:8]}"  # consumes nothing another test sends
    proc = run_celery(
        "worker", "-P", "processes", "-Q", queue, env={"EMBEDFLEET_REDIS_URL": redis_server.url}
    )
    # Then it exits 2 with one line saying to use the threads pool (a hang here times out)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if "worker_boot_failed" in ln]
    assert "the prefork pool cannot run an embedfleet worker" in line and "-P threads" in line
    assert "Traceback" not in proc.stderr
