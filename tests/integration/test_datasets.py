"""Dataset jobs end to end: real server, real worker processes, parts read back.

Each format, local and S3 (moto), ids carried, the manifest; submit and go away (the
CLI returns at once and the job finishes with no producer); retry rewrites only the
failed part; the OpenAI batch file round trip; a small job served while a big one runs.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producers import EmbeddingClient
from tests.aws import MotoServer
from tests.plugins import POISON_WHILE, hash_vector
from tests.support import WorkerProcess, run_cli, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MODEL = "ds-hash"
SLOW = "ds-slow"
IDLE = "ds-idle"  # configured, served by no worker: its queue shows what was sent


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    return MotoServer.shared()


@pytest.fixture(scope="module")
def fleet(redis_server, tmp_path_factory, moto):
    folder = tmp_path_factory.mktemp("datasets")
    config = write_config(
        folder / "models.json",
        {
            MODEL: {"type": "tests.plugins:CurablePoisonModel", "model_path": "none", "RAM": 0.01},
            SLOW: {"type": "tests.plugins:SlowHashModel", "model_path": "none", "RAM": 0.01},
            IDLE: {"type": "tests.plugins:HashModel", "model_path": "none", "RAM": 0.01},
        },
    )
    client = EmbeddingClient(config_source=str(config))
    worker = WorkerProcess(
        config,
        models=f"{MODEL},{SLOW}",
        concurrency=2,
        log_dir=folder,
        env={**moto.worker_env, "EMBEDFLEET_TEST_SLOW_S": "0.01"},
    ).wait_ready(client.app)
    yield client, config, worker
    worker.stop()


def texts_of(n: int) -> list[str]:
    return [f"text {i} " * (i % 5) for i in range(n)]  # every 5th text is empty


def read_parts(folder: Path) -> pa.Table:
    files = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("row")


def check_output(folder: Path, texts: list[str], ids: list[str] | None, job: Any) -> None:
    table = read_parts(folder)
    assert table.column("row").to_pylist() == list(range(len(texts)))  # each row once
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(vectors, np.stack([hash_vector(t) for t in texts]))
    if ids is None:
        assert "id" not in table.column_names
    else:
        assert table.column("id").to_pylist() == ids
    manifest = json.loads((folder / "_manifest.json").read_text())
    keys = ("job", "model", "version", "dimension", "rows", "tokens", "truncated", "options")
    assert {k: manifest[k] for k in keys} == {
        "job": job.id,
        "model": MODEL,
        "version": job.record.version,
        "dimension": 16,
        "rows": len(texts),
        "tokens": sum(table.column("tokens").to_pylist()),  # usage totals of the parts
        "truncated": 0,
        "options": {},
    }
    assert manifest["tokens"] >= 2 * len(texts)  # special tokens at least
    names = sorted(p.name for p in folder.glob("part-*.parquet"))
    assert [p["name"] for p in manifest["parts"]] == names and len(names) == job.record.total
    for entry in manifest["parts"]:  # each part with its rows and checksum
        data = (folder / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        rows = pq.read_table(folder / entry["name"]).column("row").to_pylist()
        assert rows == list(range(entry["first_row"], entry["first_row"] + entry["rows"]))
    assert manifest["input"]["source"]
    for snapshot in manifest["input"]["files"]:  # the input as the submit pinned it
        assert snapshot["size"] > 0 and snapshot["mtime"].endswith("Z")
        assert bool(snapshot["etag"]) == snapshot["url"].startswith("s3://")
    assert not list(folder.glob(".*.tmp"))


def write_input(folder: Path, fmt: str, texts: list[str]) -> tuple[str, list[str] | None]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"doc-{i}" for i in range(len(texts))]
    if fmt == "txt":
        (folder / "in.txt").write_text("".join(t + "\n" for t in texts))
        return str(folder / "in.txt"), None
    if fmt == "jsonl":
        with (folder / "in.jsonl").open("w") as fh:
            for i, t in zip(ids, texts, strict=True):
                fh.write(json.dumps({"id": i, "text": t}) + "\n")
        return str(folder / "in.jsonl"), ids
    if fmt == "csv":  # two files of a folder, read in name order
        for part, rows in enumerate((range(0, 60), range(60, len(texts)))):
            with (folder / f"in-{part}.csv").open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["custom_id", "text"])
                writer.writerows(
                    [ids[i], texts[i] + ("\nsecond line" if i % 7 == 1 else "")] for i in rows
                )
        return str(folder) + "/", ids
    table = pa.table({"text": texts, "id": ids})
    pq.write_table(table, folder / "in.parquet", row_group_size=40)
    return str(folder / "in.parquet"), ids


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "parquet"])
def test_each_format_to_parts_and_manifest(fleet, tmp_path, fmt):
    client, _, _ = fleet
    texts = texts_of(150)
    source, ids = write_input(tmp_path / "in", fmt, texts)
    if fmt == "csv":  # the cells with a newline are read whole
        texts = [t + ("\nsecond line" if i % 7 == 1 else "") for i, t in enumerate(texts)]
    job = client.submit_dataset(source, MODEL, str(tmp_path / "out") + "/", chunk_rows=16, window=3)
    assert job.wait(timeout=120) == str((tmp_path / "out").resolve()) + "/"
    check_output(tmp_path / "out", texts, ids, job)
    status = job.status()
    assert status["state"] == "SUCCESS" and status["rows_done"] == 150 and status["finished"]


def test_s3_input_and_output(fleet, tmp_path, moto):
    client, _, _ = fleet
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="ds-in")
    s3.create_bucket(Bucket="ds-out")
    texts = texts_of(90)
    for part in range(3):
        body = "".join(
            json.dumps({"id": str(i), "text": texts[i]}) + "\n"
            for i in range(30 * part, 30 * part + 30)
        )
        s3.put_object(Bucket="ds-in", Key=f"corpus/p{part}.jsonl", Body=body.encode())
    import os

    saved = {k: os.environ.get(k) for k in moto.admin_env}
    os.environ.update(moto.admin_env)  # the producer lists and scans as the admin user
    try:
        job = client.submit_dataset("s3://ds-in/corpus/", MODEL, "s3://ds-out/emb/", chunk_rows=20)
        job.wait(timeout=120)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    local = tmp_path / "copy"
    local.mkdir()
    for item in s3.list_objects_v2(Bucket="ds-out", Prefix="emb/")["Contents"]:
        name = item["Key"].rsplit("/", 1)[-1]
        (local / name).write_bytes(s3.get_object(Bucket="ds-out", Key=item["Key"])["Body"].read())
    check_output(local, texts, [str(i) for i in range(90)], job)


def test_s3_parquet_input_read_by_row_group_ranges(fleet, tmp_path, moto):
    client, _, _ = fleet
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="ds-pq")
    texts = texts_of(120)
    local = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": texts, "id": list(range(120))}), local, row_group_size=50)
    s3.put_object(Bucket="ds-pq", Key="in/data.parquet", Body=local.read_bytes())
    import os

    saved = {k: os.environ.get(k) for k in moto.admin_env}
    os.environ.update(moto.admin_env)
    try:
        job = client.submit_dataset(
            "s3://ds-pq/in/data.parquet", MODEL, str(tmp_path / "out") + "/", chunk_rows=20
        )
        job.wait(timeout=120)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    check_output(tmp_path / "out", texts, [str(i) for i in range(120)], job)


def test_cli_submit_and_go_away_then_status_and_delete(fleet, tmp_path):
    client, config, _ = fleet
    source, ids = write_input(tmp_path / "in", "jsonl", texts_of(100))
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    proc = run_cli(
        "submit",
        "--model",
        MODEL,
        "--input",
        source,
        "--output",
        str(tmp_path / "out") + "/",
        "--chunk-rows",
        "10",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    job = client.job(job_id)  # the producer process is gone
    job.wait(timeout=120)
    check_output(tmp_path / "out", texts_of(100), ids, job)
    proc = run_cli("status", job_id, "--json", env=env)
    status = json.loads(proc.stdout)
    assert status["state"] == "SUCCESS" and status["total"] == 10 and status["errors"] == []
    assert run_cli("delete", job_id, env=env).returncode == 0
    assert client.redis.keys(f"embedfleet:job:{job_id}*") == []
    assert run_cli("status", job_id, env=env).returncode == 2


def test_retry_rewrites_only_the_failed_part(fleet, tmp_path):
    client, _, _ = fleet
    poison = tmp_path / "poison-on"
    poison.touch()
    texts = texts_of(60)
    texts[33] = f"{POISON_WHILE}{poison} row 33"
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"
    job = client.submit_dataset(
        str(tmp_path / "in.txt"), MODEL, str(out) + "/", chunk_rows=10, window=2
    )
    with pytest.raises(Exception, match="1 of 6 chunks failed"):
        job.wait(timeout=120)
    status = job.status()
    assert status["state"] == "FAILURE"
    assert [(e["chunk"], e["rows"]) for e in status["errors"]] == [(3, [30, 39])]
    assert "poisoned while" in status["errors"][0]["error"]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert sorted(before) == [f"part-00000{i}.parquet" for i in (0, 1, 2, 4, 5)]
    assert not (out / "_manifest.json").exists()

    poison.unlink()
    assert job.retry() == 1
    job.wait(timeout=120)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert {n: t for n, t in after.items() if n in before} == before  # untouched
    assert set(after) - set(before) == {"part-000003.parquet"}
    check_output(out, texts, None, job)


def test_openai_batch_round_trip(fleet, tmp_path):
    _, config, _ = fleet
    requests = [
        {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": "first text"},
        },
        {
            "custom_id": "b",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": 42},
        },
        {
            "custom_id": "c",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": ["two", "three"]},
        },
    ]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in requests))
    out = tmp_path / "results.jsonl"
    proc = run_cli(
        "submit",
        "--input",
        str(batch),
        "--output",
        str(out),
        env={"EMBEDFLEET_MODEL_CONFIG": str(config)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["a", "b", "c"]
    a, b, c = lines
    assert a["error"] is None and a["response"]["status_code"] == 200
    body = a["response"]["body"]
    assert body["object"] == "list" and body["model"] == MODEL
    np.testing.assert_allclose(body["data"][0]["embedding"], hash_vector("first text"), rtol=1e-6)
    assert body["usage"]["prompt_tokens"] > 0
    assert b["response"] is None and b["error"]["code"] == "invalid_request"
    assert [d["index"] for d in c["response"]["body"]["data"]] == [0, 1]
    np.testing.assert_allclose(
        c["response"]["body"]["data"][1]["embedding"], hash_vector("three"), rtol=1e-6
    )


def test_small_job_finishes_while_a_dataset_job_runs(fleet, tmp_path):
    client, _, _ = fleet
    (tmp_path / "big.txt").write_text("".join(f"row {i}\n" for i in range(3000)))
    big = client.submit_dataset(
        str(tmp_path / "big.txt"), SLOW, str(tmp_path / "out") + "/", chunk_rows=50, window=8
    )
    wait_for(lambda: big.status()["done"] >= 1, 60, "the big job's first chunk")
    small = client.submit(["one small text"], model=SLOW)
    np.testing.assert_array_equal(small.wait(timeout=120)[0], hash_vector("one small text"))
    status = big.status()
    assert status["state"] == "RUNNING" and status["done"] < status["total"] // 2
    big.cancel()


@pytest.fixture
def broker_outage(monkeypatch):
    """Sends fail as if Redis went away after ``after`` chunks (the record was written);
    the submit's retry window is cut to 0.5 s."""
    from kombu.exceptions import OperationalError

    from producers import submitting

    monkeypatch.setattr(submitting, "SUBMIT_RETRY_S", 0.5)

    def install(app: Any, after: int) -> list[int]:
        calls = [0]
        real = app.send_task

        def send_task(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] > after:
                raise OperationalError("Error 111 connecting to 127.0.0.1: Connection refused")
            return real(*args, **kwargs)

        monkeypatch.setattr(app, "send_task", send_task)
        return calls

    return install


