"""Every model type and source through real servers: moto's HTTP server (S3, SSM, IAM)
on loopback, a loopback SageMaker runtime server computing real embeddings, a Hugging
Face Hub cache laid out as the hub lays it out, and ONNX / BERT wrappers on the real
all-MiniLM-L6-v2 weights, served by ONE real worker whose config comes from SSM."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.artifacts import build_hub_cache, export_onnx, minilm_dir, tiny_bert
from tests.aws import PRIVATE_BUCKET, Endpoint, MotoServer, SageMakerServer
from tests.integration.conftest import cosine_rows
from tests.support import ROOT, SAMPLE, WorkerProcess, write_config
from workers.errors import ConfigError, ModelLoadError

pytestmark = pytest.mark.integration

BUCKET = "my-bucket"
SSM_PREFIX = "/embedfleet/it/models/"
HUB_ID = "embedfleet-test/all-MiniLM-L6-v2"
#: Real texts plus one far over the 256-token window, so truncation is compared too.
LONG = " ".join(f"word{i}" for i in range(2000))


def texts(n: int = 12) -> list[str]:
    from tasks.io.readers import read_texts

    return read_texts(SAMPLE)[:n] + [LONG]


# -- servers and artefacts ------------------------------------------------------------
@pytest.fixture(scope="module")
def moto() -> MotoServer:
    return MotoServer.shared()


@pytest.fixture
def aws_env(moto, monkeypatch):
    """In-process boto3 (as the code under test builds it) is the ``worker`` IAM user."""
    for key, value in moto.worker_env.items():
        monkeypatch.setenv(key, value)
    return moto.worker_env


@pytest.fixture(scope="session")
def minilm_onnx(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 exported to ONNX once per session, tokenizer files beside it."""
    return export_onnx(minilm_dir(), tmp_path_factory.mktemp("minilm-onnx"))


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-hub")
    build_hub_cache(cache, HUB_ID, minilm_dir())
    return cache


@pytest.fixture(scope="module")
def sagemaker(reference_model):
    endpoints = {
        "minilm": Endpoint(encode=reference_model.encode),
        "minilm-throttled": Endpoint(encode=reference_model.encode, throttle=2),
        "minilm-broken": Endpoint(error=(424, "ModelError", "Received server error (500)")),
    }
    server = SageMakerServer(endpoints).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_models(moto, minilm_onnx, tiny_bert_dir) -> None:
    """The seed's example key with its tokenizer beside it, a model folder under a
    prefix, and three keys that cannot load (corrupt, unknown format, access denied)."""
    s3 = moto.client("s3")
    for bucket in (BUCKET, PRIVATE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(minilm_onnx), BUCKET, "models/custom.onnx")
    for path in minilm_onnx.parent.iterdir():
        if path.is_file() and path.suffix != ".onnx":
            s3.upload_file(str(path), BUCKET, f"models/{path.name}")
    for path in tiny_bert_dir.iterdir():
        s3.upload_file(str(path), BUCKET, f"folders/tiny-bert/{path.name}")
    s3.put_object(Bucket=BUCKET, Key="models/corrupt.onnx", Body=b"not a protobuf graph")
    s3.put_object(Bucket=BUCKET, Key="models/weights.bin", Body=b"\0" * 64)
    s3.upload_file(str(minilm_onnx), PRIVATE_BUCKET, "model.onnx")


def model_entries(minilm_onnx: Path, tiny_bert_dir: Path) -> dict[str, dict[str, Any]]:
    """The worker's models: every type and source, working and broken."""
    ram = {"RAM": 0.3}
    return {
        "minilm-onnx": {"type": "onnx", "model_path": str(minilm_onnx.parent), **ram},
        "minilm-bert": {
            "type": "bert",
            "model_path": "sentence-transformers/all-MiniLM-L6-v2",
            "pooling": "mean",
            **ram,
        },
        "minilm-s3": {"type": "s3", "model_path": f"s3://{BUCKET}/models/custom.onnx", **ram},
        "tiny-bert-s3": {"type": "s3", "model_path": f"s3://{BUCKET}/folders/tiny-bert/", **ram},
        "minilm-hub": {"type": "sentence_transformer", "model_path": HUB_ID, **ram},
        "minilm-sagemaker": {
            "type": "sagemaker",
            "model_path": "minilm",
            "region": "eu-west-1",
            "batch_size": 8,
            "RAM": 0.01,
        },
        "throttled-sagemaker": {"type": "sagemaker", "model_path": "minilm-throttled", "RAM": 0.01},
        # cannot load / cannot serve:
        "hub-missing": {"type": "sentence_transformer", "model_path": "nobody/absent", **ram},
        "s3-corrupt": {"type": "s3", "model_path": f"s3://{BUCKET}/models/corrupt.onnx", **ram},
        "s3-unknown": {"type": "s3", "model_path": f"s3://{BUCKET}/models/weights.bin", **ram},
        "s3-denied": {"type": "s3", "model_path": f"s3://{PRIVATE_BUCKET}/model.onnx", **ram},
        "onnx-missing": {"type": "onnx", "model_path": "/nonexistent/model.onnx", **ram},
        "broken-sagemaker": {"type": "sagemaker", "model_path": "minilm-broken", "RAM": 0.01},
    }


