"""A real ``embedfleet serve`` process on a free port, for the gateway's tests and bench."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from producers.server import free_port
from tests.support import CliProcess

__all__ = ["TEST_KEY", "GatewayProcess"]

#: The key the test gateways accept.
TEST_KEY = "sk-test-" + "0" * 24


class GatewayProcess(CliProcess):
    """``python -m producers.cli serve`` in a subprocess, as an operator runs it."""

    stop_timeout = 15.0

    def __init__(
        self,
        log_path: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.what = f"gateway on port {self.port}"
        super().__init__(
            ["serve", "--port", str(self.port), *args],
            log_path,
            {"EMBEDFLEET_API_KEYS": TEST_KEY, **(env or {})},
            append=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_ready(self, timeout: float = 60.0) -> GatewayProcess:
        """Poll ``/health`` until it answers (or the process exits)."""
        self._wait_until(self._healthy, timeout)
        return self

    def _healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/health"
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
        return False