def test_outage_mid_submit_of_a_dataset_job_then_retry(fleet, tmp_path, broker_outage, monkeypatch):
    client, _, _ = fleet
    from producers.errors import UsageError

    texts = texts_of(80)
    source, ids = write_input(tmp_path / "in", "jsonl", texts)
    out = tmp_path / "out"
    announced: list[str] = []
    # Given Redis goes away after the record and two of the five first chunks are sent
    broker_outage(client.app, after=2)
    with pytest.raises(UsageError, match="run `embedfleet retry"):
        client.submit_dataset(
            source, MODEL, str(out) + "/", chunk_rows=10, window=5, announce=announced.append
        )
    # Then the id was announced before any chunk was sent, and the job is FAILURE with
    # the reason (never PENDING)
    assert len(announced) == 1
    job = client.job(announced[0])
    status = job.status()
    assert status["state"] == "FAILURE"
    assert "submit stopped after 2 chunk(s)" in str(status["errors"])
    # When the outage is over, retry finishes the job: every row once
    monkeypatch.undo()
    assert job.retry() >= 3  # chunks 2, 3, 4 (and any chain that had not ended yet)
    job.wait(timeout=120)
    check_output(out, texts, ids, job)


def test_outage_mid_submit_of_a_list_job_then_retry(fleet, broker_outage, monkeypatch):
    client, _, _ = fleet
    from producers.errors import UsageError

    texts = [f"list text {i}" for i in range(40)]
    announced: list[str] = []
    broker_outage(client.app, after=3)
    with pytest.raises(UsageError, match="could not be sent"):
        client.submit(texts, model=MODEL, max_texts=4, announce=announced.append)
    job = client.job(announced[0])
    status = job.status()
    assert status["failed"] == 7 and "not sent" in status["errors"][0]["error"]
    monkeypatch.undo()  # the outage is over
    assert job.retry(texts) == 7
    np.testing.assert_array_equal(job.wait(timeout=120), np.stack([hash_vector(t) for t in texts]))


