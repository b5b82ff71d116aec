"""The local fleet in the background: embedded server, workers, Flower.

``embedfleet up`` starts what is missing and records pids in the state folder
(``EMBEDFLEET_STATE_DIR``, default ``~/.embedfleet``; ``producers.pidfiles``): a fleet
already up is left as it is, ``--workers N`` adds workers up to N under new names, and
a Redis already answering at ``EMBEDFLEET_REDIS_URL`` is used as it is. The embedded
server keeps an append-only file in the state folder, so queued work and job records
survive ``down`` and ``up``. ``embedfleet down`` stops what ``up`` started, and nothing
else.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from producers import pidfiles
from producers.errors import FleetError
from producers.server import ServerError, ServerHandle, ensure_server, redact
from tasks.contract.host import usable_cores
from tasks.contract.settings import Settings

#: Seconds a worker may take to answer its first ping (imports torch, reads config).
WORKER_START_TIMEOUT_S = 180.0
#: Flower's web port.
FLOWER_PORT = 5555
#: Flower's settings file: task columns, and chunk kwargs shown as model/chunk/texts/job.
FLOWER_CONF = Path(__file__).with_name("flowerconfig.py")
#: Names ``up`` gives its workers.
WORKER_NAME = re.compile(r"worker[0-9]+")


def settings() -> Settings:
    """This process's settings, read once (``tasks.contract.settings.process_settings``)."""
    from tasks.contract.settings import process_settings

    return process_settings()


def state_dir() -> Path:
    """Folder of pid files, logs and the embedded server's data."""
    path = settings().state_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def redis_url() -> str:
    """The broker URL of this environment."""
    return settings().redis_url


@dataclass
class Started:
    """What one ``up`` started (so ``demo`` stops only that)."""

    server: ServerHandle | None = None
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    #: Workers and Flower that were running already and were left alone.
    running: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.processes]

    def stop(self, timeout: float = 20.0) -> None:
        for name, proc in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                pidfiles.terminate(psutil.Process(proc.pid), timeout)
            _pidfile(name).unlink(missing_ok=True)
            proc.wait()
        if self.server is not None:
            self.server.stop()
            _pidfile("server").unlink(missing_ok=True)


def start_server_if_needed() -> ServerHandle | None:
    """Embedded default: start a server when the configured local one is silent."""
    handle = ensure_server(redis_url(), state_dir() / "server", appendonly=True)
    if handle is not None:
        _record("server", handle.pid)
    return handle


