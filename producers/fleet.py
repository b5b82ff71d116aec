"""The local fleet in the background: embedded server, workers, Flower.

``embedfleet up`` starts what is missing and records pids in the state folder
(``EMBEDFLEET_STATE_DIR``, default ``~/.embedfleet``); ``embedfleet down`` stops
what ``up`` started, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from producers.server import ServerHandle, ensure_server, redact

#: Seconds a worker may take to answer its first ping (imports torch, reads config).
WORKER_START_TIMEOUT_S = 180.0


def state_dir() -> Path:
    """Folder of pid files, logs and the embedded server's data."""
    path = Path(os.environ.get("EMBEDFLEET_STATE_DIR", "~/.embedfleet")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def redis_url() -> str:
    """The broker URL of this environment."""
    import celeryconfig

    return celeryconfig.REDIS_URL


@dataclass
class Started:
    """What one ``up`` started (so ``demo`` stops only that)."""

    server: ServerHandle | None = None
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def stop(self, timeout: float = 20.0) -> None:
        for name, proc in self.processes:
            _terminate(proc.pid, timeout)
            _pidfile(name).unlink(missing_ok=True)
            proc.wait()
        if self.server is not None:
            self.server.stop()
            _pidfile("server").unlink(missing_ok=True)


def start_server_if_needed() -> ServerHandle | None:
    """Embedded default: start a server when the configured local one is silent."""
    handle = ensure_server(redis_url(), state_dir() / "server")
    if handle is not None:
        _pidfile("server").write_text(str(handle.pid))
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
    _pidfile(name).write_text(str(proc.pid))
    return proc


def start_flower(port: int = 5555) -> subprocess.Popen[bytes]:
    """Start Flower against this fleet's broker."""
    log = (state_dir() / "flower.log").open("ab")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    _pidfile("flower").write_text(str(proc.pid))
    return proc


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


def up(workers: int = 1, flower: bool = False, models: str = "all") -> Started:
    """Start the server if needed, ``workers`` workers and optionally Flower."""
    started = Started(server=start_server_if_needed())
    names = [f"worker{i + 1}" for i in range(workers)]
    for name in names:
        started.processes.append((name, start_worker(name, models)))
    if flower:
        started.processes.append(("flower", start_flower()))
    try:
        wait_for_workers(names, [p for n, p in started.processes if n in names])
    except Exception:
        started.stop()
        raise
    return started


def down() -> list[str]:
    """Stop everything ``up`` recorded in the state folder; returns what was stopped."""
    stopped = []
    for pidfile in sorted(state_dir().glob("*.pid")):
        name = pidfile.stem
        try:
            pid = int(pidfile.read_text())
        except ValueError:
            pidfile.unlink()
            continue
        if name == "server":
            ServerHandle(url=redis_url(), pid=pid, binary="").stop()
        if _terminate(pid, 20.0):
            stopped.append(name)
        pidfile.unlink(missing_ok=True)
    return stopped


def describe_url() -> str:
    return redact(redis_url())


def _pidfile(name: str) -> Path:
    return state_dir() / f"{name}.pid"


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True if the process existed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _is_zombie(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return False
