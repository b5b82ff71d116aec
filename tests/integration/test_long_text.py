"""``--long-text mean`` end to end (issue 23, long documents), against sentence-transformers.

A real worker serves the shipped all-MiniLM-L6-v2 weights (a 256-token window: 254 word
pieces once [CLS] and [SEP] are added). The windows are cut here again from the
tokenizer's own offsets, encoded by ``SentenceTransformer`` in this process, and
averaged by token count; the fleet's row must equal that.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from producers import EmbeddingClient
from producers.errors import JobFailedError
from tests.support import WorkerProcess, run_cli, write_config
from workers.sources.packaged import packaged_model_dir

pytestmark = pytest.mark.integration

MINI = "mini"
WINDOW = 256  # the shipped model's max_seq_length
PIECES = WINDOW - 2  # L: the window less [CLS] and [SEP]


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("long_text")
    config = write_config(
        folder / "models.json",
        {
            MINI: {
                "type": "sentence_transformer",
                "model_path": "sentence-transformers/all-MiniLM-L6-v2",
                "RAM": 0.5,
                "precision": "fp32",  # compared with the fp32 reference to float rounding
            }
        },
    )
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(config, models=MINI, log_dir=folder).wait_ready(client.app)
    yield client, config
    worker.stop()


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    shipped = packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    return SentenceTransformer(str(shipped), device="cpu")


def corpus() -> list[str]:
    """The shipped bench corpus' descriptions, longest last (the longest runs to
    several windows)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "data" / "debian_descriptions.jsonl"
    return sorted((json.loads(line)["text"] for line in path.read_text().splitlines()), key=len)


def expected_mean(reference, text: str, overlap: int) -> tuple[np.ndarray, int, int]:
    """(vector, windows, tokens) of ``text`` under mean, computed here: windows of
    PIECES word pieces every PIECES - overlap pieces, cut from the tokenizer's offsets."""
    tokenizer = reference.tokenizer
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    n = len(offsets)
    texts = []
    start = 0
    while True:
        end = min(start + PIECES, n)
        texts.append(text[offsets[start][0] : offsets[end - 1][1]])
        if end == n:
            break
        start += PIECES - overlap
    weights = np.array([min(len(tokenizer(t)["input_ids"]), WINDOW) for t in texts], float)
    vectors = reference.encode(texts, normalize_embeddings=True).astype(np.float64)
    mean = (weights[:, None] * vectors).sum(axis=0) / weights.sum()
    return mean / np.linalg.norm(mean), len(texts), int(weights.sum())


def test_window_count_follows_the_formula_on_a_long_real_text(reference):
    from workers.models.tokenizing import window_spans

    text = corpus()[-1]
    n = len(reference.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n > 2 * PIECES  # three windows or more
    for overlap in (0, 32, 100):
        spans = window_spans(reference.tokenizer, [text], "", WINDOW, overlap, MINI)[0]
        assert len(spans) == 1 + math.ceil((n - PIECES) / (PIECES - overlap))
        assert spans[0][0] == 0 and spans[-1][1] == len(text.rstrip())
        # neighbouring windows overlap, and each but the last holds PIECES word pieces
        assert all(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)) == (overlap > 0)
    short = corpus()[0]
    assert window_spans(reference.tokenizer, [short], "", WINDOW, 32, MINI) == [[(0, len(short))]]


def test_mean_equals_the_token_weighted_mean_of_sentence_transformers_windows(fleet, reference):
    client, _ = fleet
    texts = corpus()[-3:]
    job = client.submit(texts, model=MINI, long_text="mean", max_texts=2)
    got = job.wait(timeout=300)
    assert got.shape == (3, 384)
    for row, text in enumerate(texts):
        want, windows, tokens = expected_mean(reference, text, 32)
        assert windows > 1
        np.testing.assert_allclose(got[row], want, atol=1e-5)
        assert int(job.columns["tokens"][row]) == tokens
    assert not job.columns["truncated"].any()
    # truncate (the default) gives the first window's vector, not the cached mean: the
    # embedding cache keys on the windowing
    first = client.submit(texts, model=MINI).wait(timeout=300)
    np.testing.assert_allclose(first, reference.encode(texts), atol=2e-6)
    assert np.abs(first - got).max() > 1e-2


