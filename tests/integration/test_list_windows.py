"""``--long-text windows`` in list jobs (issue 23 item 5), against sentence-transformers.

A real worker serves the shipped all-MiniLM-L6-v2 weights (254 word pieces a window once
[CLS] and [SEP] are added) and a SageMaker-type model (a loopback endpoint computing real
embeddings) whose type has no tokenizer to cut windows with. Each window the fleet
returns is encoded here again from its characters by ``SentenceTransformer``; the window
counts follow the issue's rule, computed from the tokenizer here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from producers import EmbeddingClient
from producers.errors import JobFailedError, UsageError
from tests.aws import Endpoint, SageMakerServer
from tests.integration.test_long_text import MINI, PIECES, WINDOW, corpus
from tests.support import WorkerProcess, run_cli, write_config
from workers.sources.packaged import packaged_model_dir

pytestmark = pytest.mark.integration

REMOTE = "remote"  # a sagemaker-type model: no tokenizer here


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    shipped = packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    return SentenceTransformer(str(shipped), device="cpu")


@pytest.fixture(scope="module")
def fleet(redis_server, reference, tmp_path_factory):
    folder = tmp_path_factory.mktemp("list_windows")
    endpoint = SageMakerServer({"minilm": Endpoint(encode=reference.encode)}).start()
    config = write_config(
        folder / "models.json",
        {
            MINI: {
                "type": "sentence_transformer",
                "model_path": "sentence-transformers/all-MiniLM-L6-v2",
                "RAM": 0.5,
                "precision": "fp32",  # compared with the fp32 reference to float rounding
            },
            REMOTE: {"type": "sagemaker", "model_path": "minilm", "RAM": 0.01},
        },
    )
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(config, env=endpoint.env, log_dir=folder).wait_ready(client.app)
    yield client, config, worker
    worker.stop()
    endpoint.stop()


def windows_of(tokenizer, text: str, overlap: int) -> int:
    """The issue's rule: 1 window if the text fits, else 1 + ceil((n - L) / (L - K))."""
    n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return 1 if n <= PIECES else 1 + math.ceil((n - PIECES) / (PIECES - overlap))


def mixed_texts() -> list[str]:
    """Long and short texts interleaved, so chunks (planned by length) hold rows from
    all over the input."""
    texts = corpus()
    longs, shorts = texts[-4:], texts[:3] + texts[300:302]
    return [longs[0], shorts[0], longs[3], shorts[1], shorts[2], longs[1], shorts[3], longs[2]]


def test_a_list_job_returns_every_window_in_input_order_beside_its_row(fleet, reference):
    client, _, _ = fleet
    texts = mixed_texts()
    # When a list job of 8 texts, 2 a chunk, asks for windows overlapping by 50 tokens
    job = client.submit(texts, model=MINI, long_text="windows", window_overlap=50, max_texts=2)
    assert job.record.total == 4
    vectors = job.wait(timeout=300)
    rows, columns = job.rows, job.columns
    # Then each text has the windows the rule gives, in input order, numbered in order
    counts = [windows_of(reference.tokenizer, t, 50) for t in texts]
    assert sum(c > 1 for c in counts) == 4 and counts.count(1) == 4
    assert vectors.shape == (sum(counts), 384) and vectors.dtype == np.float32
    assert rows.tolist() == np.repeat(np.arange(len(texts)), counts).tolist()
    assert columns["window"].tolist() == [w for c in counts for w in range(c)]
    # each window is its characters of its input text: the first from 0, a fitting
    # text whole, and its vector is that span encoded directly
    starts, ends = columns["char_start"], columns["char_end"]
    pieces = [texts[r][a:b] for r, a, b in zip(rows, starts, ends, strict=True)]
    assert all(starts[columns["window"] == 0] == 0)
    for row, count in enumerate(counts):
        if count == 1:
            assert pieces[rows.tolist().index(row)] == texts[row]
    np.testing.assert_allclose(vectors, reference.encode(pieces), atol=2e-6)
    # neighbouring windows of a text overlap; tokens are what the model saw of each
    for i in range(1, len(rows)):
        if rows[i] == rows[i - 1]:
            assert starts[i] < ends[i - 1]
    want_tokens = [min(len(reference.tokenizer(p)["input_ids"]), WINDOW) for p in pieces]
    assert columns["tokens"].tolist() == want_tokens
    assert not columns["truncated"].any()
    # the job found again by id, from another client, gathers the same
    again = EmbeddingClient(config_source=None).job(job.id)
    np.testing.assert_array_equal(again.wait(timeout=60), vectors)
    assert again.rows.tolist() == rows.tolist()
    # a plain job is unchanged: a vector per text, rows 0..n-1
    plain = client.submit(texts, model=MINI)
    assert plain.wait(timeout=300).shape == (len(texts), 384)
    assert plain.rows.tolist() == list(range(len(texts))) and "row" not in plain.columns


def test_the_embedding_cache_keys_windows_on_their_own_text(fleet, reference):
    client, _, worker = fleet
    texts = [corpus()[-5], corpus()[-6]]
    # Given a windows job (the default overlap): its windows are cached as their text
    windows = client.submit(texts, model=MINI, long_text="windows")
    vectors = windows.wait(timeout=300)
    starts, ends = windows.columns["char_start"], windows.columns["char_end"]
    pieces = [texts[r][a:b] for r, a, b in zip(windows.rows, starts, ends, strict=True)]
    assert len(pieces) > len(texts)
    # When the windows' texts are asked for plainly, the cache serves every one
    before = cache_stats(client, worker)
    plain = client.submit(pieces, model=MINI).wait(timeout=300)
    assert cache_stats(client, worker)["hits"] - before["hits"] == len(pieces)
    assert plain.tobytes() == vectors.tobytes()
    # and the whole texts plainly are not a window's vector (their first 254 pieces),
    # nor is mean (keyed on its windowing) a window's
    whole = client.submit(texts, model=MINI).wait(timeout=300)
    np.testing.assert_allclose(whole, reference.encode(texts), atol=2e-6)
    mean = client.submit(texts, model=MINI, long_text="mean").wait(timeout=300)
    first = [windows.rows.tolist().index(r) for r in range(len(texts))]
    assert np.abs(mean - vectors[first]).max() > 1e-2


