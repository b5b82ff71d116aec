"""Test workers forked from interpreters that have imported what every worker imports.

``import sentence_transformers`` costs ~8 s of CPU on a 2-core runner (transformers'
lazy-import scan, scipy, sklearn, torch.distributed) and celery, kombu, redis, numpy and
pydantic ~0.8 s: every worker of the suite paid them again at its start. Two fork
servers per test process, started with the session, import them once: one with
sentence-transformers (multiprocessing's own), for workers serving a torch model, one
without (the tests of lazy imports watch that a worker without a torch model never
imports torch). A worker forked from one runs the same entry point as ``python -m
producers.cli worker`` (``producers.cli.main``) in its own process, session and log
file. Nothing of the project is imported before the fork: its code runs in the worker
as it would anyway.

A worker is forked only where that cannot change what it sees: its environment may
differ from the servers' only in variables read at the entry point (``EMBEDFLEET_*``;
``AWS_*``, which boto3 reads per client; pytest's ``PYTEST_*``). Any other difference
(``HF_HOME``, ``PYTHONPATH``, ``OMP_NUM_THREADS``: read when a library is imported)
gets a fresh interpreter.
"""

from __future__ import annotations

import atexit
import io
import json
import multiprocessing
import multiprocessing.context
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import set_spawning_popen
from pathlib import Path
from typing import Any

#: ``TEST_FRESH_WORKERS=1``: every worker in a fresh interpreter, none forked.
FRESH_ENV = "TEST_FRESH_WORKERS"
#: What the fork servers import: the libraries every worker loads anyway, and with
#: sentence-transformers, for the workers of a torch model (:data:`PRELOAD`).
LIGHT_PRELOAD = [
    "celery",
    "celery.worker.consumer",
    "kombu.transport.redis",
    "redis",
    "numpy",
    "pydantic_settings",
]
PRELOAD = ["sentence_transformers", *LIGHT_PRELOAD]
#: Environment variables a forked worker may set differently: read at the entry point
#: (pytest's own, ``PYTEST_CURRENT_TEST``, changes at every test and is read by none).
ENTRY_POINT_PREFIXES = ("EMBEDFLEET_", "AWS_", "PYTEST_")
#: What importing torch writes into ``os.environ``: the same in the server, whose torch
#: wrote them too, as in a test process that has imported torch since it started.
SET_BY_TORCH = {"KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK", "TORCHINDUCTOR_CACHE_DIR"}
#: Model types whose workers import torch and sentence-transformers (or transformers).
TORCH_TYPES = {"sentence_transformer", "bert", "s3"}

#: The environment the fork server was started with (set at its start).
_server: dict[str, dict[str, str]] = {}


def serves_torch(config: Path, selection: str) -> bool:
    """True when a worker of ``config`` (a JSON file) serving ``selection`` ("all" or
    names, comma-separated) loads a torch model."""
    try:
        models: dict[str, Any] = json.loads(Path(config).read_text())
    except (OSError, ValueError):
        return False
    names = set(models) if selection == "all" else set(selection.split(","))
    return any(
        isinstance(entry, dict) and entry.get("type") in TORCH_TYPES
        for name, entry in models.items()
        if name in names
    )


def forkable(env: dict[str, str], root: Path) -> bool:
    """True when a worker with ``env`` sees the same as one forked from the server (the
    server is started with the environment of the first call)."""
    if os.environ.get(FRESH_ENV) == "1":
        return False
    server = _server.get("env", os.environ)

    def compared(variables: Mapping[str, str]) -> dict[str, str]:
        return {
            k: v
            for k, v in variables.items()
            if not k.startswith(ENTRY_POINT_PREFIXES) and k not in SET_BY_TORCH | {FRESH_ENV}
        }

    wanted, have = compared(env), compared(server)
    if wanted.pop("PYTHONPATH", None) != str(root) or str(root) not in sys.path:
        return False
    have.pop("PYTHONPATH", None)
    return wanted == have


class _LightPopen(popen_forkserver.Popen):
    """multiprocessing's forkserver Popen, asking :data:`_LIGHT` (the stdlib keeps one
    fork server per process): ``Popen._launch`` of Python 3.11, its server swapped."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = _LIGHT.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _LightProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _LightPopen:  # noqa: N802 - multiprocessing's name
        return _LightPopen(process_obj)


#: The fork server without sentence-transformers.
_LIGHT = forkserver.ForkServer()


def warm_up() -> None:
    """Start the fork servers (once): they import while the tests go on."""
    if "env" not in _server:
        _server["env"] = dict(os.environ)
        multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()
        _LIGHT.set_forkserver_preload(LIGHT_PRELOAD)
        _LIGHT.ensure_running()


def start(
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path,
    errors: Path | None = None,
    torch: bool = True,
) -> ForkedProcess:
    """``python -m producers.cli ARGS`` forked from a server (the one that has imported
    sentence-transformers when ``torch``); its output goes to ``log_path`` (appended
    to), its stderr there too unless ``errors`` is given."""
    warm_up()
    paths = (str(log_path), str(errors or log_path))
    kind = multiprocessing.get_context("forkserver").Process if torch else _LightProcess
    process = kind(target=_run_cli, args=(args, env, paths, str(cwd)), daemon=True)
    process.start()
    return ForkedProcess(process, args)


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([python, -m, producers.cli, *args], capture_output=True,
    text=True, ...)``, forked from the server."""
    with tempfile.TemporaryDirectory(prefix="embedfleet-cli-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        proc = start(args, env, out, cwd, errors=err)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess(
            args, proc.wait(), out.read_text(errors="replace"), err.read_text(errors="replace")
        )


def _run_cli(args: list[str], env: dict[str, str], paths: tuple[str, str], cwd: str) -> None:
    """In the forked child: what ``Popen([python, -m, producers.cli, *args], cwd=cwd,
    env=env, stdout=..., stderr=..., start_new_session=True)`` sets up, then the CLI."""
    os.setsid()
    for fd, path in zip((1, 2), paths, strict=True):
        log = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, fd)
        os.close(log)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from producers import cli

    sys.argv = [cli.__file__, *args]
    code = 1
    try:
        code = cli.main(args)
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()  # a forked child skips them; python -m runs them
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkedProcess:
    """The part of :class:`subprocess.Popen` the tests use, over a forked process."""

    def __init__(self, process: multiprocessing.process.BaseProcess, args: list[str]) -> None:
        self._process = process
        self.args = args
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
