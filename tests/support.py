"""Helpers for tests that run real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import preloaded

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "all-MiniLM-L6-v2"
SAMPLE = ROOT / "data" / "sample.jsonl"


def write_config(path: Path, models: dict[str, Any]) -> Path:
    """Replace ``path`` atomically, as an operator's deploy should: readers (workers
    reloading, producers checking a model) never see a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(models, indent=2))
    tmp.replace(path)
    return path


def default_entry(**overrides: Any) -> dict[str, Any]:
    entry = {
        "type": "sentence_transformer",
        "model_path": "sentence-transformers/all-MiniLM-L6-v2",
        "RAM": 0.5,
        "preload": True,
    }
    entry.update(overrides)
    return entry


class CliProcess:
    """One ``embedfleet`` verb in a subprocess, as an operator runs it, its output in a
    log file: started here, waited ready by a subclass, stopped or killed by the test.
    (The worker's and the gateway's processes differ only in their verb, environment
    and the question that says they are ready.)"""

    #: What the process is called in errors ("worker test-1a2b3c4d").
    what = "process"
    #: Seconds :meth:`stop` waits after SIGTERM before it kills.
    stop_timeout = 30.0

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None,
        append: bool = False,
        fork: bool = False,
        torch: bool = False,
    ) -> None:
        """``fork``: the process is forked from an interpreter that has imported what it
        will (tests/preloaded.py; sentence-transformers too when ``torch``), where its
        environment allows."""
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab" if append else "wb")
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: Any
        if fork and preloaded.forkable(full_env, ROOT):
            self.proc = preloaded.start(args, full_env, log_path, ROOT, torch=torch)
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", *args],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Ask ``ready`` until it says yes; raises RuntimeError (with the log) when the
        process exits first, TimeoutError (with the log) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited {self.proc.returncode}:\n{self.log()}")
            if ready():
                return
        raise TimeoutError(f"{self.what} not ready after {timeout:g} s:\n{self.log()}")

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` (default :attr:`stop_timeout`) s."""
        stop_all([self], timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def stop_all(procs: list[CliProcess], timeout: float | None = None) -> None:
    """:meth:`CliProcess.stop` for each of ``procs``, all sent SIGTERM first so that
    their shutdowns (a worker's warm shutdown takes seconds) run side by side."""
    for proc in procs:
        if proc.proc.poll() is None:
            proc.proc.terminate()
    for proc in procs:
        try:
            proc.proc.wait(proc.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            proc.proc.kill()
            proc.proc.wait()
        proc._log.close()


def kill_all(procs: list[CliProcess]) -> None:
    """SIGKILL each of ``procs`` still running: the end of a test, where nothing needs a
    graceful stop (a worker's warm shutdown waits for the chunks it runs, seconds)."""
    for proc in procs:
        if proc.proc.poll() is None:
            proc.proc.kill()
    for proc in procs:
        proc.proc.wait()
        proc._log.close()


class WorkerProcess(CliProcess):
    """A real ``embedfleet worker`` subprocess."""

    def __init__(
        self,
        config: Path,
        models: str = "all",
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.what = f"worker {self.name}"
        log_path = (log_dir or Path(os.environ["EMBEDFLEET_STATE_DIR"])) / f"{self.name}.log"
        args = ["worker", "--models", models, "--concurrency", str(concurrency)]
        super().__init__(
            [*args, "--name", f"{self.name}@%h"],
            log_path,
            {"EMBEDFLEET_MODEL_CONFIG": str(config), **(env or {})},
            fork=True,
            torch=preloaded.serves_torch(config, models),
        )

    def wait_ready(self, app: Any, timeout: float = 180.0) -> WorkerProcess:
        """Wait until the worker answers a ping."""

        def answers() -> bool:
            return bool(app.control.ping(destination=[self.node], timeout=0.5))

        self._wait_until(answers, timeout)
        return self

    @property
    def node(self) -> str:
        import socket

        return f"{self.name}@{socket.gethostname()}"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, torch: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``embedfleet`` in a separate process, as a user would. ``torch``: the verb
    imports sentence-transformers; it is forked from an interpreter that has
    (tests/preloaded.py) where its environment allows."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if torch and preloaded.forkable(full_env, ROOT):
        return preloaded.run(list(args), full_env, ROOT, timeout)
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_celery(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A tasks ARGS`` in a separate process, as an operator would, with the
    repository importable."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
