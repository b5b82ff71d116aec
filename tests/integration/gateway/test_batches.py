"""The Batch API through the official SDK: a batch is a dataset job over the stored
file; its output and error files are assembled when the job ends, and a gateway
restart mid-batch loses nothing."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import openai
import pytest

from gateway import batch_store
from tasks.jobs import reclaim
from tests.gateway_support import TEST_KEY, GatewayProcess
from tests.plugins import WAIT_WHILE, hash_vector
from tests.support import DEFAULT_MODEL, WorkerProcess, run_cli, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _line(custom_id: str, text, model: str = DEFAULT_MODEL) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": model, "input": text},
    }


def _upload(sdk, lines: list) -> str:
    data = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    return sdk.files.create(file=("in.jsonl", io.BytesIO(data.encode())), purpose="batch").id


def _wait_for(sdk, batch_id: str, statuses: tuple[str, ...], timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        batch = sdk.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in statuses:
            return batch, seen
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} never reached {statuses}: went {seen}")


def _lines(sdk, file_id: str) -> list[dict]:
    return [json.loads(x) for x in sdk.files.content(file_id).read().splitlines()]


def test_a_batch_runs_to_completed_with_output_and_error_files(openai_client, client):
    texts = ["alpha beta", "gamma delta", "epsilon", "zeta eta theta"]
    file_id = _upload(
        openai_client,
        [
            _line("one", texts[0]),
            _line("two", texts[1:3]),
            "{not json",
            _line("other-model", "x", model="hash-model"),
            _line("four", texts[3]),
        ],
    )
    made = openai_client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/embeddings",
        completion_window="24h",
        metadata={"team": "search"},
    )
    assert made.status in ("validating", "in_progress") and made.metadata == {"team": "search"}
    assert made.request_counts.total == 5
    done, seen = _wait_for(openai_client, made.id, ("completed", "failed"))
    assert done.status == "completed", done.errors
    assert set(seen) <= {"validating", "in_progress", "finalizing", "completed"}
    assert done.request_counts.total == 5
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 2)
    assert done.in_progress_at and done.completed_at >= done.in_progress_at
    assert done.finalizing_at is not None and done.expires_at == done.created_at + 24 * 3600
    served = {x["custom_id"]: x for x in _lines(openai_client, done.output_file_id)}
    assert list(served) == ["one", "two", "four"]
    got = [
        np.asarray(d["embedding"], dtype=np.float32)
        for cid in ("one", "two", "four")
        for d in served[cid]["response"]["body"]["data"]
    ]
    expected = client.embed(texts, model=DEFAULT_MODEL)
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-5)
    assert all(x["response"]["status_code"] == 200 for x in served.values())
    failed = _lines(openai_client, done.error_file_id)
    assert len(failed) == 2 and all(x["error"]["message"] for x in failed)
    assert "other-model" in {x["custom_id"] for x in failed}
    # The files are the SDK's files too.
    assert openai_client.files.retrieve(done.output_file_id).purpose == "batch_output"
    listed = [b.id for b in openai_client.batches.list(limit=100)]
    assert made.id in listed


def test_a_cancelled_batch_ends_cancelled(openai_client):
    file_id = _upload(openai_client, [_line(f"r{i}", f"text {i} " * 20) for i in range(50)])
    made = openai_client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    cancelling = openai_client.batches.cancel(made.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done, _ = _wait_for(openai_client, made.id, ("cancelled", "completed", "failed"))
    assert done.status == "cancelled" and done.cancelled_at is not None
    with pytest.raises(openai.BadRequestError):
        openai_client.batches.cancel(made.id)


GATED = "batch-gated-hash"  # served by the gated worker alone


@pytest.fixture
def gated(client, tmp_path):
    """A worker (one thread) serving :data:`GATED`, and a closed gate: a chunk holding
    a text ``WAIT-WHILE:<gate>`` runs until the test removes the gate."""
    config = write_config(
        tmp_path / "models.json",
        {GATED: {"type": "tests.plugins:GatedHashModel", "model_path": "none", "RAM": 0.01}},
    )
    gate = tmp_path / "gate"
    gate.touch()
    proc = WorkerProcess(config, log_dir=tmp_path).wait_ready(client.app)
    yield gate
    gate.unlink(missing_ok=True)
    proc.stop()


@pytest.mark.parametrize("how", ["sdk", "cli"])
def test_a_cancelled_batch_keeps_the_requests_that_completed(openai_client, gated, client, how):
    # Given a batch of 64 one-text requests and a line refused at submit, then 16
    # requests of 12 texts held at the gate
    plain = [f"plain text {i}" for i in range(64)]
    held = [
        [f"{WAIT_WHILE}{gated} {i}"] + [f"text {j} of {i}" for j in range(11)] for i in range(16)
    ]
    file_id = _upload(
        openai_client,
        [_line(f"p{i}", t, model=GATED) for i, t in enumerate(plain[:10])]
        + ["{not json"]
        + [_line(f"p{i}", t, model=GATED) for i, t in enumerate(plain) if i >= 10]
        + [_line(f"h{i}", t, model=GATED) for i, t in enumerate(held)],
    )
    made = openai_client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    # When the first chunk (its 256 rows in chunks of 64: the 64 plain requests) is done
    # and the next one runs, held at the gate
    wait_for(lambda: gated.with_name("gate.waiting").exists(), 120, "a held chunk to start")
    running = openai_client.batches.retrieve(made.id)
    # Then the counts are the requests done, not the rows done in proportion (20)
    assert running.status == "in_progress" and running.output_file_id is None
    counts = running.request_counts
    assert (counts.total, counts.completed, counts.failed) == (81, 64, 1)
    # When it is cancelled (through the SDK, or its job with `embedfleet cancel`), it
    # waits for the chunk it is running
    if how == "sdk":
        cancelling = openai_client.batches.cancel(made.id)
    else:
        job = batch_store.load(client.redis, made.id).job
        assert run_cli("cancel", job).returncode == 0
        cancelling = openai_client.batches.retrieve(made.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert openai_client.batches.retrieve(made.id).status == "cancelling"
    gated.unlink()
    done, seen = _wait_for(openai_client, made.id, ("cancelled", "completed", "failed"))
    # Then it ends cancelled, and what completed is in its output file, as OpenAI's
    assert done.status == "cancelled" and done.cancelled_at is not None, seen
    assert "completed" not in seen and done.completed_at is None
    out = _lines(openai_client, done.output_file_id)
    ids = [x["custom_id"] for x in out]
    finished = len(ids) - 64  # held requests of the chunk that was running
    assert 0 < finished < 16, "the running chunk is kept; chunks not started never ran"
    assert ids == [f"p{i}" for i in range(64)] + [f"h{i}" for i in range(finished)]
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (81, len(ids), 1)
    assert len(_lines(openai_client, done.error_file_id)) == 1  # the line refused
    texts = {
        **{f"p{i}": [t] for i, t in enumerate(plain)},
        **{f"h{i}": t for i, t in enumerate(held)},
    }
    for line in out:
        got = [d["embedding"] for d in line["response"]["body"]["data"]]
        want = [hash_vector(t) for t in texts[line["custom_id"]]]
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert openai_client.files.retrieve(done.output_file_id).purpose == "batch_output"


def test_an_expired_batch_keeps_what_completed_and_names_what_did_not(openai_client, gated, client):
    # Given a batch of 64 one-text requests, a line refused at submit and 16 requests
    # held at the gate, whose first chunk is done and whose second runs
    plain = [f"expiring text {i}" for i in range(64)]
    held = [[f"{WAIT_WHILE}{gated} {i}", f"more of {i}"] for i in range(16)]
    file_id = _upload(
        openai_client,
        [_line(f"p{i}", t, model=GATED) for i, t in enumerate(plain)]
        + ["{not json"]
        + [_line(f"h{i}", t, model=GATED) for i, t in enumerate(held)],
    )
    made = openai_client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    wait_for(lambda: gated.with_name("gate.waiting").exists(), 120, "a held chunk to start")
    assert openai_client.batches.retrieve(made.id).status == "in_progress"

    # When its 24 h window has passed (its record says it was created 25 h ago)
    key = batch_store.PREFIX + made.id
    saved = json.loads(client.redis.get(key))
    saved["batch"]["created_at"] -= 25 * 3600
    saved["batch"]["expires_at"] -= 25 * 3600
    client.redis.set(key, json.dumps(saved))
    done = openai_client.batches.retrieve(made.id)

    # Then it is expired at once, as OpenAI's: what completed is in its output file, and
    # its error file names the refused line and every request that did not run
    assert done.status == "expired" and done.expired_at is not None
    assert done.completed_at is None and done.cancelled_at is None
    out = _lines(openai_client, done.output_file_id)
    assert [x["custom_id"] for x in out] == [f"p{i}" for i in range(64)]
    for line in out:
        (got,) = [d["embedding"] for d in line["response"]["body"]["data"]]
        np.testing.assert_allclose(got, hash_vector(plain[int(line["custom_id"][1:])]), atol=1e-6)
    errors = _lines(openai_client, done.error_file_id)
    assert len(errors) == 17 and errors[0]["error"]["code"] != "batch_expired"
    assert [x["custom_id"] for x in errors[1:]] == [f"h{i}" for i in range(16)]
    assert {x["error"]["code"] for x in errors[1:]} == {"batch_expired"}
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (81, 64, 17)
    # ... and it stays so once the running chunk ends
    gated.unlink()
    job = saved["job"]
    wait_for(lambda: not reclaim.held_live(client.redis, job), 60, "the running chunk to end")
    again = openai_client.batches.retrieve(made.id)
    assert (again.status, again.output_file_id) == ("expired", done.output_file_id)


def test_bad_batch_requests_are_refused(openai_client):
    file_id = _upload(openai_client, [_line("a", "x")])
    with pytest.raises(openai.BadRequestError):
        openai_client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError):
        openai_client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="1h"
        )
    with pytest.raises(openai.NotFoundError):
        openai_client.batches.create(
            input_file_id="file-nope", endpoint="/v1/embeddings", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        openai_client.batches.retrieve("batch_nope")


def test_a_batch_naming_an_unknown_model_fails_saying_so(openai_client):
    file_id = _upload(openai_client, [_line("a", "x", model="no-such-model")])
    made = openai_client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert made.status == "failed" and made.failed_at is not None
    assert "no-such-model" in made.errors.data[0].message


def test_a_gateway_restart_mid_batch_loses_nothing(worker, state_dir, fleet_config, client):
    env = {"EMBEDFLEET_MODEL_CONFIG": str(fleet_config)}
    first = GatewayProcess(state_dir / "gateway-restart.log", env=env).wait_ready()
    sdk = openai.OpenAI(base_url=first.base_url, api_key=TEST_KEY, max_retries=0, timeout=60)
    texts = [f"row {i} of the restart batch" for i in range(100)]
    file_id = _upload(sdk, [_line(f"r{i}", t) for i, t in enumerate(texts)])
    made = sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    # Given the gateway that made the batch dies at once (before it could see it end)
    first.kill()
    # When another gateway starts on the same Redis and file store
    second = GatewayProcess(state_dir / "gateway-restart-2.log", env=env).wait_ready()
    try:
        sdk2 = openai.OpenAI(base_url=second.base_url, api_key=TEST_KEY, max_retries=0)
        done, _ = _wait_for(sdk2, made.id, ("completed", "failed"))
        # Then the batch completes with every request's vector
        assert done.status == "completed" and done.request_counts.completed == 100
        out = _lines(sdk2, done.output_file_id)
        assert [x["custom_id"] for x in out] == [f"r{i}" for i in range(100)]
        got = np.asarray(
            [x["response"]["body"]["data"][0]["embedding"] for x in out], dtype=np.float32
        )
        # Each row is its own text's vector. The shared worker runs the default precision
        # (bf16 on a CPU with AMX or AVX512-BF16), where a vector depends a little on the
        # chunk it was encoded with (up to 5e-4 a component seen on AMX; fp32: 1e-6):
        # rows are matched to texts by similarity, then compared within that
        want = client.embed(texts, model=DEFAULT_MODEL)
        assert (np.argmax(got @ want.T, axis=1) == np.arange(len(texts))).all()
        np.testing.assert_allclose(got, want, atol=2e-3)
    finally:
        second.stop()
