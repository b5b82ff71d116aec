"""Precision through a real worker: the default config's precision and probe in
``embedfleet models --json`` and the metrics, its vectors against in-process fp32, and a
probe that fails (bar forced to 1.0): auto falls back, an explicit bf16 fails to load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.io.readers import read_texts
from tests.conftest import free_port
from tests.integration.conftest import cosine_rows
from tests.integration.test_metrics import sample, scrape
from tests.support import SAMPLE, WorkerProcess, default_entry, run_cli, write_config
from tests.waiting import wait_for
from workers.models.fidelity import MIN_COSINE, MIN_COSINE_ENV, probe_texts
from workers.models.precision import choose_precision, detect_hardware

pytestmark = pytest.mark.integration

DEFAULT, STRICT_AUTO, STRICT_BF16 = "prec-default", "prec-strict-auto", "prec-strict-bf16"
#: What ``auto`` picks on this machine (bf16 with AMX-BF16 / AVX512-BF16, else fp32).
AUTO = choose_precision("x", "auto", detect_hardware("cpu"))


def start(folder: Path, models: dict, env: dict[str, str]):
    from producers import EmbeddingClient

    config = write_config(folder / "models.json", models)
    client = EmbeddingClient(config_source=str(config))
    return WorkerProcess(config, env=env, log_dir=folder).wait_ready(client.app), client


@pytest.fixture(scope="module")
def default_worker(redis_server, tmp_path_factory):
    port = free_port()
    env = {"EMBEDFLEET_METRICS_PORT": str(port), "EMBEDFLEET_METRICS_ADDR": "127.0.0.1"}
    proc, client = start(tmp_path_factory.mktemp("prec"), {DEFAULT: default_entry()}, env)
    yield proc, client, f"http://127.0.0.1:{port}/metrics"
    proc.stop()


@pytest.fixture(scope="module")
def strict_worker(redis_server, tmp_path_factory):
    models = {
        STRICT_AUTO: default_entry(),
        STRICT_BF16: default_entry(preload=False, precision="bf16"),
    }
    proc, client = start(tmp_path_factory.mktemp("strict"), models, {MIN_COSINE_ENV: "1.0"})
    yield proc, client
    proc.stop()


def loaded_row(proc: WorkerProcess, model: str, timeout: float = 120) -> dict:
    """The ``models --json`` row of ``model`` on ``proc``, once it is loaded (waited for
    in the worker's log: a CLI process a poll cost a second of the suite's cores)."""
    wait_for(
        lambda: f"event=model_loaded model={model} " in proc.log(),
        timeout,
        lambda: f"{model} loaded on {proc.node}: {proc.log()[-3000:]}",
    )
    result = run_cli("models", "--json", "--worker", proc.node)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [w["worker"] for w in rows] == [proc.node]
    row = next((m for w in rows for m in w["models"] if m["name"] == model), None)
    assert row and row["loaded"], (row, proc.log()[-3000:])
    return row


def test_models_json_and_metrics_show_the_precision_in_effect_and_the_probe(default_worker):
    proc, _, url = default_worker
    row = loaded_row(proc, DEFAULT)
    assert row["precision"] == AUTO
    if AUTO == "fp32":  # no lower precision to probe on this CPU
        assert row["probe_min_cosine"] is None
    else:
        assert MIN_COSINE <= row["probe_min_cosine"] < 1.0
        assert f"event=precision model={DEFAULT} requested=auto precision={AUTO}" in proc.log()
    samples = scrape(url)
    assert sample(samples, "embedfleet_model_precision", model=DEFAULT, precision=AUTO) == 1.0
    if AUTO != "fp32":
        got = sample(samples, "embedfleet_model_probe_min_cosine", model=DEFAULT)
        assert got == pytest.approx(row["probe_min_cosine"])


def test_the_default_configs_vectors_stay_within_the_bar_of_in_process_fp32(
    default_worker, reference_model
):
    _, client, _ = default_worker
    # Under bf16 every sample text is held to the bar. Where auto is fp32 (no bf16 on
    # this CPU) the worker computes what the reference computes, which the probe texts
    # show as well as 300 more would (and test_foundation compares the whole sample).
    texts = (read_texts(SAMPLE) if AUTO != "fp32" else []) + probe_texts()
    vectors = client.submit(texts, model=DEFAULT, cache=False).wait(timeout=600)
    expected = reference_model.encode(texts, batch_size=32)
    assert cosine_rows(vectors, expected).min() >= MIN_COSINE


def test_a_failed_probe_falls_back_under_auto_and_fails_an_explicit_precision(strict_worker):
    proc, client = strict_worker
    row = loaded_row(proc, STRICT_AUTO)
    assert row["precision"] == "fp32"
    if AUTO != "fp32":  # the probe ran, and no row reached the forced bar of 1.0
        assert row["probe_min_cosine"] < 1.0
        assert f"event=precision_fallback model={STRICT_AUTO}" in proc.log()
    job = client.submit(["an explicit bf16 model"], model=STRICT_BF16, cache=False)
    with pytest.raises(Exception, match=STRICT_BF16):
        job.wait(timeout=180)
    error = job.status()["errors"][0]["error"]
    expected = "precision bf16 failed the fidelity probe" if AUTO == "bf16" else "needs CPU flag"
    assert expected in error and STRICT_BF16 in error, error
    # and the worker keeps serving the model that fell back
    assert client.embed(["still serving"], model=STRICT_AUTO, timeout=120).shape == (1, 384)
