"""Embedding options end to end (issue 23), against sentence-transformers itself.

A real worker serves two copies of the shipped all-MiniLM-L6-v2 weights: ``mini-e5``, a
copy of the model folder whose config_sentence_transformers.json declares e5-style
prompts, and ``mini-mrl``, which declares Matryoshka sizes in models.json. Every vector
is compared with what ``SentenceTransformer`` computes in this process.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producers import EmbeddingClient
from producers.errors import UsageError
from tests.support import WorkerProcess, run_cli, write_config
from workers.sources.packaged import packaged_model_dir

pytestmark = pytest.mark.integration

E5 = "mini-e5"
MRL = "mini-mrl"
PROMPTS = {"query": "query: ", "passage": "passage: "}
TEXTS = [
    "Unix process pipeline manipulation library",
    "command-line tools for the iPod family of portable music players",
    "library implementing DNS resolution and validation",
    "",
]


@pytest.fixture(scope="module")
def e5_folder(tmp_path_factory) -> Path:
    """The shipped model folder, copied, with e5-style prompts declared in its own config."""
    shipped = packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    assert shipped is not None
    folder = tmp_path_factory.mktemp("e5") / "mini-e5"
    shutil.copytree(shipped, folder)
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    config.update({"prompts": PROMPTS, "default_prompt_name": "passage"})
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory, e5_folder):
    folder = tmp_path_factory.mktemp("options")
    config = write_config(
        folder / "models.json",
        {
            E5: {
                "type": "sentence_transformer",
                "model_path": str(e5_folder),
                "RAM": 0.5,
                "precision": "fp32",  # compared with the fp32 reference to float rounding
            },
            MRL: {
                "type": "sentence_transformer",
                "model_path": "sentence-transformers/all-MiniLM-L6-v2",
                "RAM": 0.5,
                "precision": "fp32",
                "dimension": 384,
                "dimensions_supported": [64, 128, 256],
            },
        },
    )
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(config, models=f"{E5},{MRL}", log_dir=folder).wait_ready(client.app)
    yield client, config
    worker.stop()


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    shipped = packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    return SentenceTransformer(str(shipped), device="cpu")


def read_parts(folder: Path) -> pa.Table:
    files = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("row")


def test_dimensions_equal_sentence_transformers_truncate_dim(fleet, reference):
    client, _ = fleet
    # When a job asks for 128 of the model's 384 dimensions
    got = client.submit(TEXTS, model=MRL, dimensions=128).wait(timeout=300)
    # Then each row is what sentence-transformers gives with truncate_dim=128: the first
    # 128 dimensions re-normalized (the model normalizes)
    want = reference.encode(TEXTS, truncate_dim=128, normalize_embeddings=True)
    assert got.shape == (len(TEXTS), 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(got[:3], axis=1), 1.0, atol=1e-6)


def test_dimensions_the_model_cannot_give_are_refused_at_submit(fleet):
    client, _ = fleet
    with pytest.raises(UsageError, match="dimensions=512 is larger than model 'mini-mrl'"):
        client.submit(TEXTS, model=MRL, dimensions=512)
    with pytest.raises(UsageError, match=r"dimensions_supported: \[64, 128, 256\]"):
        client.submit(TEXTS, model=MRL, dimensions=100)
    with pytest.raises(UsageError, match="dimensions must be a positive integer"):
        client.submit(TEXTS, model=MRL, dimensions=0)


def test_dimensions_in_a_dataset_job_and_the_cli(fleet, reference, tmp_path):
    client, config = fleet
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    want = reference.encode(TEXTS, truncate_dim=64, normalize_embeddings=True)
    # A dataset job writes 64-wide vectors and says so in its manifest
    job = client.submit_dataset(str(source), MRL, str(tmp_path / "out") + "/", dimensions=64)
    job.wait(timeout=300)
    table = read_parts(tmp_path / "out")
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors, want, atol=2e-6)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["dimension"] == 64
    # And the CLI takes --dimensions for a list job written to .npy
    out = tmp_path / "cli.npy"
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    done = run_cli(
        "submit",
        "--model",
        MRL,
        "--input",
        str(source),
        "--output",
        str(out),
        "--dimensions",
        "64",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(out), want, atol=2e-6)
    refused = run_cli("submit", "--model", MRL, "--text", "a", "--dimensions", "999", env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].endswith("dimension 384")


def test_openai_batch_bodies_dimensions_and_base64(fleet, reference, tmp_path):
    _, config = fleet

    def request(custom_id: str, text: str, **body: object) -> dict[str, object]:
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MRL, "input": text, **body},
        }

    batch = tmp_path / "batch.jsonl"
    lines_in = [
        request("a", TEXTS[0], dimensions=128),
        request("b", TEXTS[1], dimensions=128, encoding_format="base64"),
        request("c", TEXTS[2], dimensions=256),  # another size than the batch's
        request("d", TEXTS[2], dimensions=128, encoding_format="hex"),
    ]
    batch.write_text("".join(json.dumps(r) + "\n" for r in lines_in))
    out = tmp_path / "results.jsonl"
    done = run_cli(
        "submit",
        "--input",
        str(batch),
        "--output",
        str(out),
        env={"EMBEDFLEET_MODEL_CONFIG": str(config)},
    )
    assert done.returncode == 0, done.stderr
    a, b, c, d = (json.loads(x) for x in out.read_text().splitlines())
    want = reference.encode(TEXTS[:2], truncate_dim=128, normalize_embeddings=True)
    # body.dimensions is honoured: 128 floats, the reference's truncate_dim
    np.testing.assert_allclose(a["response"]["body"]["data"][0]["embedding"], want[0], atol=2e-6)
    # encoding_format base64: base64 of little-endian float32, as OpenAI sends it
    encoded = b["response"]["body"]["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    np.testing.assert_allclose(decoded, want[1], atol=2e-6)
    assert c["response"] is None and "differs from the batch's 128" in c["error"]["message"]
    assert d["response"] is None and "encoding_format" in d["error"]["message"]


def test_prompts_equal_sentence_transformers_prompt_name(fleet, e5_folder):
    from sentence_transformers import SentenceTransformer

    client, _ = fleet
    e5 = SentenceTransformer(str(e5_folder), device="cpu")
    # A named prompt, the folder's default prompt, a literal prompt, and none at all
    query = client.submit(TEXTS, model=E5, prompt_name="query").wait(timeout=300)
    default = client.submit(TEXTS, model=E5).wait(timeout=300)
    literal = client.submit(TEXTS, model=E5, prompt="search_query: ").wait(timeout=300)
    bare = client.submit(TEXTS, model=E5, prompt="").wait(timeout=300)
    np.testing.assert_allclose(query, e5.encode(TEXTS, prompt_name="query"), atol=2e-6)
    np.testing.assert_allclose(default, e5.encode(TEXTS, prompt_name="passage"), atol=2e-6)
    np.testing.assert_allclose(literal, e5.encode(TEXTS, prompt="search_query: "), atol=2e-6)
    np.testing.assert_allclose(bare, e5.encode(TEXTS, prompt=""), atol=2e-6)
    assert not np.allclose(query, default, atol=1e-3)  # the prompt changed the vectors


def test_unknown_prompt_name_refused_at_submit_from_the_fleet_catalog(fleet, tmp_path):
    _, config = fleet
    # A producer with no models.json learns the model's prompts from the catalog
    producer = EmbeddingClient()
    producer.settings = producer.settings.model_copy(update={"config_source": None})
    with pytest.raises(UsageError, match="has no prompt 'document'; its prompts: passage, query"):
        producer.submit(TEXTS, model=E5, prompt_name="document")
    with pytest.raises(UsageError, match="has no prompt 'query'; its prompts: none"):
        producer.submit(TEXTS, model=MRL, prompt_name="query")
    done = run_cli(
        "submit",
        "--model",
        E5,
        "--text",
        "a",
        "--prompt-name",
        "nope",
        env={"EMBEDFLEET_MODEL_CONFIG": str(config)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("its prompts: passage, query")


def long_corpus() -> list[str]:
    """Descriptions from the shipped bench corpus: most fit the 256-token window, the
    longest run past it."""
    path = Path(__file__).resolve().parents[2] / "bench" / "data" / "debian_descriptions.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()[:400]]
    texts.sort(key=len)
    return texts[:6] + texts[-4:]


def test_tokens_and_truncated_equal_the_tokenizer_counts(fleet, e5_folder, tmp_path):
    from transformers import AutoTokenizer

    client, _ = fleet
    texts = long_corpus()
    tokenizer = AutoTokenizer.from_pretrained(str(e5_folder))
    full = [len(tokenizer("query: " + t)["input_ids"]) for t in texts]  # specials included
    want_tokens = np.minimum(full, 256)
    want_truncated = np.asarray(full) > 256
    assert want_truncated.any() and not want_truncated.all()
    # A list job: columns beside the vectors, in input order, and the status totals
    job = client.submit(texts, model=E5, prompt_name="query", max_texts=4)
    job.wait(timeout=300)
    np.testing.assert_array_equal(job.columns["tokens"], want_tokens)
    assert job.columns["tokens"].dtype == np.int32
    np.testing.assert_array_equal(job.columns["truncated"], want_truncated)
    usage = job.status()["usage"]
    assert usage == {"tokens": int(want_tokens.sum()), "truncated": int(want_truncated.sum())}
    # Written as parquet and jsonl, the columns come along
    from producers.output import write_job

    write_job(job, tmp_path / "out.parquet", progress=False)
    table = pq.read_table(tmp_path / "out.parquet").sort_by("row")
    assert table.column("tokens").to_pylist() == want_tokens.tolist()
    assert table.column("truncated").to_pylist() == want_truncated.tolist()
    write_job(job, tmp_path / "out.jsonl", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["truncated"] for x in lines] == want_truncated.tolist()
    # A dataset job: typed columns in the parts, totals in the manifest
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ds = client.submit_dataset(str(source), E5, str(tmp_path / "ds") + "/", prompt_name="query")
    ds.wait(timeout=300)
    part = read_parts(tmp_path / "ds")
    assert str(part.schema.field("tokens").type) == "int32"
    assert str(part.schema.field("truncated").type) == "bool"
    assert part.column("tokens").to_pylist() == want_tokens.tolist()
    manifest = json.loads((tmp_path / "ds" / "_manifest.json").read_text())
    assert manifest["tokens"] == int(want_tokens.sum())
    assert manifest["truncated"] == int(want_truncated.sum())
    assert manifest["options"] == {"prompt_name": "query"}


def retrieval_set() -> tuple[list[str], list[str]]:
    """Queries and their documents from the shipped bench corpus: a description's short
    summary (before the first '. ') retrieves the rest of it."""
    path = Path(__file__).resolve().parents[2] / "bench" / "data" / "debian_descriptions.jsonl"
    queries, docs = [], []
    for line in path.read_text().splitlines()[:300]:
        summary, _, rest = json.loads(line)["text"].partition(". ")
        if len(rest) > 40:
            queries.append(summary)
            docs.append(rest)
    return queries[:100], docs[:100]  # recall@1 0.93 in fp32, 0.94 in int8 (all-MiniLM-L6-v2)


def recall_at_1(queries: np.ndarray, docs: np.ndarray) -> float:
    scores = queries.astype(np.float32) @ docs.astype(np.float32).T
    return float(np.mean(scores.argmax(axis=1) == np.arange(len(queries))))


def test_quantized_output_equals_sentence_transformers(fleet, reference, tmp_path):
    from sentence_transformers.util.quantization import quantize_embeddings

    from tasks.jobs.quant_ranges import calibration_texts

    client, _ = fleet
    queries, docs = retrieval_set()
    floats = reference.encode(docs)
    # binary / ubinary: the sign bits, packed, bit for bit the reference's
    for precision in ("ubinary", "binary"):
        got = client.submit(docs, model=MRL, quantize=precision).wait(timeout=300)
        want = quantize_embeddings(floats, precision=precision)
        assert got.dtype == want.dtype and got.shape == (len(docs), 48)
        assert (got != want).mean() < 0.005  # a sign flip only where fp32 rounding lands at 0
    # int8: the reference's quantize_embeddings with the shipped calibration set (which
    # the worker encodes for its ranges while this process does: 300 texts, ~7 s each)
    int8_job = client.submit(docs, model=MRL, quantize="int8")
    calibration = reference.encode(list(calibration_texts()))
    got = int8_job.wait(timeout=300)
    want = quantize_embeddings(floats, precision="int8", calibration_embeddings=calibration)
    assert got.dtype == np.int8 and np.abs(got.astype(int) - want).max() <= 1
    # models --json shows the ranges the worker quantizes with
    rows = [m for w in client.models() for m in w["models"] if m["name"] == MRL]
    shown = [m["quantization"]["384"] for m in rows if m["quantization"]]
    assert shown and len(shown[0]["ranges"][0]) == 384
    # client.quantize applies the same ranges to vectors computed elsewhere
    q_floats = reference.encode(queries)
    q_int8 = client.quantize(q_floats, model=MRL, precision="int8")
    np.testing.assert_array_equal(q_int8, client.submit(queries, model=MRL, quantize="int8").wait())
    # and retrieval keeps its recall@1 within 0.02 of float32
    full, quantized = recall_at_1(q_floats, floats), recall_at_1(q_int8, got)
    assert full > 0.5 and full - quantized <= 0.02, (full, quantized)
    # A dataset job's parts hold fixed-size lists of int8, its manifest the ranges
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[:20]))
    ds = client.submit_dataset(str(source), MRL, str(tmp_path / "q") + "/", quantize="int8")
    ds.wait(timeout=300)
    part = read_parts(tmp_path / "q")
    embedding = part.schema.field("embedding").type
    assert str(embedding.value_type) == "int8" and embedding.list_size == 384
    np.testing.assert_array_equal(np.asarray(part.column("embedding").to_pylist()), got[:20])
    manifest = json.loads((tmp_path / "q" / "_manifest.json").read_text())
    assert manifest["quantization"]["precision"] == "int8"
    assert len(manifest["quantization"]["ranges"][0]) == 384
    # The CLI writes a .npy of that dtype
    out = tmp_path / "u.npy"
    done = run_cli(
        "submit",
        "--model",
        MRL,
        "--input",
        str(source),
        "--output",
        str(out),
        "--quantize",
        "ubinary",
        env={"EMBEDFLEET_MODEL_CONFIG": str(fleet[1])},
    )
    assert done.returncode == 0, done.stderr
    assert np.load(out).dtype == np.uint8 and np.load(out).shape == (20, 48)