def cache_stats(client, worker) -> dict:
    [row] = [r for r in client.models(destination=[worker.node]) if r["worker"] == worker.node]
    return row["embedding_cache"][MINI]


def test_the_cli_writes_windows_with_their_row_index(fleet, reference, tmp_path):
    _, config, _ = fleet
    texts = [corpus()[-1], corpus()[0], corpus()[-2]]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    counts = [windows_of(reference.tokenizer, t, 32) for t in texts]
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    out = tmp_path / "out.npy"
    done = run_cli(
        "submit", "--model", MINI, "--input", str(source), "--output", str(out),
        "--long-text", "windows", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[0]
    # .npy: the vectors, and out.rows.npy beside them: the input row of each
    assert f"wrote {sum(counts)} windows of 3 rows to {out}" in done.stderr
    rows = np.load(tmp_path / "out.rows.npy")
    assert rows.tolist() == np.repeat(np.arange(3), counts).tolist()
    vectors = np.load(out)
    assert vectors.shape == (sum(counts), 384)
    # .jsonl (the same job's result): row, window, char_start, char_end, tokens, id
    lines_path = tmp_path / "out.jsonl"
    done = run_cli("result", job_id, "--output", str(lines_path), env=env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in lines_path.read_text().splitlines()]
    assert [line["row"] for line in lines] == rows.tolist()
    assert [line["id"] for line in lines] == [f"d{r}" for r in rows]
    assert [line["window"] for line in lines] == [w for c in counts for w in range(c)]
    pieces = [texts[x["row"]][x["char_start"] : x["char_end"]] for x in lines]
    np.testing.assert_allclose(vectors, reference.encode(pieces), atol=2e-6)
    np.testing.assert_allclose([x["embedding"] for x in lines], vectors, atol=1e-6)
    assert [x["tokens"] for x in lines] == [
        min(len(reference.tokenizer(p)["input_ids"]), WINDOW) for p in pieces
    ]
    # .parquet: the same columns
    import pyarrow.parquet as pq

    table_path = tmp_path / "out.parquet"
    assert run_cli("result", job_id, "--output", str(table_path), env=env).returncode == 0
    table = pq.read_table(table_path)
    assert {"row", "embedding", "id", "window", "char_start", "char_end", "tokens"} <= set(
        table.column_names
    )
    assert table.column("char_end").to_pylist() == [x["char_end"] for x in lines]


def test_a_plain_npy_over_a_windows_one_leaves_no_stale_row_index(fleet, tmp_path):
    _, config, _ = fleet
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    out = tmp_path / "out.npy"
    stale = tmp_path / "out.rows.npy"
    texts = [corpus()[-1], "a short text"]

    def submit(*extra: str):
        done = run_cli(
            "submit", "--model", MINI, "--text", *texts, "--output", str(out), *extra, env=env
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[0], done.stderr

    # Given out.npy written by a windows job: out.rows.npy beside it
    windows_id, _ = submit("--long-text", "windows")
    assert stale.exists()
    # When a plain job writes out.npy: the row index goes, and stderr says so
    plain_id, said = submit()
    assert not stale.exists(), "a row index of the windows job is left beside plain vectors"
    assert f"removed {stale}" in said
    assert np.load(out).shape == (2, 384)
    # and the same through `result`: the windows job's, then the plain job's
    assert run_cli("result", windows_id, "--output", str(out), env=env).returncode == 0
    assert np.load(stale).shape[0] == np.load(out).shape[0] > 2
    done = run_cli("result", plain_id, "--output", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and f"removed {stale}" in done.stderr
    assert np.load(out).shape == (2, 384)


def test_windows_and_mean_are_refused_for_a_model_without_a_tokenizer(fleet, tmp_path):
    client, config, _ = fleet
    # the remote model serves plain jobs
    assert client.submit(["a text"], model=REMOTE).wait(timeout=120).shape == (1, 384)
    # A producer reading the fleet's catalog refuses at submit, nothing queued
    fleet_client = EmbeddingClient(config_source=None)
    why = "model 'remote' \\(type sagemaker\\) has none: use long_text=truncate"
    for mode in ("windows", "mean"):
        with pytest.raises(UsageError, match=why):
            fleet_client.submit(["a text"], model=REMOTE, long_text=mode)
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "a text"}) + "\n")
    with pytest.raises(UsageError, match=why):
        fleet_client.submit_dataset(
            str(source), REMOTE, str(tmp_path / "ds") + "/", long_text="windows"
        )
    done = run_cli("submit", "--model", REMOTE, "--text", "a", "--long-text", "windows")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("use long_text=truncate")
    # A producer that reads a local config does not know the type's abilities: the
    # worker refuses the chunk, naming the model and why (list and dataset jobs)
    job = client.submit(["a text"], model=REMOTE, long_text="windows")
    with pytest.raises(JobFailedError, match=why):
        job.wait(timeout=120)
    dataset = client.submit_dataset(
        str(source), REMOTE, str(tmp_path / "ds2") + "/", long_text="windows"
    )
    with pytest.raises(JobFailedError, match=why):
        dataset.wait(timeout=120)
