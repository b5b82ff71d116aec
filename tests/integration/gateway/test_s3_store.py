"""The file store on S3 (moto's HTTP server): uploads, a batch's parts and its output
files live under ``EMBEDFLEET_FILE_STORE=s3://...``, and workers read the input there."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import openai
import pytest

from tests.aws import MotoServer
from tests.gateway_support import TEST_KEY, GatewayProcess
from tests.plugins import hash_vector
from tests.support import WorkerProcess, write_config

pytestmark = pytest.mark.integration

STORE = "s3://gateway-files/store/"


def test_a_batch_runs_from_and_to_an_s3_file_store(client, state_dir, tmp_path):
    moto = MotoServer.shared()
    moto.client("s3").create_bucket(Bucket="gateway-files")
    # A model only this worker serves, so the chunk lands where the S3 credentials are.
    config = write_config(
        tmp_path / "models.json",
        {"s3-hash": {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}},
    )
    worker = WorkerProcess(config, env=moto.worker_env, log_dir=tmp_path).wait_ready(client.app)
    gateway = GatewayProcess(
        tmp_path / "gateway.log",
        env={**moto.worker_env, "EMBEDFLEET_FILE_STORE": STORE},
    ).wait_ready()
    try:
        sdk = openai.OpenAI(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0)
        texts = [f"s3 text {i}" for i in range(12)]
        lines = [
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "s3-hash", "input": t},
            }
            for i, t in enumerate(texts)
        ]
        data = "".join(json.dumps(x) + "\n" for x in lines).encode()
        uploaded = sdk.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        keys = {
            o["Key"] for o in moto.client("s3").list_objects_v2(Bucket="gateway-files")["Contents"]
        }
        assert f"store/{uploaded.id}.jsonl" in keys
        batch = sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
        )
        deadline = time.monotonic() + 120
        while batch.status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            batch = sdk.batches.retrieve(batch.id)
        assert batch.status == "completed", (batch.errors, worker.log()[-2000:])
        out = [json.loads(x) for x in sdk.files.content(batch.output_file_id).read().splitlines()]
        got = np.asarray([x["response"]["body"]["data"][0]["embedding"] for x in out])
        np.testing.assert_allclose(got, np.stack([hash_vector(t) for t in texts]), atol=1e-6)
        keys = {
            o["Key"] for o in moto.client("s3").list_objects_v2(Bucket="gateway-files")["Contents"]
        }
        assert f"store/{batch.output_file_id}.jsonl" in keys
        assert any(k.startswith(f"store/batches/{batch.id}/part-") for k in keys)
    finally:
        gateway.stop()
        worker.stop()
