"""The gateway while the only worker of a model dies under a request: the SDK gets a 503
once the worker's heartbeat lapses (its lapse: 3/4 of the fleet's 5 s visibility timeout
here, under the catalog's default 30 s), not a hang until its own timeout."""

from __future__ import annotations

import threading
from pathlib import Path

import openai
import pytest

from tests.fault.conftest import SLOW, wait_for
from tests.gateway_support import TEST_KEY, GatewayProcess
from tests.plugins import HANG_ENV

pytestmark = pytest.mark.fault


def test_a_request_whose_worker_dies_is_answered_503(make_fleet, tmp_path: Path):
    # Given a gateway and the one worker of model "slow", which freezes on its chunk
    fleet = make_fleet({"slow": SLOW})
    hang_file = tmp_path / "frozen"
    frozen = fleet.worker(**{HANG_ENV: str(hang_file)})
    fleet.ready(frozen)
    gateway = GatewayProcess(
        tmp_path / "gateway.log", env={**fleet.env, "EMBEDFLEET_MODEL_CONFIG": str(fleet.config)}
    ).wait_ready()
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0, timeout=240)
    caught: list[BaseException] = []

    def request() -> None:
        try:
            sdk.embeddings.create(model="slow", input=["a text the worker never finishes"])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            caught.append(exc)

    waiting = threading.Thread(target=request)
    try:
        waiting.start()
        # When the worker dies while it holds the request's chunk
        wait_for(hang_file.exists, 60, "the worker to start the request's chunk")
        frozen.kill()
        waiting.join(timeout=200)
        # Then the request is answered 503, saying why (the SDK's own timeout is 240 s)
        assert not waiting.is_alive()
        assert len(caught) == 1 and isinstance(caught[0], openai.InternalServerError)
        assert caught[0].status_code == 503
        assert "no live worker" in caught[0].message
    finally:
        gateway.stop()
