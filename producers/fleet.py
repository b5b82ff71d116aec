"""The local fleet in the background: embedded server, workers, Flower.

``embedfleet up`` starts what is missing and records pids in the state folder
(``EMBEDFLEET_STATE_DIR``, default ``~/.embedfleet``); ``embedfleet down`` stops
what ``up`` started, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from producers.server import ServerHandle, ensure_server, redact
from tasks.contract.host import usable_cores
from tasks.contract.settings import Settings

#: Seconds a worker may take to answer its first ping (imports torch, reads config).
WORKER_START_TIMEOUT_S = 180.0
#: Flower's web port.
FLOWER_PORT = 5555
#: Flower's settings file: task columns, and chunk kwargs shown as model/chunk/texts/job.
FLOWER_CONF = Path(__file__).with_name("flowerconfig.py")


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

    def stop(self, timeout: float = 20.0) -> None:
        for name, proc in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                _terminate(psutil.Process(proc.pid), timeout)
            _pidfile(name).unlink(missing_ok=True)
            proc.wait()
        if self.server is not None:
            self.server.stop()
            _pidfile("server").unlink(missing_ok=True)


def start_server_if_needed() -> ServerHandle | None:
    """Embedded default: start a server when the configured local one is silent."""
    handle = ensure_server(redis_url(), state_dir() / "server")
    if handle is not None:
        _record("server", handle.pid)
    return handle


def start_worker(
    name: str, models: str = "all", concurrency: int = 1, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``embedfleet worker`` in the background, logging to the state folder."""
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
            raise RuntimeError(
                f"flower exited with code {proc.returncode}; see {state_dir()}/flower.log"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"flower did not answer on port {port} within {timeout:.0f} s")


def wait_for_workers(
    names: list[str], procs: list[subprocess.Popen[bytes]], timeout: float = WORKER_START_TIMEOUT_S
) -> None:
    """Block until every named worker answers a ping; fail fast if one exits."""
    from tasks.app import app

    deadline = time.monotonic() + timeout
    want = set(names)
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with code {proc.returncode}; see {state_dir()}/*.log"
                )
        replies = app.control.ping(timeout=0.5) or []
        seen = {n.split("@")[0] for reply in replies for n in reply}
        if want <= seen:
            return
    raise TimeoutError(f"workers {sorted(want)} did not answer within {timeout:.0f} s")


def up(
    workers: int = 1,
    flower: bool = False,
    models: str = "all",
    flower_port: int = FLOWER_PORT,
    flower_auth: str | None = None,
) -> Started:
    """Start the server if needed, ``workers`` workers and optionally Flower.

    With ``EMBEDFLEET_METRICS_PORT`` set, ``worker<i>`` (1-based) serves its metrics on
    that port + i - 1.
    """
    from tasks.contract.signing import key_of

    key_of(settings())  # the state folder's job key, made once before any worker races for it
    started = Started(server=start_server_if_needed())
    names = [f"worker{i + 1}" for i in range(workers)]
    metrics_base = settings().metrics_port
    for i, name in enumerate(names):
        env = {"EMBEDFLEET_METRICS_PORT": str(metrics_base + i)} if metrics_base else {}
        if settings().threads is None:
            # N workers on one machine share its cores: N x all-cores threads
            # oversubscribe them (0.74x in bench/scale.py).
            env["EMBEDFLEET_THREADS"] = str(max(1, usable_cores() // max(1, workers)))
        started.processes.append((name, start_worker(name, models, env=env)))
    flower_proc = start_flower(flower_port, basic_auth=flower_auth) if flower else None
    if flower_proc is not None:
        started.processes.append(("flower", flower_proc))
    try:
        wait_for_workers(names, [p for n, p in started.processes if n in names])
        if flower_proc is not None:
            wait_for_flower(flower_proc, flower_port)
    except Exception:
        started.stop()
        raise
    return started


def down() -> list[str]:
    """Stop everything ``up`` recorded in the state folder; returns what was stopped."""
    stopped = []
    # workers and Flower first, the server they talk to last
    for pidfile in sorted(state_dir().glob("*.pid"), key=lambda p: (p.stem == "server", p.stem)):
        proc = _recorded(pidfile)
        if proc is not None:
            if pidfile.stem == "server":
                ServerHandle(url=redis_url(), pid=proc.pid, binary="").stop()
            _terminate(proc, 20.0)
            stopped.append(pidfile.stem)
        pidfile.unlink(missing_ok=True)
    return stopped


def queued_on_embedded_server() -> int:
    """Chunks waiting on the embedded server ``up`` started (queued or taken but not
    acknowledged); 0 when ``up`` started none or it does not answer."""
    if not _pidfile("server").exists():
        return 0
    import redis

    try:
        client = redis.Redis.from_url(redis_url(), socket_timeout=2, socket_connect_timeout=2)
        queues = list(client.scan_iter(match="embed.*", _type="list"))
        return sum(int(client.llen(q)) for q in queues) + int(client.hlen("unacked"))
    except redis.RedisError:
        return 0


def describe_url() -> str:
    return redact(redis_url())


def _pidfile(name: str) -> Path:
    return state_dir() / f"{name}.pid"


def _record(name: str, pid: int) -> None:
    """Write ``name``'s pid file: the pid and the process's start time, so ``down``
    never signals another process that reused the pid after a reboot or a crash."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started = 0.0
    _pidfile(name).write_text(f"{pid} {started!r}")


def _recorded(pidfile: Path) -> psutil.Process | None:
    """The live process a pid file names, or None (gone, reused pid, unreadable file)."""
    try:
        fields = pidfile.read_text().split()
        pid, started = int(fields[0]), float(fields[1]) if len(fields) > 1 else None
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return None  # the pid now belongs to another process
        return proc
    except (ValueError, IndexError, OSError, psutil.Error):
        return None


def _terminate(proc: psutil.Process, timeout: float) -> None:
    """SIGTERM to ``proc`` and its children, SIGKILL to what is left after ``timeout``."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    alive = _wait_gone(family, timeout)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    _wait_gone(alive, 10.0)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until ``procs`` have exited; returns those still running after ``timeout``.

    Not ``psutil.wait_procs``: a process ``up`` started outlives ``up`` and is
    reparented; where nothing reaps it, it stays a zombie, which is gone for us.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _running(p)]
    return alive


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
