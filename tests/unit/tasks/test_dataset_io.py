"""The scan cuts inputs into ranges; reading every range gives every row once, in order."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.contract.errors import InputError
from tasks.io import parts, ranges, scan, sources
from tasks.io.readers import read_rows


def read_all(plan: scan.Plan) -> tuple[list[str], list[str | None] | None, list[int]]:
    spec = {
        "format": plan.format,
        "text_field": plan.text_field,
        "id_field": plan.id_field,
        "openai_model": plan.openai_model,
    }
    texts: list[str] = []
    ids: list[str | None] | None = [] if plan.id_field else None
    firsts = []
    for chunk in plan.chunks:
        got = ranges.read_chunk(spec, plan.files[int(chunk["file"])], chunk)
        assert int(chunk["first_row"]) == len(texts)
        firsts.append(int(chunk["first_row"]))
        texts += got.texts
        if ids is not None:
            assert got.ids is not None
            ids += got.ids
    return texts, ids, firsts


def corpus(n: int) -> list[str]:
    return [f"row {i} " * (i % 7) for i in range(n)]  # every 7th text is empty


@pytest.mark.parametrize("chunk_rows", [1, 3, 64, 10_000])
def test_txt_every_line_is_a_row(tmp_path, chunk_rows):
    texts = corpus(200)
    (tmp_path / "a.txt").write_text("\n".join(texts) + "\n")
    plan = scan.plan(sources.resolve(str(tmp_path / "a.txt")), chunk_rows=chunk_rows)
    got, ids, _ = read_all(plan)
    assert got == texts and ids is None and plan.rows == 200
    assert all(int(c["rows"]) <= chunk_rows for c in plan.chunks)


def test_jsonl_ids_and_byte_limit(tmp_path):
    texts = corpus(300)
    with (tmp_path / "a.jsonl").open("w") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"custom_id": f"r{i}", "text": t}) + "\n")
    plan = scan.plan(sources.resolve(str(tmp_path / "a.jsonl")), chunk_rows=50, max_bytes=700)
    got, ids, _ = read_all(plan)
    assert got == texts and ids == [f"r{i}" for i in range(300)]
    assert plan.id_field == "custom_id"
    sizes = plan.chunks["stop"] - plan.chunks["start"]
    assert (sizes <= 700).all() and plan.chunks.size > 300 // 50


def test_csv_quoted_newlines_and_several_files(tmp_path):
    texts = [
        f'line {i}\nwith "quotes", and commas' if i % 3 == 0 else f"plain {i}" for i in range(90)
    ]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in range(3):
        import csv

        with (folder / f"p{f}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "text"])
            for i in range(30 * f, 30 * f + 30):
                writer.writerow([i, texts[i]])
    (folder / "_SUCCESS").write_text("")
    plan = scan.plan(sources.resolve(str(folder) + "/"), chunk_rows=7)
    got, ids, _ = read_all(plan)
    assert got == texts and ids == [str(i) for i in range(90)]


def test_parquet_row_groups(tmp_path):
    texts = corpus(250)
    pq.write_table(
        pa.table({"text": texts, "id": list(range(250))}), tmp_path / "a.parquet", row_group_size=60
    )
    plan = scan.plan(sources.resolve(str(tmp_path / "a.parquet")), chunk_rows=25)
    got, ids, _ = read_all(plan)
    assert got == texts and ids == [str(i) for i in range(250)]


def test_the_same_rows_as_a_small_job(tmp_path):
    # blank and whitespace-only jsonl lines are no records; an empty string is a row
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n\n \t\r\n{"text": ""}\n{"text": "d"}\n\n')
    plan = scan.plan(sources.resolve(str(tmp_path / "a.jsonl")), chunk_rows=2)
    assert read_all(plan)[0] == read_rows(tmp_path / "a.jsonl").texts == ["a", "", "d"]


def test_openai_requests_flatten_and_refusals(tmp_path):
    lines = [
        {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "m", "input": "one"},
        },
        {
            "custom_id": "b",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "input": "x"},
        },
        {
            "custom_id": "c",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "m", "input": ["two", "three"]},
        },
    ]
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    plan = scan.plan(sources.resolve(str(tmp_path / "batch.jsonl")), chunk_rows=1)
    assert plan.format == "openai" and plan.openai_model == "m"
    assert [e["custom_id"] for e in plan.errors] == ["b"]
    texts, ids, _ = read_all(plan)
    assert texts == ["one", "two", "three"] and ids == ["a", "c", "c"]


def test_bad_rows_are_named_by_the_worker_read(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n{"text": 5}\n')
    plan = scan.plan(sources.resolve(str(tmp_path / "a.jsonl")))
    with pytest.raises(InputError, match="line 2: field 'text' is int"):
        read_all(plan)


def test_sources_refuse_what_they_cannot_use(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        sources.resolve(str(tmp_path / "nope"))
    (tmp_path / "a.txt").write_text("x\n")
    (tmp_path / "b.csv").write_text("text\nx\n")
    with pytest.raises(InputError, match="several or unknown formats"):
        sources.resolve(str(tmp_path))


def test_part_bytes_schema(tmp_path):
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    data = parts.part_bytes(10, vectors, ["a", None, "c"])
    parts.put(str(tmp_path) + "/", parts.part_name(2), data)
    table = pq.read_table(io.BytesIO((tmp_path / "part-000002.parquet").read_bytes()))
    assert table.column("row").to_pylist() == [10, 11, 12]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 4)
    assert table.column("id").to_pylist() == ["a", None, "c"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("block", [1, 7, 64])
def test_record_ends_carry_across_blocks(tmp_path, monkeypatch, block):
    # Given blocks far smaller than a record, so records, quotes and chunks span blocks
    real = sources.stream
    monkeypatch.setattr(
        sources, "stream", lambda url, block_=block, pin=None: real(url, block_, pin)
    )
    import csv

    texts = [f'cell {i}\n"quoted", ' * (i % 4) for i in range(80)]
    with (tmp_path / "a.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(80)) + "no newline")
    for name, expected in (
        ("a.csv", texts),
        ("a.txt", [f"line {i}" for i in range(80)] + ["no newline"]),
    ):
        plan = scan.plan(sources.resolve(str(tmp_path / name)), chunk_rows=9, max_bytes=120)
        assert read_all(plan)[0] == expected