def test_a_window_of_messages_waits_at_low_priority(fleet, tmp_path):
    client, _, _ = fleet
    (tmp_path / "in.txt").write_text("".join(f"row {i}\n" for i in range(1000)))
    job = client.submit_dataset(
        str(tmp_path / "in.txt"), IDLE, str(tmp_path / "out") + "/", chunk_rows=10, window=5
    )
    try:
        # 100 chunks planned, 5 messages queued, all on the queue's lowest priority list
        assert job.record.total == 100
        assert client.redis.llen(f"embed.{IDLE}\x06\x169") == 5
        assert client.redis.llen(f"embed.{IDLE}") == 0
        status = job.status()
        assert (status["state"], status["done"]) == ("PENDING", 0)
    finally:
        job.delete()
        client.redis.delete(f"embed.{IDLE}\x06\x169")
    assert client.redis.keys(f"embedfleet:job:{job.id}*") == []


def test_a_worker_that_cannot_read_the_input_says_so(fleet, tmp_path):
    client, _, _ = fleet
    source = tmp_path / "in.txt"
    source.write_text("a\nb\nc\n")
    # the producer scanned the file; it is gone before any worker reads it
    job = client.submit_dataset(
        str(source), MODEL, str(tmp_path / "out") + "/", announce=lambda _: source.unlink()
    )
    with pytest.raises(Exception, match="1 of 1 chunks failed"):
        job.wait(timeout=60)
    error = job.status()["errors"][0]["error"]
    assert f"cannot read {source}" in error
    assert "readable by every worker at the same path" in error


