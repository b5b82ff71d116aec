"""The pid files of the local fleet (``embedfleet up``): write, read, stop.

A pid file holds the pid and the process's start time, so ``down`` never signals
another process that reused the pid. A pid file is never replaced while its process
lives: ``up`` picks names that are free, and :func:`record` refuses otherwise.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import psutil

from producers.errors import FleetError


def path(state: Path, name: str) -> Path:
    return state / f"{name}.pid"


def record(state: Path, name: str, pid: int) -> None:
    """Write ``name``'s pid file (atomically); :class:`FleetError` when one already
    names a live process."""
    check_free(state, name)
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started = 0.0
    target = path(state, name)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(f"{pid} {started!r}")
    os.replace(tmp, target)


def check_free(state: Path, name: str) -> None:
    """:class:`FleetError` when ``name``'s pid file names a live process."""
    proc = recorded(path(state, name))
    if proc is not None and running(proc):
        raise FleetError(
            f"{name} is already running (pid {proc.pid}, {path(state, name)}); "
            "`embedfleet down` stops it"
        )


def recorded(pidfile: Path) -> psutil.Process | None:
    """The process a pid file names, or None (gone, reused pid, unreadable file)."""
    try:
        fields = pidfile.read_text().split()
        pid, started = int(fields[0]), float(fields[1]) if len(fields) > 1 else None
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return None  # the pid now belongs to another process
        return proc
    except (ValueError, IndexError, OSError, psutil.Error):
        return None


def live(state: Path) -> dict[str, psutil.Process]:
    """Name -> process of every pid file in ``state`` whose process still runs."""
    found = {}
    for pidfile in sorted(state.glob("*.pid")):
        proc = recorded(pidfile)
        if proc is not None and running(proc):
            found[pidfile.stem] = proc
    return found


def terminate(proc: psutil.Process, timeout: float) -> None:
    """SIGTERM to ``proc`` and its children, SIGKILL to what is left after ``timeout``."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    alive = wait_gone(family, timeout)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    wait_gone(alive, 10.0)


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until ``procs`` have exited; returns those still running after ``timeout``.

    Not ``psutil.wait_procs``: a process ``up`` started outlives ``up`` and is
    reparented; where nothing reaps it, it stays a zombie, which is gone for us.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if running(p)]
    return alive


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