def start_worker(
    name: str, models: str = "all", concurrency: int = 1, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``embedfleet worker`` in the background, logging to the state folder."""
    pidfiles.check_free(state_dir(), name)
    log = (state_dir() / f"{name}.log").open("ab")
    cmd = [
        sys.executable,
        "-m",
        "producers.cli",
        "worker",
        "--models",
        models,
        "--concurrency",
        str(concurrency),
        "--name",
        f"{name}@%h",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    _record(name, proc.pid)
    return proc


def start_flower(
    port: int = FLOWER_PORT, address: str = "127.0.0.1", basic_auth: str | None = None
) -> subprocess.Popen[bytes]:
    """Start Flower (``celery -A tasks flower``) against this fleet's broker.

    ``basic_auth`` is ``user:password[,user2:password2]``; it travels in Flower's own
    ``FLOWER_BASIC_AUTH`` variable, not on the command line where ``ps`` would show it.
    Without it Flower's web pages are open and its HTTP API refuses every call.
    """
    pidfiles.check_free(state_dir(), "flower")
    log = (state_dir() / "flower.log").open("ab")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        f"--port={port}",
        f"--address={address}",
        f"--conf={FLOWER_CONF}",
    ]
    env = dict(os.environ)
    if basic_auth:
        env["FLOWER_BASIC_AUTH"] = basic_auth
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    _record("flower", proc.pid)
    return proc


def wait_for_flower(
    proc: subprocess.Popen[bytes], port: int = FLOWER_PORT, timeout: float = 60.0
) -> None:
    """Block until Flower answers its health check; fail fast if it exits."""
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{port}/healthcheck"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = state_dir() / "flower.log"
            raise FleetError(
                f"flower exited with code {proc.returncode}: {_last_line(log)} (see {log})"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise FleetError(f"flower did not answer on port {port} within {timeout:.0f} s")


def wait_for_workers(
    names: list[str], procs: list[subprocess.Popen[bytes]], timeout: float = WORKER_START_TIMEOUT_S
) -> None:
    """Block until every named worker answers a ping; fail fast if one exits
    (``procs[i]`` is ``names[i]``)."""
    from tasks.app import app

    deadline = time.monotonic() + timeout
    want = set(names)
    while time.monotonic() < deadline:
        for name, proc in zip(names, procs, strict=False):
            if proc.poll() is not None:
                log = state_dir() / f"{name}.log"
                raise FleetError(
                    f"{name} exited with code {proc.returncode}: {_last_line(log)} (see {log})"
                )
        replies = app.control.ping(timeout=0.5) or []
        seen = {n.split("@")[0] for reply in replies for n in reply}
        if want <= seen:
            return
    raise FleetError(
        f"workers {sorted(want)} did not answer within {timeout:.0f} s; see {state_dir()}/*.log"
    )


def up(
    workers: int = 1,
    flower: bool = False,
    models: str = "all",
    flower_port: int = FLOWER_PORT,
    flower_auth: str | None = None,
) -> Started:
    """Start what is missing: the server if none answers, workers up to ``workers``
    (``worker<k>``, names not in use), Flower when asked and not running. What runs
    already is left alone (:attr:`Started.running`). :class:`FleetError` (one line)
    when something cannot start; what this call started is stopped again.

    With ``EMBEDFLEET_METRICS_PORT`` set, ``worker<k>`` serves its metrics on that
    port + k - 1.
    """
    from tasks.contract.signing import key_of

    if workers < 0:
        raise FleetError("--workers must be 0 or more")
    key_of(settings())  # the state folder's job key, made once before any worker races for it
    running = pidfiles.live(state_dir())
    current = [name for name in running if WORKER_NAME.fullmatch(name)]
    started = Started(running=sorted(name for name in running if name != "server"))
    free = (
        f"worker{k}" for k in range(1, workers + len(running) + 2) if f"worker{k}" not in running
    )
    names = [next(free) for _ in range(max(0, workers - len(current)))]
    try:
        started.server = start_server_if_needed()
        for name in names:
            env = {}
            if settings().metrics_port:
                env["EMBEDFLEET_METRICS_PORT"] = str(settings().metrics_port + int(name[6:]) - 1)
            if settings().threads is None:
                # N workers on one machine share its cores: N x all-cores threads
                # oversubscribe them (0.74x in bench/scale.py).
                env["EMBEDFLEET_THREADS"] = str(max(1, usable_cores() // max(1, workers)))
            started.processes.append((name, start_worker(name, models, env=env)))
        flower_proc = None
        if flower and "flower" not in running:
            flower_proc = start_flower(flower_port, basic_auth=flower_auth)
            started.processes.append(("flower", flower_proc))
        wait_for_workers(names, [p for n, p in started.processes if n in names])
        if flower_proc is not None:
            wait_for_flower(flower_proc, flower_port)
    except BaseException as exc:
        started.stop()
        if isinstance(exc, (ServerError, OSError, psutil.Error)):
            raise FleetError(f"up failed: {exc}") from None
        raise
    return started


def down() -> list[str]:
    """Stop everything ``up`` recorded in the state folder; returns what was stopped."""
    stopped = []
    # workers and Flower first, the server they talk to last
    try:
        found = sorted(state_dir().glob("*.pid"), key=lambda p: (p.stem == "server", p.stem))
        for pidfile in found:
            proc = pidfiles.recorded(pidfile)
            if proc is not None:
                if pidfile.stem == "server":
                    ServerHandle(url=redis_url(), pid=proc.pid, binary="").stop()
                pidfiles.terminate(proc, 20.0)
                stopped.append(pidfile.stem)
            pidfile.unlink(missing_ok=True)
    except (OSError, psutil.Error) as exc:
        raise FleetError(f"down failed after stopping {stopped or 'nothing'}: {exc}") from None
    return stopped


def describe_url() -> str:
    return redact(redis_url())


def _pidfile(name: str) -> Path:
    return pidfiles.path(state_dir(), name)


def _record(name: str, pid: int) -> None:
    pidfiles.record(state_dir(), name, pid)


def _last_line(log: Path) -> str:
    """The last line of a log (why a process exited), or where to look."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1].strip() if lines else f"see {log}"
