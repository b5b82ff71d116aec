"""The fleet end to end: real server, real worker process, real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from producers.errors import UnknownModelError
from producers.writers import read_embeddings
from tasks.io.readers import read_texts
from tasks.routing import queue_for
from tests.integration.conftest import cosine_rows
from tests.plugins import POISON, hash_vector
from tests.support import DEFAULT_MODEL, ROOT, SAMPLE, run_cli

pytestmark = pytest.mark.integration


def test_vectors_match_in_process_encode_in_input_order(client, worker, reference_model):
    # Given real texts cut into many small chunks
    texts = read_texts(SAMPLE)[:96]
    # When the fleet embeds them
    job = client.submit(texts, model=DEFAULT_MODEL, max_texts=8)
    assert job.record.total >= 10
    vectors = job.wait(timeout=300)
    # Then every row equals in-process encoding of the same input row
    expected = reference_model.encode(texts, batch_size=32)
    assert vectors.shape == (96, 384) and vectors.dtype == np.float32
    assert cosine_rows(vectors, expected).min() >= 0.9999
    status = job.status()
    assert status["state"] == "SUCCESS"
    assert (status["done"], status["total"], status["failed"]) == (job.record.total,) * 2 + (0,)


def test_status_and_result_from_other_processes(client, worker, tmp_path):
    texts = read_texts(SAMPLE)[:60]
    job = client.submit(texts, model=DEFAULT_MODEL, max_texts=8)
    first = client.job(job.id).status()
    assert first["total"] == job.record.total and first["state"] in {
        "PENDING",
        "RUNNING",
        "SUCCESS",
    }
    vectors = job.wait(timeout=300)
    # `embedfleet status` in another process, with the contract's JSON shape
    proc = run_cli("status", job.id, "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert set(status) >= {"id", "model", "state", "done", "total", "failed", "errors"}
    assert status["state"] == "SUCCESS" and status["done"] == status["total"]
    # `embedfleet result` in another process, each output format
    for name in ("out.npy", "out.parquet", "out.jsonl"):
        out = tmp_path / name
        proc = run_cli("result", job.id, "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_allclose(read_embeddings(out), vectors, rtol=0, atol=1e-6)


def test_submit_cli_from_file_with_wait(worker, tmp_path, reference_model):
    src = tmp_path / "in.csv"
    src.write_text('id,body\n1,first text about databases\n2,"second, with a comma"\n')
    out = tmp_path / "vectors.npy"
    proc = run_cli(
        "submit",
        "--model",
        DEFAULT_MODEL,
        "--input",
        str(src),
        "--field",
        "body",
        "--output",
        str(out),
        "--wait",
    )
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    expected = reference_model.encode(["first text about databases", "second, with a comma"])
    assert cosine_rows(vectors, expected).min() >= 0.9999


def test_text_longer_than_window_is_truncated_as_the_model_does(client, worker, reference_model):
    long_text = " ".join(f"word{i}" for i in range(5000))
    vectors = client.embed([long_text, "short"], model=DEFAULT_MODEL)
    expected = reference_model.encode([long_text, "short"])
    assert cosine_rows(vectors, expected).min() >= 0.9999


def test_failed_chunk_is_named_and_the_rest_of_the_job_survives(client, worker):
    texts = [f"text number {i}" for i in range(40)]
    texts[17] = f"bad {POISON} text"
    job = client.submit(texts, model="hash-model", max_texts=5)
    vectors = job.wait(timeout=120, allow_failed=True)
    status = job.status()
    assert status["state"] == "FAILURE"
    assert status["failed"] == 1 and status["done"] == status["total"] - 1
    [error] = status["errors"]
    assert POISON in error["error"]
    bad_rows = set(job.record.chunk_rows(error["chunk"]).tolist())
    assert 17 in bad_rows
    for row, text in enumerate(texts):
        if row in bad_rows:
            assert np.isnan(vectors[row]).all()
        else:
            np.testing.assert_array_equal(vectors[row], hash_vector(text))
    # the CLI says it too, with exit code 1
    proc = run_cli("status", job.id)
    assert proc.returncode == 1 and f"chunk {error['chunk']}" in proc.stdout
    # and the worker keeps serving
    again = client.embed(["still alive"], model="hash-model", timeout=60)
    np.testing.assert_array_equal(again[0], hash_vector("still alive"))


def test_model_whose_source_does_not_resolve_is_refused_with_the_reason(client, worker):
    # the worker set it aside at start (workers.config.preflight) and says why
    with pytest.raises(UnknownModelError, match="'/nonexistent/model-folder' does not exist"):
        client.submit(["a", "b"], model="broken-model")
    # other models keep serving
    assert client.embed(["fine"], model="hash-model", timeout=60).shape == (1, 16)


def test_unknown_model_is_refused_with_exit_2_naming_the_configured_ones(client, worker):
    proc = run_cli("submit", "--model", "no-such-model", "--text", "hello")
    assert proc.returncode == 2
    assert "no-such-model" in proc.stderr and DEFAULT_MODEL in proc.stderr
    assert client.redis.llen(queue_for("no-such-model")) == 0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"text": "ok"}\n{"text": 42}\n', "line 2"),
        ('{"text": "ok"}\n{"text": "fine"}\n{"text": null}\n', "line 3"),
        ('{"text": "ok"}\n{"other": "x"}\n', ":2: no field 'text'"),
        ("", "no texts"),
    ],
)
def test_bad_rows_are_refused_before_anything_is_queued(client, worker, tmp_path, content, needle):
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    jobs_before = client.redis.zcard("embedfleet:jobs")
    proc = run_cli("submit", "--model", DEFAULT_MODEL, "--input", str(src))
    assert proc.returncode == 2
    assert needle in proc.stderr and proc.stdout == ""
    assert client.redis.zcard("embedfleet:jobs") == jobs_before
    assert client.redis.llen(queue_for(DEFAULT_MODEL)) == 0


def test_models_lists_the_worker_and_its_loaded_model(client, worker):
    client.embed(["warm"], model=DEFAULT_MODEL)
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["worker"]: r for r in json.loads(proc.stdout)}
    models = {m["name"]: m for m in rows[worker.node]["models"]}
    assert models[DEFAULT_MODEL]["loaded"] is True
    assert models[DEFAULT_MODEL]["ram_gb_measured"] is not None
    assert models[DEFAULT_MODEL]["hits"] >= 1
    assert set(models) == {DEFAULT_MODEL, "hash-model"}
    # the entry whose path does not exist is set aside with its reason
    (reply,) = [
        r for r in client.models(timeout=5, destination=[worker.node]) if r["worker"] == worker.node
    ]
    assert "does not exist" in reply["config_errors"]["broken-model"]


def test_importing_producers_loads_no_torch():
    code = (
        "import sys, producers, producers.cli, producers.client, tasks, tasks.chunks.embed, "
        "workers.config.loader; "
        "bad = [m for m in ('torch', 'transformers', 'onnxruntime', 'sentence_transformers') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
