"""A list job's windows put back in input order (``producers.windows``), and written
beside their row index (``producers.writers``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from producers.windows import WindowPieces
from producers.writers import read_embeddings, rows_path, write_embeddings
from tasks.contract.errors import InvalidRequest
from tasks.contract.wire import pack_embeddings, unpack_columns, unpack_embeddings


def chunk_result(windows_per_text: list[int], first_value: float) -> dict:
    """A chunk result as a worker packs it: texts numbered in the chunk, a vector per
    window whose first value is ``first_value + 10 * text + window``."""
    source = np.repeat(np.arange(len(windows_per_text)), windows_per_text)
    window = np.concatenate([np.arange(k) for k in windows_per_text])
    vectors = np.zeros((source.size, 3), np.float32)
    vectors[:, 0] = first_value + 10 * source + window
    columns = {
        "source_row": source,
        "window": window,
        "char_start": window * 100,
        "char_end": window * 100 + 150,
        "tokens": np.full(source.size, 7),
        "truncated": np.zeros(source.size, bool),
    }
    return pack_embeddings(vectors, model="m", columns=columns)


def test_windows_come_back_in_input_order_whatever_order_chunks_arrive_in():
    # Given a job of 4 input rows planned as chunk 0 = rows [2, 0], chunk 1 = rows [3, 1]
    pieces = WindowPieces("job", 4)
    plans = {0: np.array([2, 0]), 1: np.array([3, 1])}
    results = {0: chunk_result([3, 1], 0.0), 1: chunk_result([1, 2], 1000.0)}
    # When the chunks arrive last first
    for index in (1, 0):
        result = results[index]
        pieces.add(index, plans[index], unpack_embeddings(result), unpack_columns(result))
    vectors, columns = pieces.assemble(lambda n, d: np.zeros((n, d), np.float32))
    # Then rows are in input order, each row's windows in order
    assert columns["row"].tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert columns["window"].tolist() == [0, 0, 1, 0, 1, 2, 0]
    # row 0 was text 1 of chunk 0; row 1 text 1 of chunk 1; row 2 text 0 of chunk 0 ...
    assert vectors[:, 0].tolist() == [10, 1010, 1011, 0, 1, 2, 1000]
    assert columns["char_start"].tolist() == [0, 0, 100, 0, 100, 200, 0]
    assert columns["char_end"].dtype == np.int64 and columns["tokens"].dtype == np.int32


def test_a_row_whose_chunk_is_missing_gets_one_nan_placeholder():
    pieces = WindowPieces("job", 3)
    result = chunk_result([2], 5.0)
    pieces.add(0, np.array([1]), unpack_embeddings(result), unpack_columns(result))
    vectors, columns = pieces.assemble(lambda n, d: np.zeros((n, d), np.float32))
    assert columns["row"].tolist() == [0, 1, 1, 2]
    assert np.isnan(vectors[[0, 3]]).all() and not np.isnan(vectors[[1, 2]]).any()
    assert columns["tokens"].tolist() == [0, 7, 7, 0]


def test_quantized_windows_keep_their_dtype_and_a_missing_row_is_zero():
    vectors = np.array([[1, -2], [3, -4]], np.int8)
    columns = unpack_columns(chunk_result([2], 0.0))
    pieces = WindowPieces("job", 2)
    pieces.add(0, np.array([1]), vectors, columns)
    out, got = pieces.assemble(lambda n, d: pytest.fail("float32 outputs only are allocated"))
    assert out.dtype == np.int8 and out.tolist() == [[0, 0], [1, -2], [3, -4]]
    assert got["row"].tolist() == [0, 1, 1]


def test_a_result_without_windows_is_refused_naming_the_chunk():
    pieces = WindowPieces("job7", 1)
    plain = pack_embeddings(np.zeros((1, 3), np.float32), model="m")
    with pytest.raises(InvalidRequest, match="job job7: chunk 4 did not return windows"):
        pieces.add(4, np.array([0]), unpack_embeddings(plain), unpack_columns(plain))


def test_a_result_naming_a_text_outside_its_chunk_is_refused():
    pieces = WindowPieces("job", 2)
    result = chunk_result([1, 1], 0.0)
    with pytest.raises(InvalidRequest, match="outside its 1 texts"):
        pieces.add(0, np.array([0]), unpack_embeddings(result), unpack_columns(result))


@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".jsonl"])
def test_windows_are_written_with_their_row_index(tmp_path, suffix):
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    columns = {
        "row": np.array([0, 0, 1, 2]),
        "window": np.array([0, 1, 0, 0], np.int32),
        "char_start": np.array([0, 90, 0, 0]),
        "char_end": np.array([120, 200, 5, 7]),
        "tokens": np.array([256, 80, 4, 5], np.int32),
        "truncated": np.zeros(4, bool),
    }
    path = write_embeddings(tmp_path / f"out{suffix}", vectors, ["a", "a", "b", "c"], columns)
    np.testing.assert_array_equal(read_embeddings(path), vectors)
    if suffix == ".npy":
        assert rows_path(path) == tmp_path / "out.rows.npy"
        assert np.load(rows_path(path)).tolist() == [0, 0, 1, 2]
    elif suffix == ".jsonl":
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [(r["row"], r["window"], r["id"]) for r in lines] == [
            (0, 0, "a"), (0, 1, "a"), (1, 0, "b"), (2, 0, "c"),
        ]  # fmt: skip
        assert lines[1]["char_start"] == 90 and lines[1]["tokens"] == 80
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        assert table.column("row").to_pylist() == [0, 0, 1, 2]
        assert table.column("char_end").to_pylist() == [120, 200, 5, 7]


def test_a_plain_npy_written_over_a_windows_one_removes_its_stale_row_index(tmp_path, caplog):
    # Given out.npy written by a windows job, with out.rows.npy beside it
    out = tmp_path / "out.npy"
    windows = {"row": np.array([0, 0, 1])}
    write_embeddings(out, np.zeros((3, 2), np.float32), columns=windows)
    assert rows_path(out).exists()
    # When a plain job writes out.npy again
    with caplog.at_level("WARNING", logger="producers.writers"):
        write_embeddings(out, np.ones((3, 2), np.float32))
    # Then no row index is left to pair with the new vectors, and the log says so
    assert not rows_path(out).exists()
    assert f"event=stale_rows_removed removed={rows_path(out)}" in caplog.text
    # and a plain write with no stale file says nothing
    caplog.clear()
    write_embeddings(out, np.ones((3, 2), np.float32))
    assert "stale_rows_removed" not in caplog.text
