"""Helpers for tests that run real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

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


class WorkerProcess:
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
        self.log_path = (log_dir or Path(os.environ["EMBEDFLEET_STATE_DIR"])) / f"{self.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {
            **os.environ,
            "EMBEDFLEET_MODEL_CONFIG": str(config),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "producers.cli",
                "worker",
                "--models",
                models,
                "--concurrency",
                str(concurrency),
                "--name",
                f"{self.name}@%h",
            ],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, app: Any, timeout: float = 180.0) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log()}")
            replies = app.control.ping(destination=[self.node], timeout=0.5) or []
            if replies:
                return self
        raise TimeoutError(f"worker {self.name} not ready:\n{self.log()}")

    @property
    def node(self) -> str:
        import socket

        return f"{self.name}@{socket.gethostname()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``embedfleet`` in a separate process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
