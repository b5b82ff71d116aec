"""Who owns a dataset destination, on the real server: claims, takeover, the manifest check."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from tasks.contract.errors import PermanentError
from tasks.io import manifest, parts, scan, sources
from tasks.jobs import claims, datasets, job_admin, outputs

TTL_S = 600  # seconds the records and claims written here last


@pytest.fixture
def client(redis_server):
    from tasks.app import make_app

    return make_app(redis_server.url).backend.client


def new_job(client, tmp_path: Path, rows: int = 30, chunk_rows: int = 10) -> datasets.DatasetRecord:
    """A dataset job recorded as submit records it (PENDING: no chunk ran)."""
    source = tmp_path / f"in-{uuid.uuid4().hex[:6]}.txt"
    source.write_text("".join(f"row {i}\n" for i in range(rows)))
    plan = scan.plan(sources.resolve(str(source)), chunk_rows=chunk_rows)
    job_id = uuid.uuid4().hex
    spec = {"input": str(source), "output": str(tmp_path / "out") + "/", "format": "txt"}
    record = datasets.create(
        client, job_id, "m", "v1", "", plan, spec, b"unit-test-key", ttl_s=TTL_S
    )
    datasets.mark_submitted(client, job_id)
    return record


def test_a_live_claim_keeps_a_destination_and_an_ended_one_is_taken_over(client, tmp_path):
    dest = f"{tmp_path}/dest-{uuid.uuid4().hex}/"
    a, b = new_job(client, tmp_path), new_job(client, tmp_path)
    assert claims.take(client, dest, a.id, ttl_s=TTL_S) is None
    assert claims.take(client, dest, a.id, ttl_s=TTL_S) is None  # the holder again: fine
    assert claims.take(client, dest, b.id, ttl_s=TTL_S) == a.id  # a is PENDING: live
    claims.release(client, dest, a.id, ttl_s=TTL_S)
    assert claims.holder(client, dest) == (a.id, False)
    assert claims.take(client, dest, b.id, ttl_s=TTL_S) is None
    # a retry of a may not take it back: b wrote there since
    claims.release(client, dest, b.id, ttl_s=TTL_S)
    assert claims.take(client, dest, a.id, takeover=False, ttl_s=TTL_S) == b.id
    assert claims.take(client, dest, b.id, takeover=False, ttl_s=TTL_S) is None


def test_a_claim_of_a_job_whose_records_are_gone_is_stale(client, tmp_path):
    dest = f"{tmp_path}/dest-{uuid.uuid4().hex}/"
    gone = new_job(client, tmp_path)
    assert claims.take(client, dest, gone.id, ttl_s=TTL_S) is None
    job_admin.delete(client, gone.id, gone.total, ttl_s=TTL_S)  # its claim was never released
    other = new_job(client, tmp_path)
    assert claims.take(client, dest, other.id, ttl_s=TTL_S) is None
    assert claims.holds(client, dest, other.id)


def test_of_many_jobs_taking_a_stale_claim_at_once_exactly_one_wins(client, tmp_path):
    dest = f"{tmp_path}/dest-{uuid.uuid4().hex}/"
    client.set(claims.key(dest), "job-with-no-records")
    jobs = [new_job(client, tmp_path) for _ in range(8)]
    results: dict[str, str | None] = {}
    start = threading.Barrier(len(jobs))

    def take(job_id: str) -> None:
        start.wait()
        results[job_id] = claims.take(client, dest, job_id, ttl_s=TTL_S)

    threads = [threading.Thread(target=take, args=(j.id,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [job for job, other in results.items() if other is None]
    assert len(winners) == 1
    assert claims.holder(client, dest) == (winners[0], True)
    assert {other for other in results.values() if other} == {winners[0]}


def write_all_parts(client, record: datasets.DatasetRecord) -> None:
    plan = datasets.chunks(client, record.id)
    for index in range(record.total):
        rows = int(plan[index]["rows"])
        data = parts.part_bytes(int(plan[index]["first_row"]), np.zeros((rows, 4), np.float32))
        parts.put(record.output, parts.part_name(index), data)
        outputs.record_part(client, record.id, index, data, ttl_s=TTL_S)


def test_the_manifest_lists_every_part_and_refuses_a_changed_folder(client, tmp_path):
    record = new_job(client, tmp_path)
    assert claims.take(client, record.output, record.id, ttl_s=TTL_S) is None
    write_all_parts(client, record)
    out = Path(record.output)
    (out / "part-000007.parquet").write_bytes(b"a part of nobody")  # in the job's folder
    (out / ".part-000001.parquet.dead.tmp").write_bytes(b"half")
    outputs.write_manifest(client, record, ttl_s=TTL_S)
    body = manifest.parse((out / parts.MANIFEST).read_bytes())
    assert body.job == record.id and body.rows == 30
    assert [(p.name, p.first_row, p.rows) for p in body.parts] == [
        (parts.part_name(i), 10 * i, 10) for i in range(3)
    ]
    assert body.parts[1].sha256 == parts.sha256((out / "part-000001.parquet").read_bytes())
    assert body.body["input"]["files"][0]["url"] == record.spec["input"]
    assert sorted(p.name for p in out.iterdir()) == [
        "_manifest.json",
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]
    # a part deleted or rewritten after its chunk wrote it: no manifest, the part named
    (out / "part-000001.parquet").unlink()
    (out / "part-000002.parquet").write_bytes(b"short")
    with pytest.raises(PermanentError, match="part-000001.parquet is missing; part-000002"):
        outputs.write_manifest(client, record, ttl_s=TTL_S)
    # a job that no longer holds its destination writes nothing
    claims.release(client, record.output, record.id, ttl_s=TTL_S)
    with pytest.raises(PermanentError, match="no longer claimed by job"):
        outputs.require_claim(client, record, ttl_s=TTL_S)
    # while a job submitted with no claim at all (an older producer) takes it on writing
    client.delete(claims.key(record.output))
    outputs.require_claim(client, record, ttl_s=TTL_S)
    assert claims.holds(client, record.output, record.id)


def ending_in_zero_bytes(zeros: int) -> bytes:
    """Bytes whose sha256 ends in ``zeros`` zero bytes (1 part in 256 ends in one)."""
    import hashlib

    n = 0
    while not hashlib.sha256(data := b"part %d" % n).digest().endswith(bytes(zeros)):
        n += 1
    return data


def test_a_checksum_ending_in_zero_bytes_is_kept_whole(client, tmp_path):
    # Given parts whose sha256 ends in one and in two zero bytes (a fixed-width bytes
    # field drops trailing NULs: the manifest said 62 hex digits, and verify would call
    # a good part changed)
    record = new_job(client, tmp_path, rows=20)
    assert claims.take(client, record.output, record.id, ttl_s=TTL_S) is None
    out = Path(record.output)
    for index, zeros in enumerate((1, 2)):
        data = ending_in_zero_bytes(zeros)
        parts.put(record.output, parts.part_name(index), data)
        outputs.record_part(client, record.id, index, data, ttl_s=TTL_S)
    # When the manifest is written, and its checksums put back as a retry does
    outputs.write_manifest(client, record, ttl_s=TTL_S)
    body = manifest.parse((out / parts.MANIFEST).read_bytes())
    outputs.recall(client, record, ttl_s=TTL_S)
    # Then each checksum is the part's, 64 hex digits, in the manifest and after recall
    for index, entry in enumerate(body.parts):
        assert entry.sha256 == parts.sha256((out / entry.name).read_bytes())
        assert len(entry.sha256) == 64
        assert bytes(outputs.recorded(client, record.id, 2)[index]["sha256"]).hex() == entry.sha256


def test_a_part_writer_removes_the_temporaries_of_a_dead_writer_of_that_part(tmp_path):
    dest = str(tmp_path) + "/"
    (tmp_path / ".part-000003.parquet.0a1b.tmp").write_bytes(b"half")
    (tmp_path / ".part-000004.parquet.0a1b.tmp").write_bytes(b"half")
    parts.put(dest, parts.part_name(3), b"whole")
    assert sorted(parts.listing(dest)) == [".part-000004.parquet.0a1b.tmp", "part-000003.parquet"]
    assert parts.listing(dest)["part-000003.parquet"] == 5