@pytest.fixture(scope="module")
def entries(minilm_onnx, tiny_bert_dir) -> dict[str, dict[str, Any]]:
    return model_entries(minilm_onnx, tiny_bert_dir)


@pytest.fixture(scope="module")
def ssm_config(moto, entries) -> str:
    """The config as one SSM parameter per model under a prefix."""
    ssm = moto.client("ssm")
    for name, entry in entries.items():
        ssm.put_parameter(
            Name=SSM_PREFIX + name, Value=json.dumps(entry), Type="String", Overwrite=True
        )
    return "ssm:" + SSM_PREFIX


@pytest.fixture(scope="module")
def json_config(entries, tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("sources") / "models.json", entries)


@pytest.fixture(scope="module")
def sources_client(redis_server, json_config):
    from producers import EmbeddingClient

    return EmbeddingClient(config_source=str(json_config))


@pytest.fixture(scope="module")
def sources_worker(
    sources_client, moto, ssm_config, s3_models, sagemaker, hub_cache, json_config, tmp_path_factory
):
    """One real worker serving every entry, its config read from the SSM prefix."""
    env = {
        **moto.worker_env,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": sagemaker.url,
        "EMBEDFLEET_MODEL_CONFIG": ssm_config,
        "EMBEDFLEET_DOWNLOAD_DIR": str(tmp_path_factory.mktemp("downloads")),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HUB_OFFLINE": "1",
    }
    proc = WorkerProcess(json_config, env=env).wait_ready(sources_client.app)
    proc.download_dir = Path(env["EMBEDFLEET_DOWNLOAD_DIR"])  # type: ignore[attr-defined]
    yield proc
    proc.stop()


# -- config from SSM ------------------------------------------------------------------
def test_ssm_config_in_every_form_has_the_json_hash(
    moto, aws_env, entries, json_config, ssm_config
):
    from workers.config.loader import load_model_config

    # Given the same config as a JSON file, one String, one SecureString, and a prefix
    ssm = moto.client("ssm")
    whole = json.dumps(entries, indent=1)
    ssm.put_parameter(Name="/embedfleet/it/whole", Value=whole, Type="String")
    ssm.put_parameter(Name="/embedfleet/it/secret", Value=whole, Type="SecureString")
    from_json = load_model_config(str(json_config))
    # Then each reads as the same models with the same hash
    for source in ("ssm:/embedfleet/it/whole", "ssm:/embedfleet/it/secret", ssm_config):
        config = load_model_config(source)
        assert not config.errors, source
        assert {n: s.model_dump() for n, s in config.items()} == {
            n: s.model_dump() for n, s in from_json.items()
        }
        assert config.config_hash == from_json.config_hash, source
    with pytest.raises(ConfigError, match="ParameterNotFound"):
        load_model_config("ssm:/embedfleet/it/absent")
    with pytest.raises(ConfigError, match="no parameters under this prefix"):
        load_model_config("ssm:/embedfleet/it/empty/")


