"""Real-model workers forked from an interpreter that has imported sentence-transformers.

``import sentence_transformers`` costs ~8 s of CPU on a 2-core runner (transformers'
lazy-import scan, scipy, sklearn, torch.distributed): every real-model worker of the
suite paid it again before its first chunk. A fork server (multiprocessing's, one per
test process, started at the first such worker) imports those libraries once; each
worker forked from it runs the same entry point as ``python -m producers.cli worker``
(``producers.cli.main``) in its own process, session and log file. Nothing of the
project is imported before the fork: its code runs in the worker as it would anyway.

A worker is forked only where that cannot change what it sees: its environment may
differ from the server's only in variables read at the entry point (``EMBEDFLEET_*``;
``AWS_*``, which boto3 reads per client; pytest's ``PYTEST_*``). Any other difference (``HF_HOME``,
``PYTHONPATH``, ``OMP_NUM_THREADS``: read when a library is imported) gets a fresh
interpreter, and so does a worker whose config serves no torch model (the tests of lazy
imports watch what such a worker imports).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: ``TEST_FRESH_WORKERS=1``: every worker in a fresh interpreter, none forked.
FRESH_ENV = "TEST_FRESH_WORKERS"
#: What the fork server imports: the libraries a real-model worker loads anyway.
PRELOAD = ["sentence_transformers", "celery", "kombu.transport.redis", "numpy"]
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
            if not k.startswith(ENTRY_POINT_PREFIXES) and k not in SET_BY_TORCH
        }

    wanted, have = compared(env), compared(server)
    if wanted.pop("PYTHONPATH", None) != str(root) or str(root) not in sys.path:
        return False
    have.pop("PYTHONPATH", None)
    return wanted == have


def warm_up() -> multiprocessing.context.BaseContext:
    """Start the fork server (once): it imports :data:`PRELOAD` while the tests go on."""
    context = multiprocessing.get_context("forkserver")
    if "env" not in _server:
        context.set_forkserver_preload(PRELOAD)
        _server["env"] = dict(os.environ)
        multiprocessing.forkserver.ensure_running()
    return context


def start(
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path, errors: Path | None = None
) -> ForkedProcess:
    """``python -m producers.cli ARGS`` forked from the server; its output goes to
    ``log_path`` (appended to), its stderr there too unless ``errors`` is given."""
    paths = (str(log_path), str(errors or log_path))
    process = warm_up().Process(target=_run_cli, args=(args, env, paths, str(cwd)), daemon=True)
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
        code = exc.code if isinstance(exc.code, int) else 1
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
        if self._process.exitcode is None:
            self._process.terminate()

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()
