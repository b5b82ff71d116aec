"""A real gateway process in front of the integration tests' real server and worker."""

from __future__ import annotations

import pytest

from tests.gateway_support import TEST_KEY, GatewayProcess


@pytest.fixture(scope="session")
def gateway(worker, state_dir, fleet_config):
    proc = GatewayProcess(
        state_dir / "gateway.log",
        env={"EMBEDFLEET_MODEL_CONFIG": str(fleet_config)},
    ).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def openai_client(gateway):
    from openai import OpenAI

    return OpenAI(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0, timeout=120)