# -- S3 fetching ------------------------------------------------------------------------
def test_s3_cache_is_keyed_by_etag_and_a_prefix_keeps_its_layout(moto, aws_env, tmp_path):
    from workers.sources.s3 import fetch_s3

    s3 = moto.client("s3")
    s3.create_bucket(Bucket="etag-bucket")
    s3.put_object(Bucket="etag-bucket", Key="m/model.onnx", Body=b"version one")
    uri = "s3://etag-bucket/m/model.onnx"
    first = fetch_s3(uri, folder=tmp_path)
    assert first.name == "model.onnx" and first.read_bytes() == b"version one"
    assert fetch_s3(uri, folder=tmp_path) == first  # unchanged: the cached copy
    # When a new model is uploaded under the same key
    s3.put_object(Bucket="etag-bucket", Key="m/model.onnx", Body=b"version two")
    second = fetch_s3(uri, folder=tmp_path)
    # Then it is a new version beside the old one
    assert second != first and second.read_bytes() == b"version two"
    assert first.read_bytes() == b"version one"
    # A prefix comes down as a folder with its layout
    s3.put_object(Bucket="etag-bucket", Key="dir/a.txt", Body=b"a")
    s3.put_object(Bucket="etag-bucket", Key="dir/sub/b.txt", Body=b"b")
    folder = fetch_s3("s3://etag-bucket/dir", folder=tmp_path)
    assert (folder / "a.txt").read_bytes() == b"a" and (folder / "sub/b.txt").read_bytes() == b"b"
    assert not list(tmp_path.rglob(".partial-*"))


def test_unreachable_s3_falls_back_to_the_newest_cached_version(
    moto, aws_env, tmp_path, monkeypatch
):
    from tests.aws import free_port
    from workers.sources.s3 import fetch_s3

    s3 = moto.client("s3")
    s3.create_bucket(Bucket="offline-bucket")
    s3.put_object(Bucket="offline-bucket", Key="m/model.onnx", Body=b"cached")
    uri = "s3://offline-bucket/m/model.onnx"
    cached = fetch_s3(uri, folder=tmp_path)
    # When S3 cannot be reached at all (nothing listens on the endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    # Then the cached copy serves, and a model never fetched is an error saying why
    assert fetch_s3(uri, folder=tmp_path) == cached
    with pytest.raises(ModelLoadError, match="cannot be reached and nothing is cached"):
        fetch_s3("s3://offline-bucket/other.onnx", folder=tmp_path)


def test_s3_refusals_are_model_load_errors(moto, aws_env, s3_models, tmp_path):
    from workers.sources.s3 import fetch_s3

    with pytest.raises(ModelLoadError, match="access denied"):
        fetch_s3(f"s3://{PRIVATE_BUCKET}/model.onnx", folder=tmp_path)
    with pytest.raises(ModelLoadError, match="no such object"):
        fetch_s3(f"s3://{BUCKET}/models/absent.onnx", folder=tmp_path)
    with pytest.raises(ModelLoadError, match="NoSuchBucket"):
        fetch_s3("s3://no-such-bucket/x/", folder=tmp_path)


def test_two_processes_fetching_at_once_download_once(moto, aws_env, tmp_path):
    from workers.sources.s3 import locked, versions_dir

    s3 = moto.client("s3")
    s3.create_bucket(Bucket="race-bucket")
    s3.put_object(Bucket="race-bucket", Key="m/model.onnx", Body=b"x" * 1_000_000)
    uri = "s3://race-bucket/m/model.onnx"
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO); "
        "from pathlib import Path; from workers.sources.s3 import fetch_s3; "
        "print(fetch_s3(sys.argv[1], folder=Path(sys.argv[2])))"
    )
    env = {**aws_env, "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / f"fetch{i}.log" for i in range(2)]
    key_dir = versions_dir(uri, tmp_path)
    key_dir.mkdir(parents=True)
    # Given two fetchers that both reach the lock while another holder has it
    with locked(key_dir / ".lock", uri):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, uri, str(tmp_path)],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=log.open("w"),
                text=True,
            )
            for log in logs
        ]
        deadline = time.monotonic() + 60
        while not all("event=s3_lock_wait" in log.read_text() for log in logs):
            assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            time.sleep(0.05)
    # When the lock is released, they race for it
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [log.read_text() for log in logs]
    # Then one downloaded, the other found its result, and nothing half-done is left
    text = "".join(log.read_text() for log in logs)
    assert text.count("event=s3_downloaded") == 1
    assert text.count("after=lock_wait") == 1
    assert outputs[0] == outputs[1] and Path(outputs[0]).stat().st_size == 1_000_000
    assert [p.name for p in key_dir.iterdir() if p.name != ".lock"] == [
        Path(outputs[0]).parent.name
    ]


# -- every type through one real worker ------------------------------------------------
@pytest.fixture(scope="module")
def reference_vectors(reference_model) -> np.ndarray:
    return reference_model.encode(texts())


