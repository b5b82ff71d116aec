"""Shared by the benchmarks: a private server and real worker processes, started and
stopped by the project's own code. Import this module before anything imports ``tasks``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "bench" / "data" / "debian_descriptions.jsonl"
MODEL = "all-MiniLM-L6-v2"

_WORK = Path(tempfile.mkdtemp(prefix="embedfleet-bench-"))
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    _PORT = _s.getsockname()[1]
os.environ["EMBEDFLEET_REDIS_URL"] = f"redis://127.0.0.1:{_PORT}/0"
os.environ["EMBEDFLEET_STATE_DIR"] = str(_WORK / "state")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def load_corpus(n: int) -> list[str]:
    with CORPUS.open() as fh:
        texts = [json.loads(line)["text"] for line in fh]
    if n > len(texts):
        raise SystemExit(f"the corpus has {len(texts)} texts, {n} asked")
    return texts[:n]


def write_config(models: dict) -> Path:
    path = _WORK / f"models-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(models))
    return path


@contextmanager
def server() -> Iterator[str]:
    from producers.server import start_server

    handle = start_server(_PORT, _WORK / "server")
    try:
        yield handle.url
    finally:
        handle.stop()


@contextmanager
def workers(
    config: Path, count: int = 1, concurrency: int = 1, env: dict[str, str] | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    from producers.fleet import wait_for_workers

    procs, names = [], []
    for i in range(count):
        name = f"bench{i}-{os.getpid()}"
        log = (_WORK / f"{name}.log").open("wb")
        full_env = {**os.environ, "EMBEDFLEET_MODEL_CONFIG": str(config), **(env or {})}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "producers.cli",
                    "worker",
                    "--concurrency",
                    str(concurrency),
                    "--name",
                    f"{name}@%h",
                ],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        names.append(name)
    try:
        wait_for_workers(names, procs)
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
