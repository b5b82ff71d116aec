"""Starting the gateway: refusals without keys, health and readiness, and a model no
live worker serves answered 503 promptly."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from tests.gateway_support import TEST_KEY, GatewayProcess
from tests.support import DEFAULT_MODEL, default_entry, run_cli, write_config

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {"EMBEDFLEET_API_KEYS": ""}, "no API keys"),
        (("--no-auth", "--host", "0.0.0.0"), {"EMBEDFLEET_API_KEYS": ""}, "loopback"),
        (("--no-auth",), {"EMBEDFLEET_API_KEYS": "k1"}, "choose one"),
    ],
)
def test_it_refuses_to_start_open_on_the_network(args, env, says):
    done = run_cli("serve", "--port", "1", *args, env=env, timeout=60)
    assert done.returncode == 2
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_and_ready(gateway):
    assert _get(gateway.port, "/health") == (200, {"status": "ok"})
    status, body = _get(gateway.port, "/ready")
    assert status == 200 and body["workers"] >= 1


def test_no_auth_on_loopback_serves_without_a_key(worker, state_dir, fleet_config):
    proc = GatewayProcess(
        state_dir / "gateway-open.log",
        env={"EMBEDFLEET_API_KEYS": "", "EMBEDFLEET_MODEL_CONFIG": str(fleet_config)},
        args=("--no-auth",),
    ).wait_ready()
    try:
        status, body = _get(proc.port, "/v1/models")
        assert status == 200 and DEFAULT_MODEL in {m["id"] for m in body["data"]}
    finally:
        proc.stop()


def test_a_model_no_live_worker_serves_is_503_promptly(worker, state_dir, tmp_path):
    # Given a model the gateway's config knows but no worker serves
    config = write_config(
        tmp_path / "models.json",
        {
            DEFAULT_MODEL: default_entry(),
            "unserved-model": {"type": "tests.plugins:HashModel", "model_path": "x", "RAM": 0.01},
        },
    )
    proc = GatewayProcess(
        state_dir / "gateway-unserved.log", env={"EMBEDFLEET_MODEL_CONFIG": str(config)}
    ).wait_ready()
    try:
        sdk = openai.OpenAI(base_url=proc.base_url, api_key=TEST_KEY, max_retries=0, timeout=30)
        # When a request names it, Then the SDK raises InternalServerError (503): it is
        # judged before anything is queued, so the SDK's 30 s timeout never comes into it.
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.embeddings.create(model="unserved-model", input="hello")
        assert caught.value.status_code == 503
        assert "no live worker" in caught.value.message
    finally:
        proc.stop()