def test_worker_read_its_config_from_ssm_with_the_json_hash(
    sources_client, sources_worker, json_config
):
    from tasks.contract.spec import ModelConfig
    from workers.config.loader import load_model_config

    rows = {r["worker"]: r for r in sources_client.models(destination=[sources_worker.node])}
    row = rows[sources_worker.node]
    assert row["config_source"] == "ssm:" + SSM_PREFIX
    # the hash of the entries it serves: those whose source does not resolve are set
    # aside at start (workers.config.preflight), with their reason
    assert set(row["config_errors"]) == {"hub-missing", "s3-denied", "onnx-missing"}
    config = load_model_config(str(json_config))
    kept = {n: spec for n, spec in config.models.items() if n not in row["config_errors"]}
    served = ModelConfig(kept, {}, config.source, config.base_dir, config.aliases)
    assert row["config_hash"] == served.config_hash


@pytest.mark.parametrize(
    "model", ["minilm-onnx", "minilm-bert", "minilm-s3", "minilm-hub", "minilm-sagemaker"]
)
def test_each_source_matches_in_process_sentence_transformers(
    sources_client, sources_worker, reference_vectors, model
):
    vectors = sources_client.submit(texts(), model=model, max_texts=5).wait(timeout=300)
    assert vectors.shape == reference_vectors.shape == (len(texts()), 384)
    assert cosine_rows(vectors, reference_vectors).min() >= 0.9999


def test_sagemaker_requests_respect_batch_size(sources_client, sources_worker, sagemaker):
    tag = uuid.uuid4().hex  # texts no cache has seen
    sources_client.embed([f"load {tag}"], model="minilm-sagemaker")  # loaded and warm
    before = len(sagemaker.endpoints["minilm"].requests)
    batch = [f"{tag} {i}: {text}" for i, text in enumerate(texts(20))]
    sources_client.submit(batch, model="minilm-sagemaker", max_texts=21).wait(timeout=120)
    sent = sagemaker.endpoints["minilm"].requests[before:]
    assert sum(sent) == 21 and max(sent) <= 8


def test_throttled_endpoint_is_retried_until_it_serves(
    sources_client, sources_worker, sagemaker, reference_model
):
    vectors = sources_client.embed(["retry me"], model="throttled-sagemaker", timeout=120)
    assert cosine_rows(vectors, reference_model.encode(["retry me"])).min() >= 0.9999
    # the wrapper's own backoff absorbed both 429s (no chunk retry by Celery was needed)
    assert sagemaker.endpoints["minilm-throttled"].throttle == 0
    assert sources_worker.log().count("event=endpoint_retry model=throttled-sagemaker") == 2
    assert "] retry:" not in sources_worker.log()


def test_s3_prefix_folder_is_served_as_bert(sources_client, sources_worker, tiny_bert_dir):
    from workers.config.loader import parse_model_config
    from workers.models.registry import build_model

    spec = parse_model_config({"t": {"type": "bert", "model_path": str(tiny_bert_dir), "RAM": 1}})
    expected = build_model("t", spec["t"]).encode(["a folder on s3", "second"])
    vectors = sources_client.embed(["a folder on s3", "second"], model="tiny-bert-s3")
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    # the worker fetched it into the download folder its EMBEDFLEET_DOWNLOAD_DIR names
    fetched = list((sources_worker.download_dir / "s3").rglob("config.json"))
    assert fetched, f"nothing downloaded under {sources_worker.download_dir}"


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("hub-missing", "not in the Hugging Face cache.*hf download nobody/absent"),
        ("s3-corrupt", "cannot load .*corrupt.onnx"),
        ("s3-unknown", "unknown format of 'weights.bin'"),
        ("s3-denied", "access denied"),
        ("onnx-missing", "does not exist"),
        ("broken-sagemaker", "'minilm-broken': HTTP 424 ModelError"),
    ],
)
def test_a_model_that_cannot_serve_fails_its_chunks_with_the_reason(
    sources_client, sources_worker, model, reason
):
    job = sources_client.submit(["a", "b"], model=model)
    job.wait(timeout=120, allow_failed=True)
    status = job.status()
    assert status["state"] == "FAILURE"
    [error] = status["errors"]
    assert re.search(reason, error["error"]), error["error"]
    # and the worker keeps serving the others
    assert sources_client.embed(["still fine"], model="minilm-onnx").shape == (1, 384)
