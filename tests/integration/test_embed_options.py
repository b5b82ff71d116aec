"""Embedding options end to end (issue 23), against sentence-transformers itself.

A real worker serves two copies of the shipped all-MiniLM-L6-v2 weights: ``mini-e5``, a
copy of the model folder whose config_sentence_transformers.json declares e5-style
prompts, and ``mini-mrl``, which declares Matryoshka sizes in models.json. Every vector
is compared with what ``SentenceTransformer`` computes in this process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
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
    table = pq.read_table(tmp_path / "out" / "part-000000.parquet").sort_by("row")
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
