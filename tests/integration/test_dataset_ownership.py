"""A dataset job owns its output, and `verify` checks it: real server, real worker, moto S3.

A destination holding another job's parts or manifest is refused (exit 2, one line) unless
--overwrite; a destination a live job writes is refused always; a failed job leaves no
manifest; `verify` finds a missing part, a changed part, a stray file and duplicate rows;
`status` of a SUCCESS job whose output was tampered with says so.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from producers.errors import JobFailedError, UsageError
from tasks.io import parts
from tasks.jobs import claims
from tests.integration import test_datasets as datasets_tests
from tests.plugins import POISON_WHILE
from tests.support import run_cli
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MODEL, IDLE = datasets_tests.MODEL, datasets_tests.IDLE
#: The dataset tests' fleet (one worker for this module) and moto server, reused.
fleet, moto = datasets_tests.fleet, datasets_tests.moto


def write_txt(path: Path, n: int, prefix: str = "row") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{prefix} {i}\n" for i in range(n)))
    return str(path)


@contextmanager
def as_admin(moto_server) -> Iterator[None]:
    """The producer lists and writes S3 as the admin user."""
    saved = {k: os.environ.get(k) for k in moto_server.admin_env}
    os.environ.update(moto_server.admin_env)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_a_used_destination_is_refused_then_overwritten(fleet, tmp_path):
    client, config, _ = fleet
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    out = str(tmp_path / "out") + "/"
    first = client.submit_dataset(write_txt(tmp_path / "a.txt", 50), MODEL, out, chunk_rows=10)
    first.wait(timeout=120)
    assert client.verify(out).ok
    # When a second job is sent to the same folder without --overwrite
    source = write_txt(tmp_path / "b.txt", 30, prefix="other")
    proc = run_cli("submit", "--model", MODEL, "--input", source, "--output", out, env=env)
    # Then it is refused before anything is queued, in one line naming what is there
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"holds 5 parts and the manifest of job {first.id}" in proc.stderr
    assert "--overwrite" in proc.stderr and proc.stdout == ""
    with pytest.raises(UsageError, match="holds 5 parts"):
        client.submit_dataset(source, MODEL, out, chunk_rows=10)
    # When it is sent with --overwrite, the old parts and manifest go first
    proc = run_cli(
        "submit", "--model", MODEL, "--input", source, "--output", out, "--chunk-rows", "10",
        "--overwrite", "--wait", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    second = client.job(proc.stdout.strip())
    report = client.verify(out)
    assert report.ok and report.job == second.id, report.lines()
    assert sorted(p.name for p in Path(out).iterdir()) == [
        "_manifest.json",
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]


def test_two_jobs_never_write_one_destination(fleet, tmp_path):
    client, _, _ = fleet
    out = str(tmp_path / "out") + "/"
    source = write_txt(tmp_path / "a.txt", 40)
    # Given a live job writing out/ (its model's queue is served by no worker: it waits)
    live = client.submit_dataset(source, IDLE, out, chunk_rows=10, window=2)
    try:
        # Then a second job into out/ is refused, --overwrite or not
        for overwrite in (False, True):
            with pytest.raises(UsageError, match=f"being written by job {live.id} \\(PENDING\\)"):
                client.submit_dataset(source, MODEL, out, overwrite=overwrite)
        assert live.retry() == 0  # nothing to redo: a retry leaves a live job's claim alone
        with pytest.raises(UsageError, match=f"being written by job {live.id}"):
            client.submit_dataset(source, MODEL, out)
    finally:
        live.delete()  # When the live job is deleted, its claim goes with it
        client.redis.delete(f"embed.{IDLE}\x06\x169")
    job = client.submit_dataset(source, MODEL, out, chunk_rows=10)
    job.wait(timeout=120)
    assert client.verify(out).ok


def test_two_jobs_at_once_into_one_s3_prefix(fleet, tmp_path, moto):
    client, _, _ = fleet
    moto.client("s3").create_bucket(Bucket="own-out")
    source = write_txt(tmp_path / "a.txt", 40)
    with as_admin(moto):
        live = client.submit_dataset(source, IDLE, "s3://own-out/emb/", chunk_rows=10)
        try:
            with pytest.raises(
                UsageError, match=f"s3://own-out/emb/ is being written by job {live.id}"
            ):
                client.submit_dataset(source, MODEL, "s3://own-out/emb", overwrite=True)
        finally:
            live.cancel()  # a cancelled job releases its destination
            client.redis.delete(f"embed.{IDLE}\x06\x169")
        first = client.submit_dataset(source, MODEL, "s3://own-out/emb/", chunk_rows=10)
        first.wait(timeout=120)
        assert client.verify("s3://own-out/emb/").ok
        with pytest.raises(UsageError, match=f"holds 4 parts and the manifest of job {first.id}"):
            client.submit_dataset(source, MODEL, "s3://own-out/emb/")
        second = client.submit_dataset(
            write_txt(tmp_path / "b.txt", 15), MODEL, "s3://own-out/emb/", overwrite=True
        )
        second.wait(timeout=120)
        report = client.verify("s3://own-out/emb/")
    assert report.ok and report.job == second.id, report.lines()
    keys = moto.client("s3").list_objects_v2(Bucket="own-out", Prefix="emb/")["Contents"]
    assert sorted(k["Key"] for k in keys) == ["emb/_manifest.json", "emb/part-000000.parquet"]


def test_a_failed_job_leaves_no_manifest_claiming_success(fleet, tmp_path):
    client, _, _ = fleet
    out = str(tmp_path / "out") + "/"
    done = client.submit_dataset(write_txt(tmp_path / "a.txt", 40), MODEL, out, chunk_rows=10)
    done.wait(timeout=120)
    poison = tmp_path / "poison-on"
    poison.touch()
    texts = [f"text {i}" for i in range(40)]
    texts[25] = f"{POISON_WHILE}{poison} row 25"
    (tmp_path / "b.txt").write_text("".join(t + "\n" for t in texts))
    # When a job overwriting out/ fails
    failing = client.submit_dataset(
        str(tmp_path / "b.txt"), MODEL, out, chunk_rows=10, overwrite=True
    )
    with pytest.raises(JobFailedError, match="1 of 4 chunks failed"):
        failing.wait(timeout=120)
    # Then no manifest is left: neither the old job's nor one of the failed job
    assert not (Path(out) / "_manifest.json").exists()
    report = client.verify(out)
    assert not report and "_manifest.json is missing" in report.lines()[0]
    # and its claim ended with it (a failed job does not keep others out), while the
    # failed job can still be retried there since nobody else wrote it
    dest = str(Path(out).resolve()) + "/"
    wait_for(
        lambda: claims.holder(client.redis, dest) == (failing.id, False), 30, "the claim released"
    )
    poison.unlink()
    assert failing.retry() == 1
    failing.wait(timeout=120)
    assert client.verify(out).ok


def test_retry_refused_once_another_job_wrote_the_destination(fleet, tmp_path):
    client, _, _ = fleet
    out = str(tmp_path / "out") + "/"
    poison = tmp_path / "poison-on"
    poison.touch()
    (tmp_path / "a.txt").write_text(f"{POISON_WHILE}{poison} x\nb\n")
    failed = client.submit_dataset(str(tmp_path / "a.txt"), MODEL, out, chunk_rows=1)
    with pytest.raises(JobFailedError):
        failed.wait(timeout=120)
    other = client.submit_dataset(write_txt(tmp_path / "b.txt", 5), MODEL, out, overwrite=True)
    other.wait(timeout=120)
    poison.unlink()
    with pytest.raises(UsageError, match=f"has been written by job {other.id} since job"):
        failed.retry()
    assert client.verify(out).ok


def test_verify_and_status_find_what_changed(fleet, tmp_path):
    client, config, _ = fleet
    env = {"EMBEDFLEET_MODEL_CONFIG": str(config)}
    out = tmp_path / "out"
    job = client.submit_dataset(
        write_txt(tmp_path / "a.txt", 50), MODEL, str(out) + "/", chunk_rows=10
    )
    job.wait(timeout=120)
    proc = run_cli("verify", str(out) + "/", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split()[:2] for line in proc.stdout.splitlines()] == [
        ["manifest", "ok:"],
        ["rows", "ok:"],
        ["checksums", "ok:"],
        ["folder", "ok:"],
    ]
    assert job.status()["output_problem"] is None
    pristine = tmp_path / "pristine"
    shutil.copytree(out, pristine)

    def restore() -> None:
        shutil.rmtree(out)
        shutil.copytree(pristine, out)

    def failing(*checks: str) -> dict[str, str]:
        proc = run_cli("verify", str(out), "--json", env=env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        bad = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
        assert sorted(bad) == sorted(checks), report
        return bad

    # a missing part: its rows and the part are named
    (out / "part-000002.parquet").unlink()
    bad = failing("rows", "checksums")
    assert bad["rows"] == "10 of 50 rows missing (first: 20)"
    assert "part-000002.parquet is missing" in bad["checksums"]
    status = job.status()  # status of the SUCCESS job says so, and the CLI exits 1
    assert status["state"] == "SUCCESS"
    assert status["output_problem"] == "part-000002.parquet is missing"
    proc = run_cli("status", job.id, env=env)
    assert proc.returncode == 1 and "no longer verifies: part-000002.parquet" in proc.stdout
    with pytest.raises(JobFailedError, match="no longer verifies"):
        job.wait(timeout=10)
    restore()

    # a part rewritten with the same rows and other vectors: only the checksum sees it
    (out / "part-000001.parquet").write_bytes(parts.part_bytes(10, np.ones((10, 16), np.float32)))
    bad = failing("checksums")
    assert bad["checksums"] == "4 of 5 parts match: part-000001.parquet differs from the manifest"
    restore()

    # a stray file, and a copy of a part under another name: duplicate rows
    (out / "notes.txt").write_text("x")
    shutil.copy(out / "part-000003.parquet", out / "part-000009.parquet")
    bad = failing("rows", "folder")
    assert bad["rows"] == "10 rows more than once (first: 30)"
    assert bad["folder"] == "2 stray: notes.txt, part-000009.parquet"
    assert "part-000009.parquet is not the job's" in job.status()["output_problem"]
    restore()
    assert client.verify(str(out)).ok


def test_tmp_leftovers_of_a_dead_writer_are_removed(fleet, tmp_path):
    client, _, _ = fleet
    out = tmp_path / "out"
    out.mkdir()
    # Given temporaries a killed writer left: one of a part the job writes, one of none
    (out / ".part-000001.parquet.0123abcd.tmp").write_bytes(b"half a part")
    (out / ".part-000042.parquet.4567cdef.tmp").write_bytes(b"half a part")
    job = client.submit_dataset(
        write_txt(tmp_path / "a.txt", 30), MODEL, str(out) + "/", chunk_rows=10
    )
    job.wait(timeout=120)
    # Then the writer of part 1 removed the first, the job's end the second
    assert sorted(p.name for p in out.iterdir()) == [
        "_manifest.json",
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]
    assert client.verify(str(out)).ok


def test_retry_of_a_finished_job_rewrites_parts_changed_since(fleet, tmp_path):
    client, _, _ = fleet
    out = tmp_path / "out"
    source = write_txt(tmp_path / "a.txt", 50)
    job = client.submit_dataset(source, MODEL, str(out) + "/", chunk_rows=10)
    job.wait(timeout=120)
    # Given one part rewritten with other vectors and one deleted after SUCCESS
    (out / "part-000001.parquet").write_bytes(parts.part_bytes(10, np.ones((10, 16), np.float32)))
    (out / "part-000002.parquet").unlink()
    # Then retry redoes both (the manifest's sizes say part 1 changed) and nothing else
    assert job.retry() == 2
    job.wait(timeout=120)
    report = client.verify(str(out))
    assert report.ok, report.lines()
