"""Redis access is not file access: a dataset job record not signed with the fleet's job
key is refused before anything is read or written, and the worker keeps serving signed
jobs; a signed job still never reads /proc, /sys or /dev, nor outside
``EMBEDFLEET_DATA_ROOTS``; parts are written 0640."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from tasks.contract.signing import key_of
from tasks.io import scan, sources
from tasks.jobs import datasets
from tests.fault.conftest import HASH, wait_for

pytestmark = pytest.mark.fault

TEXTS = [f"a line the worker must not copy {i}" for i in range(6)]


@pytest.fixture(scope="module")
def fleet(make_module_fleet):
    fleet = make_module_fleet({"hash-model": HASH})
    fleet.ready(fleet.worker())
    return fleet


def write_record(
    fleet, url: str, output: Path, key: bytes, tmp_path: Path, send: bool = True
) -> str:
    """A dataset job record naming ``url`` as its input, written straight into Redis
    (no producer) and signed with ``key``, and its first chunk sent: what anyone with
    Redis access can do. Planned from a stand-in file holding :data:`TEXTS`."""
    stand_in = tmp_path / f"planned-{uuid.uuid4().hex[:6]}.txt"
    stand_in.write_text("".join(t + "\n" for t in TEXTS))
    plan = scan.plan(sources.resolve(str(stand_in)), chunk_rows=100)
    plan = dataclasses.replace(plan, files=[{**f, "url": url} for f in plan.files])
    spec = {
        "input": url,
        "output": str(output) + "/",
        "format": plan.format,
        "text_field": plan.text_field,
        "id_field": plan.id_field,
        "window": 1,
    }
    redis, job_id = fleet.redis(), uuid.uuid4().hex
    settings = fleet.client.settings
    ttl_s, priority = settings.result_ttl_s, settings.dataset_priority
    datasets.create(redis, job_id, "hash-model", "", "", plan, spec, key, ttl_s=ttl_s)
    if send:
        datasets.send(
            fleet.client.app, redis, job_id, 0, "hash-model", priority=priority, ttl_s=ttl_s
        )
    return job_id


def chunk_error(fleet, job_id: str) -> str:
    status = wait_for(
        lambda: (s := fleet.client.job(job_id).status())["failed"] and s, 60, "the chunk to fail"
    )
    return str(status["errors"][0]["error"])


def serves_a_signed_job(fleet, tmp_path: Path) -> None:
    source = tmp_path / "good.txt"
    source.write_text("".join(t + "\n" for t in TEXTS))
    job = fleet.client.submit_dataset(str(source), "hash-model", str(tmp_path / "good") + "/")
    job.wait(timeout=60)
    assert job.status()["state"] == "SUCCESS"


@pytest.mark.parametrize("how", ["another key", "no signature", "output changed after"])
def test_a_record_not_signed_by_this_fleet_is_refused(fleet, tmp_path: Path, how: str):
    # Given a file only the worker's user may read, and an output folder not there yet
    secret = tmp_path / "secret.txt"
    secret.write_text("".join(t + "\n" for t in TEXTS))
    output = tmp_path / "stolen"
    fleet_key = key_of(fleet.client.settings)
    redis = fleet.redis()
    # When a record is written straight into Redis, not signed with the fleet's key
    if how == "another key":
        job_id = write_record(fleet, str(secret), output, os.urandom(32), tmp_path)
    else:
        honest = tmp_path / "honest"
        job_id = write_record(fleet, str(secret), honest, fleet_key, tmp_path, send=False)
        if how == "no signature":
            redis.hdel(datasets.key(job_id), "sig")
            output = honest
        else:  # a signed record whose output a writer to Redis redirected
            spec = json.loads(redis.hget(datasets.key(job_id), "spec"))
            spec["output"] = str(output) + "/"
            redis.hset(datasets.key(job_id), "spec", json.dumps(spec))
        settings = fleet.client.settings
        datasets.send(
            fleet.client.app,
            redis,
            job_id,
            0,
            "hash-model",
            priority=settings.dataset_priority,
            ttl_s=settings.result_ttl_s,
        )
        assert not honest.exists()
    # Then the chunk fails naming why, and nothing was written anywhere
    error = chunk_error(fleet, job_id)
    assert error.startswith("UnsignedJob: job record not signed by this fleet"), error
    assert not output.exists()
    # ... and the worker goes on serving signed jobs
    serves_a_signed_job(fleet, tmp_path)


@pytest.mark.parametrize("target", ["/proc/self/environ", "/sys/kernel/hostname", "/dev/zero"])
def test_a_signed_job_never_reads_system_files(fleet, tmp_path: Path, target: str):
    # Given a signed job whose input is a link to a system file
    link = tmp_path / "innocent.txt"
    link.symlink_to(target)
    output = tmp_path / "out"
    # When the worker runs its chunk
    job_id = write_record(fleet, str(link), output, key_of(fleet.client.settings), tmp_path)
    # Then the chunk is refused, naming the folder, and nothing is written
    error = chunk_error(fleet, job_id)
    folder = "/" + target.split("/")[1]
    assert error.startswith("PathRefused: ") and f"under {folder}" in error, error
    assert not output.exists()


def test_parts_are_written_0640(fleet, tmp_path: Path):
    source = tmp_path / "in.txt"
    source.write_text("".join(t + "\n" for t in TEXTS))
    job = fleet.client.submit_dataset(str(source), "hash-model", str(tmp_path / "out") + "/")
    job.wait(timeout=60)
    umask = os.umask(0)
    os.umask(umask)
    written = [*(tmp_path / "out").glob("part-*.parquet"), tmp_path / "out" / "_manifest.json"]
    assert len(written) == 2
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~umask, path


def test_data_roots_limit_where_workers_read_and_write(make_fleet, tmp_path: Path):
    # Given a worker allowed to read and write only under allowed/
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    fleet = make_fleet({"hash-model": HASH}, env={"EMBEDFLEET_DATA_ROOTS": f"{allowed},s3://ok/"})
    fleet.ready(fleet.worker())
    for folder in (allowed, elsewhere):
        (folder / "in.txt").write_text("".join(t + "\n" for t in TEXTS))
    # When a signed job reads from outside, or writes outside
    outside_in = fleet.client.submit_dataset(
        str(elsewhere / "in.txt"), "hash-model", str(allowed / "a") + "/"
    )
    outside_out = fleet.client.submit_dataset(
        str(allowed / "in.txt"), "hash-model", str(elsewhere / "b") + "/"
    )
    # Then both chunks are refused naming the setting, and nothing is written
    for job in (outside_in, outside_out):
        error = chunk_error(fleet, job.id)
        assert "outside EMBEDFLEET_DATA_ROOTS" in error, error
    assert list((allowed / "a").glob("part-*")) == list((elsewhere / "b").glob("part-*")) == []
    # ... while a job inside runs
    inside = fleet.client.submit_dataset(
        str(allowed / "in.txt"), "hash-model", str(allowed / "c") + "/"
    )
    inside.wait(timeout=60)
    assert len(list((allowed / "c").glob("part-*.parquet"))) == 1
