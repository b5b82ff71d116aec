"""The input is pinned at submit (tasks.io.pinning) and hostile files are read safely:
rewritten inputs fail the chunk, appended rows stay outside the job, blank jsonl lines
are no records, an unclosed CSV quote is named, long lines and texts are handled."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.contract.errors import InputChanged, InputError
from tasks.contract.wire import MAX_CHARS_PER_TEXT
from tasks.io import pinning, ranges, scan, sources
from tests.unit.tasks.test_dataset_io import read_all


def plan_of(path, **kwargs) -> scan.Plan:
    return scan.plan(sources.resolve(str(path)), **kwargs)


def rewrite_keeping_layout(path, old: str, new: str) -> None:
    """Rewrite a file in place: same length, same lines, another text (a nightly export)."""
    data = path.read_bytes()
    changed = data.replace(old.encode(), new.encode())
    assert len(changed) == len(data) and changed != data
    path.write_bytes(changed)


def test_chunk_hashes_match_their_ranges_across_block_sizes(tmp_path, monkeypatch):
    lines = [f"row {i} " * (i % 9) for i in range(3000)]
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n")
    reference = plan_of(tmp_path / "a.txt", chunk_rows=37, max_bytes=900)
    real = sources.stream
    for block in (1, 5, 64, 4096):
        monkeypatch.setattr(sources, "stream", lambda url, b=block, pin=None: real(url, b, pin))
        plan = plan_of(tmp_path / "a.txt", chunk_rows=37, max_bytes=900)
        assert plan.chunks.tobytes() == reference.chunks.tobytes()
    data = (tmp_path / "a.txt").read_bytes()
    for chunk in reference.chunks:
        got = pinning.digest(data[int(chunk["start"]) : int(chunk["stop"])])
        assert int(chunk["hash"]) == got
    assert read_all(reference)[0] == lines


def test_a_txt_rewritten_in_place_with_the_same_layout_fails_its_chunk(tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"old row {i:04d}\n" for i in range(100)))
    plan = plan_of(tmp_path / "a.txt", chunk_rows=10)
    rewrite_keeping_layout(tmp_path / "a.txt", "old row 0042", "new row 0042")
    spec = {"format": "txt", "text_field": "", "id_field": None}
    assert ranges.read_chunk(spec, plan.files[0], plan.chunks[3]).texts[0] == "old row 0030"
    with pytest.raises(InputChanged) as caught:
        ranges.read_chunk(spec, plan.files[0], plan.chunks[4])
    start, stop = int(plan.chunks[4]["start"]), int(plan.chunks[4]["stop"])
    assert str(caught.value) == (
        f"the input changed since it was submitted: {tmp_path / 'a.txt'} bytes {start}-{stop}"
    )


def test_rows_appended_after_submit_are_outside_the_job(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("".join(f"row {i}\n" for i in range(30)))
    plan = plan_of(path, chunk_rows=7)
    with path.open("a") as fh:
        fh.write("appended\n")
    assert read_all(plan)[0] == [f"row {i}" for i in range(30)]
    assert plan.files[0]["size"] == len("".join(f"row {i}\n" for i in range(30)))
    assert plan.files[0]["mtime"].endswith("Z") and plan.files[0]["etag"] is None


def test_a_parquet_rewritten_with_the_same_row_count_fails_its_chunk(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": [f"old {i}" for i in range(100)]}), path, row_group_size=50)
    plan = plan_of(path, chunk_rows=25)
    spec = {"format": "parquet", "text_field": "text", "id_field": None}
    assert ranges.read_chunk(spec, plan.files[0], plan.chunks[0]).texts[0] == "old 0"
    pq.write_table(pa.table({"text": [f"new {i}" for i in range(100)]}), path, row_group_size=50)
    for chunk in plan.chunks:  # the row group cached by the first read is not used either
        with pytest.raises(InputChanged, match=f"submitted: {path} rows"):
            ranges.read_chunk(spec, plan.files[0], chunk)


def test_a_parquet_with_its_old_mtime_put_back_is_caught_by_its_footer(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": [f"old {i}" for i in range(100)]}), path)
    plan = plan_of(path)
    stat = path.stat()
    pq.write_table(pa.table({"text": [f"new {i}" for i in range(100)]}), path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size  # same size and mtime: only the footer tells
    spec = {"format": "parquet", "text_field": "text", "id_field": None}
    with pytest.raises(InputChanged):
        ranges.read_chunk(spec, plan.files[0], plan.chunks[0])


def test_a_truncated_parquet_is_one_line_at_submit(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["a"] * 100}), path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError) as caught:
        plan_of(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a readable parquet file (truncated or corrupt)")
    assert "\n" not in message
    from tasks.io.readers import read_rows  # a list job: the same line

    with pytest.raises(InputError, match="not a readable parquet file"):
        read_rows(path)


def corrupt_parquet(path) -> None:
    """A parquet file whose footer is sound and whose data pages are not."""
    pq.write_table(
        pa.table({"text": [f"text {i} " * 20 for i in range(2000)]}),
        path,
        compression="snappy",
        use_dictionary=False,
    )
    data = bytearray(path.read_bytes())
    meta = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = meta.data_page_offset
    for at in range(start + 40, start + meta.total_compressed_size - 40, 7):
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def test_a_corrupt_parquet_chunk_says_corrupt(tmp_path):
    path = tmp_path / "a.parquet"
    corrupt_parquet(path)
    plan = plan_of(path)  # the footer is sound: the scan cannot see it
    spec = {"format": "parquet", "text_field": "text", "id_field": None}
    with pytest.raises(InputError) as caught:
        ranges.read_chunk(spec, plan.files[0], plan.chunks[0])
    assert not isinstance(caught.value, InputChanged)
    assert str(caught.value).startswith(f"{path}: the parquet file is corrupt")


def test_jsonl_blank_lines_are_no_rows_and_errors_name_their_line(tmp_path, monkeypatch):
    lines = []
    for i in range(120):
        lines.append(json.dumps({"text": f"t{i}"}))
        lines += [""] * (i % 3) + (["  \t \r"] if i % 5 == 0 else [])
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n\n  \n")
    real = sources.stream
    for block in (1, 3, 16, 1 << 20):
        monkeypatch.setattr(sources, "stream", lambda url, b=block, pin=None: real(url, b, pin))
        plan = plan_of(tmp_path / "a.jsonl", chunk_rows=7)
        assert plan.rows == 120
        assert read_all(plan)[0] == [f"t{i}" for i in range(120)]
    bad = lines.index(json.dumps({"text": "t100"}))
    lines[bad] = '{"text": 5}'
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=f"line {bad + 1}: field 'text' is int"):
        read_all(plan_of(tmp_path / "a.jsonl", chunk_rows=7))


def test_txt_keeps_a_blank_line_as_an_empty_row(tmp_path):
    (tmp_path / "a.txt").write_text("a\n\n  \nb\n")
    assert read_all(plan_of(tmp_path / "a.txt"))[0] == ["a", "", "  ", "b"]


def test_an_unclosed_csv_quote_is_named_by_its_line(tmp_path):
    rows = ["text"] + [f"row {i}" for i in range(3000)]
    rows[51] = '"row 50, opened and never closed'
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as caught:
        plan_of(tmp_path / "a.csv")
    assert str(caught.value).startswith(f"{tmp_path / 'a.csv'}: line 52: a quote opened here")
    from tasks.io.readers import read_rows  # list jobs: the same error

    with pytest.raises(InputError, match="line 52: a quote opened here is never closed"):
        read_rows(tmp_path / "a.csv")


def test_a_jsonl_first_line_of_any_length_is_accepted(tmp_path):
    long = "x" * (3 * 1024 * 1024)
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "first", "text": long}) + "\n" + '{"id": "b", "text": "b"}\n')
    plan = plan_of(path)
    assert plan.id_field == "id" and plan.rows == 2
    texts, ids, _ = read_all(plan)
    assert ids == ["first", "b"]
    assert texts[0] == long[:MAX_CHARS_PER_TEXT]  # cut as list jobs cut, before any model


def test_texts_over_the_cut_are_cut_in_every_format(tmp_path):
    huge = "y" * (MAX_CHARS_PER_TEXT * 5 + 3)
    (tmp_path / "a.txt").write_text(f"short\n{huge}\nend\n")
    texts = read_all(plan_of(tmp_path / "a.txt"))[0]
    assert texts == ["short", huge[:MAX_CHARS_PER_TEXT], "end"]


def test_a_duplicate_custom_id_is_an_error_for_its_second_occurrence(tmp_path):
    def request(custom_id: str, text: str) -> str:
        body = {"model": "m", "input": text}
        return json.dumps(
            {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}
        )

    lines = [request("a", "one"), request("b", "two"), request("a", "again"), request("c", "3")]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines) + "\n")
    plan = plan_of(tmp_path / "batch.jsonl", chunk_rows=1)
    assert [(e["request"], e["custom_id"]) for e in plan.errors] == [(2, "a")]
    assert "duplicate custom_id 'a'" in plan.errors[0]["message"]
    texts, ids, _ = read_all(plan)
    assert texts == ["one", "two", "3"] and ids == ["a", "b", "c"]


def test_openai_chunks_are_hashed_too(tmp_path):
    body = {"model": "m", "input": "text"}
    lines = [
        json.dumps({"custom_id": str(i), "method": "POST", "url": "/v1/embeddings", "body": body})
        for i in range(50)
    ]
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n")
    plan = plan_of(path, chunk_rows=7)
    data = path.read_bytes()
    assert [int(c["hash"]) for c in plan.chunks] == [
        pinning.digest(data[int(c["start"]) : int(c["stop"])]) for c in plan.chunks
    ]
    assert np.all(plan.chunks["hash"] != 0)


def test_rows_appended_while_the_scan_runs_are_outside_the_job(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("".join(f"row {i}\n" for i in range(50)))
    real = pinning.snapshot

    def snapshot_then_append(url: str) -> dict:
        taken = real(url)
        with open(url, "a") as fh:  # a writer appends between the snapshot and the read
            fh.write("appended during the scan\n")
        return taken

    monkeypatch.setattr(pinning, "snapshot", snapshot_then_append)
    plan = plan_of(path, chunk_rows=8)
    assert plan.rows == 50 and int(plan.chunks[-1]["stop"]) == plan.files[0]["size"]
    assert read_all(plan)[0] == [f"row {i}" for i in range(50)]