def test_a_short_text_under_mean_equals_truncate(fleet, reference):
    client, _ = fleet
    texts = corpus()[:3] + [""]
    mean = client.submit(texts, model=MINI, long_text="mean").wait(timeout=300)
    plain = client.submit(texts, model=MINI, long_text="truncate").wait(timeout=300)
    np.testing.assert_allclose(mean, plain, atol=1e-6)
    np.testing.assert_allclose(mean, reference.encode(texts), atol=2e-6)


def test_the_cli_and_a_dataset_job_take_long_text_and_overlap(fleet, reference, tmp_path):
    client, config = fleet
    texts = [corpus()[0], corpus()[-1]]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    want = np.stack([expected_mean(reference, t, 100)[0] for t in texts])
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    out = tmp_path / "cli.npy"
    done = run_cli(
        "submit", "--model", MINI, "--input", str(source), "--output", str(out),
        "--long-text", "mean", "--window-overlap", "100", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(out), want, atol=1e-5)
    # A dataset job keeps one row per input row
    job = client.submit_dataset(
        str(source), MINI, str(tmp_path / "ds") + "/", long_text="mean", window_overlap=100
    )
    job.wait(timeout=300)
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((tmp_path / "ds").glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("row")
    assert table.column("row").to_pylist() == [0, 1]
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors, want, atol=1e-5)


def test_an_overlap_over_half_the_window_is_refused(fleet):
    # (an overlap of L - 1 would encode a text of n word pieces as n - L + 1 windows)
    client, _ = fleet
    half = PIECES // 2
    assert client.submit(["a text"], model=MINI, long_text="mean", window_overlap=half).wait(
        timeout=300
    ).shape == (1, 384)
    job = client.submit(["a text"], model=MINI, long_text="mean", window_overlap=half + 1)
    with pytest.raises(
        JobFailedError,
        match=f"window_overlap={half + 1} is more than half the window of model '{MINI}': "
        f"at most {half} of its {PIECES} word pieces",
    ):
        job.wait(timeout=300)


def test_windows_writes_a_part_row_per_window_in_dataset_jobs(fleet, reference, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    client, config = fleet
    texts = [corpus()[-1], corpus()[0]]
    tokenizer = reference.tokenizer
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    job = client.submit_dataset(str(source), MINI, str(tmp_path / "ds") + "/", long_text="windows")
    job.wait(timeout=300)
    files = sorted((tmp_path / "ds").glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files]).sort_by(
        [("row", "ascending"), ("window", "ascending")]
    )
    n = len(tokenizer(texts[0], add_special_tokens=False)["input_ids"])
    count = 1 + math.ceil((n - PIECES) / (PIECES - 32))
    assert table.column("row").to_pylist() == [0] * count + [1]
    assert table.column("window").to_pylist() == list(range(count)) + [0]
    assert table.column("id").to_pylist() == ["d0"] * count + ["d1"]
    starts, ends = table.column("char_start").to_pylist(), table.column("char_end").to_pylist()
    assert starts[0] == 0 and (starts[-1], ends[-1]) == (0, len(texts[1]))
    pieces = [texts[0][a:b] for a, b in zip(starts[:-1], ends[:-1], strict=True)] + [texts[1]]
    # each window is its own text: sentence-transformers' vector of it, and its tokens
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors, reference.encode(pieces), atol=2e-6)
    want_tokens = [min(len(tokenizer(p)["input_ids"]), WINDOW) for p in pieces]
    assert table.column("tokens").to_pylist() == want_tokens
    # verify takes a row in several windows as it is
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    checked = run_cli("verify", str(tmp_path / "ds") + "/", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "in one window or more" in checked.stdout
    # list jobs: tests/integration/test_list_windows.py
