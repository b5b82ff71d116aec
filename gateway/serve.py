"""``embedfleet serve``: check the settings, then run the gateway under uvicorn."""

from __future__ import annotations

from gateway.auth import check_startup
from tasks.contract.logs import event_logger
from tasks.contract.settings import Settings

log = event_logger(__name__)

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5


def run_gateway(settings: Settings, host: str, port: int, no_auth: bool = False) -> int:
    """Serve until interrupted; raises ``ConfigError`` (exit 2) when it must not start."""
    import uvicorn

    from gateway.app import build_app

    check_startup(settings.keys, no_auth, host)
    app = build_app(settings, no_auth=no_auth)
    log.warning("event=gateway_started host=%s port=%d auth=%s", host, port, not no_auth)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
        access_log=False,
    )
    return 0