def test_retry_rewrites_a_missing_part_and_the_manifest(fleet, tmp_path):
    client, _, _ = fleet
    texts = texts_of(50)
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"
    job = client.submit_dataset(str(tmp_path / "in.txt"), MODEL, str(out) + "/", chunk_rows=10)
    job.wait(timeout=60)
    assert job.retry() == 0  # nothing failed, nothing missing
    (out / "part-000002.parquet").unlink()
    (out / "_manifest.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert job.retry() == 1
    job.wait(timeout=60)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert {n: after[n] for n in before} == before
    check_output(out, texts, None, job)


def test_cli_input_errors_are_one_line(fleet, tmp_path):
    _, config, _ = fleet
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    (tmp_path / "sur.jsonl").write_text('{"text": "\\ud800"}\n')
    (tmp_path / "big.csv").write_text("text\n" + "x" * 140_000 + "\n")
    cases = {
        "bad.txt": "line 2 is not UTF-8",
        "sur.jsonl": "lone surrogate",
        "big.csv": "over 128 KiB",
    }
    for name, message in cases.items():
        proc = run_cli("submit", "--model", MODEL, "--input", str(tmp_path / name), env=env)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    proc = run_cli(
        "submit",
        "--model",
        MODEL,
        "--input",
        str(tmp_path / "bad.txt"),
        "--output",
        f"{blocked}/sub/",
        env=env,
    )
    assert proc.returncode == 2 and "cannot write to" in proc.stderr, proc.stderr


def test_small_job_outputs_carry_ids_and_result_delete_frees_keys(fleet, tmp_path):
    client, config, _ = fleet
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    source, ids = write_input(tmp_path / "in", "jsonl", texts_of(12))
    out = tmp_path / "small.parquet"
    proc = run_cli("submit", "--model", MODEL, "--input", source, "--output", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ids
    # later, from another process: the ids come from the input file the submit recorded
    later = tmp_path / "later.jsonl"
    proc = run_cli("result", job_id, "--output", str(later), "--delete", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in later.read_text().splitlines()]
    assert [x["id"] for x in lines] == ids
    assert client.redis.keys(f"embedfleet:job:{job_id}*") == []
    assert client.redis.keys(f"celery-task-meta-{job_id}.*") == []
