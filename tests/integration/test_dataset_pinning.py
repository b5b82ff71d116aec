"""A dataset job's input is pinned at submit and hostile files are read safely, with a
real server and real worker processes: an input rewritten in place (txt, parquet, S3)
fails its chunks with `the input changed since it was submitted`; a 50 MB row is cut
like a list job's text; an unclosed CSV quote and a truncated parquet are one line at
submit; a corrupt parquet's chunk says corrupt; blank jsonl lines are no rows; a
duplicate custom_id gets an error line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producers import EmbeddingClient
from tasks.contract.wire import MAX_CHARS_PER_TEXT
from tests.aws import MotoServer
from tests.plugins import hash_vector
from tests.support import WorkerProcess, run_cli, write_config
from tests.unit.tasks.test_pinning import corrupt_parquet

pytestmark = pytest.mark.integration

MODEL = "pin-hash"


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    return MotoServer.shared()


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory, moto):
    folder = tmp_path_factory.mktemp("pinning")
    config = write_config(
        folder / "models.json",
        {MODEL: {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01}},
    )
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(
        config, models=MODEL, concurrency=2, log_dir=folder, env=moto.worker_env
    ).wait_ready(client.app)
    yield client, config
    worker.stop()


def rows_of(folder: Path) -> pa.Table:
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).sort_by("row")


def errors_of(job) -> list[str]:
    with pytest.raises(Exception, match="chunks failed"):
        job.wait(timeout=120)
    assert job.status()["state"] == "FAILURE"
    return [e["error"] for e in job.status()["errors"]]


def test_a_txt_rewritten_in_place_fails_the_chunks_it_changed(fleet, tmp_path):
    client, _ = fleet
    source = tmp_path / "in.txt"
    source.write_text("".join(f"old row {i:05d}\n" for i in range(200)))

    def rewrite(_: str) -> None:  # after the scan, before any worker reads: a nightly export
        data = source.read_bytes().replace(b"old row 00015", b"new row 00015")
        source.write_bytes(data)

    job = client.submit_dataset(
        str(source), MODEL, str(tmp_path / "out") + "/", chunk_rows=10, announce=rewrite
    )
    errors = errors_of(job)
    chunk = job.status()["errors"][0]
    assert chunk["chunk"] == 1 and chunk["rows"] == [10, 19] and len(errors) == 1
    assert f"the input changed since it was submitted: {source} bytes 140-280" in errors[0]
    assert not (tmp_path / "out" / "part-000001.parquet").exists()


def test_a_parquet_rewritten_with_the_same_row_count_fails(fleet, tmp_path):
    client, _ = fleet
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"old {i}" for i in range(100)]}), source)

    def rewrite(_: str) -> None:
        pq.write_table(pa.table({"text": [f"new {i}" for i in range(100)]}), source)

    job = client.submit_dataset(
        str(source), MODEL, str(tmp_path / "out") + "/", chunk_rows=50, announce=rewrite
    )
    errors = errors_of(job)
    assert len(errors) == 2
    assert all(f"the input changed since it was submitted: {source} rows" in e for e in errors)
    assert not list((tmp_path / "out").glob("part-*"))


def test_an_s3_input_rewritten_fails_and_the_snapshot_has_its_etag(fleet, tmp_path, moto):
    client, _ = fleet
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="pin-in")
    body = "".join(f"old row {i:04d}\n" for i in range(60)).encode()
    s3.put_object(Bucket="pin-in", Key="in.txt", Body=body)
    etag = s3.head_object(Bucket="pin-in", Key="in.txt")["ETag"]

    def rewrite(_: str) -> None:  # the same length, other bytes: only the ETag tells
        s3.put_object(Bucket="pin-in", Key="in.txt", Body=body.replace(b"old", b"new"))

    saved = {k: os.environ.get(k) for k in moto.admin_env}
    os.environ.update(moto.admin_env)
    try:
        job = client.submit_dataset(
            "s3://pin-in/in.txt", MODEL, str(tmp_path / "out") + "/", announce=rewrite
        )
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert job.record.spec["snapshot"] == [
        {
            "url": "s3://pin-in/in.txt",
            "size": len(body),
            "mtime": job.record.spec["snapshot"][0]["mtime"],
            "etag": etag,
            "version_id": None,
        }
    ]
    errors = errors_of(job)
    assert "the input changed since it was submitted: s3://pin-in/in.txt bytes 0-" in errors[0]


def test_a_versioned_s3_input_is_read_as_it_was_at_submit(fleet, tmp_path, moto):
    client, _ = fleet
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="pin-versioned")
    s3.put_bucket_versioning(Bucket="pin-versioned", VersioningConfiguration={"Status": "Enabled"})
    texts = [f"old row {i:04d}" for i in range(40)]
    body = "".join(t + "\n" for t in texts).encode()
    s3.put_object(Bucket="pin-versioned", Key="in.txt", Body=body)

    def rewrite(_: str) -> None:  # overwritten after the scan: a new version
        s3.put_object(Bucket="pin-versioned", Key="in.txt", Body=body.replace(b"old", b"new"))

    saved = {k: os.environ.get(k) for k in moto.admin_env}
    os.environ.update(moto.admin_env)
    try:
        job = client.submit_dataset(
            "s3://pin-versioned/in.txt",
            MODEL,
            str(tmp_path / "out") + "/",
            chunk_rows=10,
            announce=rewrite,
        )
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert job.record.spec["snapshot"][0]["version_id"]
    job.wait(timeout=120)  # the pinned version is read: the rows of submit time
    got = np.asarray(rows_of(tmp_path / "out").column("embedding").to_pylist(), np.float32)
    np.testing.assert_array_equal(got, np.stack([hash_vector(t) for t in texts]))


def test_a_50_mb_row_is_cut_like_a_list_jobs_text(fleet, tmp_path):
    client, _ = fleet
    huge = "0123456789" * 5_000_000  # 50 MB, one line
    (tmp_path / "in.txt").write_text(f"before\n{huge}\nafter\n")
    job = client.submit_dataset(str(tmp_path / "in.txt"), MODEL, str(tmp_path / "out") + "/")
    job.wait(timeout=300)
    table = rows_of(tmp_path / "out")
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    expected = [hash_vector(t) for t in ("before", huge[:MAX_CHARS_PER_TEXT], "after")]
    np.testing.assert_array_equal(got, np.stack(expected))


def test_blank_jsonl_lines_are_no_rows_and_a_long_first_line_is_accepted(fleet, tmp_path):
    client, _ = fleet
    first = "w" * (2 * 1024 * 1024)  # more than the 1 MiB the format sniffing read before
    records = [{"id": "0", "text": first}, {"id": "1", "text": "one"}, {"id": "2", "text": ""}]
    lines = [json.dumps(records[0]), "", json.dumps(records[1]), "   ", json.dumps(records[2])]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n\n\n")
    job = client.submit_dataset(str(tmp_path / "in.jsonl"), MODEL, str(tmp_path / "out") + "/")
    job.wait(timeout=120)
    table = rows_of(tmp_path / "out")
    assert table.column("row").to_pylist() == [0, 1, 2] and job.record.n == 3
    assert table.column("id").to_pylist() == ["0", "1", "2"]
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    expected = [hash_vector(t) for t in (first[:MAX_CHARS_PER_TEXT], "one", "")]
    np.testing.assert_array_equal(got, np.stack(expected))


def test_submit_refuses_an_unclosed_quote_and_a_truncated_parquet_in_one_line(fleet, tmp_path):
    _, config = fleet
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    lines = ["text"] + [f"row {i}" for i in range(3000)]
    lines[50] = '"row 49, and a quote never closed'
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"text": ["a"] * 500}), tmp_path / "in.parquet")
    data = (tmp_path / "in.parquet").read_bytes()
    (tmp_path / "in.parquet").write_bytes(data[: len(data) // 2])
    cases = {
        "in.csv": f"{tmp_path / 'in.csv'}: line 51: a quote opened here is never closed",
        "in.parquet": f"{tmp_path / 'in.parquet'}: not a readable parquet file (truncated",
    }
    for name, message in cases.items():
        proc = run_cli(
            "submit",
            "--model",
            MODEL,
            "--input",
            str(tmp_path / name),
            "--output",
            str(tmp_path / "out") + "/",
            env=env,
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_corrupt_parquet_fails_its_chunk_saying_corrupt(fleet, tmp_path):
    client, _ = fleet
    source = tmp_path / "in.parquet"
    corrupt_parquet(source)
    job = client.submit_dataset(str(source), MODEL, str(tmp_path / "out") + "/", chunk_rows=4096)
    errors = errors_of(job)
    assert f"{source}: the parquet file is corrupt" in errors[0]
    assert "readable by every worker" not in errors[0]


def test_a_duplicate_custom_id_gets_an_error_line(fleet, tmp_path):
    _, config = fleet

    def request(custom_id: str, text: str) -> dict:
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": text},
        }

    batch = [request("a", "first"), request("b", "second"), request("a", "again")]
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in batch))
    out = tmp_path / "results.jsonl"
    proc = run_cli(
        "submit",
        "--input",
        str(tmp_path / "batch.jsonl"),
        "--output",
        str(out),
        env={"EMBEDFLEET_MODEL_CONFIG": str(config)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["a", "b", "a"]
    assert lines[0]["error"] is None and lines[1]["error"] is None
    np.testing.assert_allclose(
        lines[0]["response"]["body"]["data"][0]["embedding"], hash_vector("first"), rtol=1e-6
    )
    assert lines[2]["response"] is None
    assert lines[2]["error"]["code"] == "invalid_request"
    assert "duplicate custom_id 'a'" in lines[2]["error"]["message"]
