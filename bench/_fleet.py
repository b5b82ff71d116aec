"""Shared by the benchmarks: a private server and real worker processes, started and
stopped by the project's own code, plus the machine/load lines every figure is printed
with. Import this module before anything imports ``tasks``."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "bench" / "data" / "debian_descriptions.jsonl"
MODEL = "all-MiniLM-L6-v2"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

_WORK = Path(tempfile.mkdtemp(prefix="embedfleet-bench-"))
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    _PORT = _s.getsockname()[1]
os.environ["EMBEDFLEET_REDIS_URL"] = f"redis://127.0.0.1:{_PORT}/0"
os.environ["EMBEDFLEET_STATE_DIR"] = str(_WORK / "state")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def load_corpus(n: int) -> list[str]:
    """The first ``n`` real texts of the corpus (never generated, never repeated)."""
    with CORPUS.open() as fh:
        texts = [json.loads(line)["text"] for line in fh]
    if n > len(texts):
        raise SystemExit(f"the corpus has {len(texts)} texts, {n} asked")
    return texts[:n]


def write_corpus(texts: list[str], name: str = "input.jsonl") -> Path:
    """The texts as a .jsonl input file in the bench's work folder."""
    path = _WORK / name
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def print_loads(loads: list[tuple[str, str, float, float]]) -> None:
    """One line per model load the workers logged: seconds and RSS growth."""
    for model, kind, seconds, ram in loads:
        print(
            f"model load          {model} ({kind}): {seconds:.2f} s, RSS +{ram:.3f} GB (worker log)"
        )


def model_entry(**overrides: Any) -> dict[str, Any]:
    """The config entry of the benchmarked model (the packaged real weights)."""
    entry = {"type": "sentence_transformer", "model_path": HUB_ID, "RAM": 0.5, "preload": True}
    return entry | overrides


def write_config(models: dict) -> Path:
    path = _WORK / f"models-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(models))
    return path


def machine() -> str:
    """CPU model, usable cores and the SIMD flags that decide int8/fp32 speed."""
    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [
        f
        for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
        if f in flags
    ]
    cores = len(os.sched_getaffinity(0))
    return f"{model}, {cores} cores, {' '.join(simd) or 'no AVX2'}"


def load_avg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def header(title: str) -> None:
    print(f"== {title}")
    print(f"machine             {machine()}")
    print(f"before              {load_avg()}", flush=True)


def footer() -> None:
    print(f"after               {load_avg()}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


#: Process id of the server :func:`server` started (for CPU accounting).
SERVER_PID = 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server() -> Iterator[str]:
    from producers.server import start_server

    global SERVER_PID
    handle = start_server(_PORT, _WORK / "server")
    SERVER_PID = handle.pid
    try:
        yield handle.url
    finally:
        handle.stop()


@dataclass
class Worker:
    """A worker subprocess and its log file."""

    proc: subprocess.Popen[bytes]
    name: str
    log: Path

    def records(self, event: str) -> list[dict[str, Any]]:
        """The worker's JSON log records (``EMBEDFLEET_LOG_JSON=1``) of ``event``."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event:
                    found.append(record)
        return found

    def chunk_seconds(self) -> list[tuple[int, float]]:
        """(texts, seconds encoding) of every chunk this worker logged as done."""
        return [(int(r["texts"]), float(r["seconds"])) for r in self.records("chunk_done")]

    def loads(self) -> list[tuple[str, str, float, float]]:
        """(model, type, seconds, RSS growth GB) of every model load this worker logged."""
        return [
            (str(r["model"]), str(r["type"]), float(r["seconds"]), float(r["ram_gb_measured"]))
            for r in self.records("model_loaded")
        ]


@contextmanager
def workers(
    config: Path, count: int = 1, concurrency: int = 1, env: dict[str, str] | None = None
) -> Iterator[list[Worker]]:
    """``count`` real ``embedfleet worker`` processes; yields once every one answers a ping."""
    from producers.local_fleet import wait_for_workers

    started: list[Worker] = []
    for _ in range(count):
        name = f"bench{len(started)}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        log = _WORK / f"{name}.log"
        full_env = {
            **os.environ,
            "EMBEDFLEET_MODEL_CONFIG": str(config),
            "EMBEDFLEET_LOG_LEVEL": "INFO",
            "EMBEDFLEET_LOG_JSON": "1",  # typed fields, read back by records()
            **(env or {}),
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
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
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(Worker(proc, name, log))
    try:
        wait_for_workers([w.name for w in started], [w.proc for w in started])
        yield started
    finally:
        for w in started:
            w.proc.terminate()
        for w in started:
            w.proc.wait(30)


def warm(client: Any, model: str, texts: list[str], slots: int) -> None:
    """Load the model in every slot (worker x concurrency) before anything is timed."""
    jobs = [client.submit(texts[i : i + 2], model=model, cache=False) for i in range(slots * 2)]
    for job in jobs:
        job.wait(timeout=600)
