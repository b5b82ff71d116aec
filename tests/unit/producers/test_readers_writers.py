import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producers.errors import InputError, UsageError
from producers.writers import read_embeddings, write_embeddings
from tasks.io.readers import check_texts, read_rows, read_texts


def test_each_input_format(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "x": 1}\n')
    (tmp_path / "a.csv").write_text('text,other\none,1\n"two, three",2\n')
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    pq.write_table(pa.table({"body": ["one", "two"]}), tmp_path / "a.parquet")
    # one rule: every record is a row; an empty text (or a blank .txt line) is the row "";
    # a blank jsonl line is no record (as every jsonl reader treats it)
    assert read_texts(tmp_path / "a.jsonl") == ["one", "two"]
    assert read_texts(tmp_path / "a.csv") == ["one", "two, three"]
    assert read_texts(tmp_path / "a.txt") == ["one", "", "two"]
    assert read_texts(tmp_path / "a.parquet", field="body") == ["one", "two"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.jsonl", '{"text": "ok"}\n{"text": 3}\n', "line 2: field 'text' is int"),
        ("a.jsonl", '{"text": null}\n', "line 1: field 'text' is null"),
        ("a.jsonl", '{"text": "ok"}\nnot json\n', ":2: invalid JSON"),
        ("a.jsonl", "", "holds no texts"),
        ("a.csv", "text\n", "holds no texts"),
        ("a.csv", "body,other\nok,1\n", "no column 'text'; columns"),
        ("a.jsonl", '{"text": "ok"}\n{"text": "\\ud800"}\n', "line 2: field 'text' holds a lone"),
        ("a.csv", "text\n" + "x" * 140_000 + "\n", "record 2: a cell is over 128 KiB"),
        ("a.xml", "<x/>", "unsupported input format"),
    ],
)
def test_bad_input_names_what_is_wrong(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        read_texts(path)


def test_empty_texts_keep_their_rows(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a", "id": 7}\n{"text": "", "id": 8}\n')
    (tmp_path / "a.csv").write_text("id,text\n1,a\n2,\n3,c\n")
    got = read_rows(tmp_path / "a.jsonl")
    assert (got.texts, got.ids) == (["a", ""], ["7", "8"])
    got = read_rows(tmp_path / "a.csv")
    assert (got.texts, got.ids) == (["a", "", "c"], ["1", "2", "3"])


def test_not_utf8_is_one_line(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"fine\nbad \xff here\n")
    with pytest.raises(InputError, match="line 2 is not UTF-8"):
        read_texts(tmp_path / "a.txt")


def test_parquet_null_row_is_named(tmp_path):
    pq.write_table(pa.table({"text": ["ok", None]}), tmp_path / "a.parquet")
    with pytest.raises(InputError, match="row 2"):
        read_texts(tmp_path / "a.parquet")


def test_check_texts():
    assert check_texts(["a"]) == ["a"]
    for bad in ([], "abc", ["a", None], [1], ["\ud800"]):
        with pytest.raises(InputError):
            check_texts(bad)


@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".jsonl"])
def test_writers_round_trip(tmp_path, suffix):
    vectors = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    path = write_embeddings(tmp_path / f"out{suffix}", vectors)
    np.testing.assert_allclose(read_embeddings(path), vectors, rtol=1e-6)


def test_unknown_output_format(tmp_path):
    with pytest.raises(UsageError, match="unsupported output format"):
        write_embeddings(tmp_path / "out.csv", np.zeros((1, 2), dtype=np.float32))


def test_an_output_name_without_a_type_suggests_a_folder(tmp_path):
    with pytest.raises(UsageError, match=r"or .*ds4/ for a dataset job"):
        write_embeddings(tmp_path / "ds4", np.zeros((1, 2), dtype=np.float32))


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_list_outputs_name_the_row_column_row_and_old_index_files_still_read(tmp_path, suffix):
    import json

    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    path = write_embeddings(tmp_path / f"out{suffix}", vectors)
    if suffix == ".parquet":
        assert pq.read_table(path).column_names[:2] == ["row", "embedding"]
        old = pa.table({"index": [2, 0, 1], "embedding": [[4.0, 5.0], [0.0, 1.0], [2.0, 3.0]]})
        pq.write_table(old, tmp_path / "old.parquet")
    else:
        assert list(json.loads(path.read_text().splitlines()[0])) == ["row", "embedding"]
        (tmp_path / "old.jsonl").write_text(
            "".join(
                json.dumps({"index": i, "embedding": vectors[i].tolist()}) + "\n" for i in (2, 0, 1)
            )
        )
    np.testing.assert_array_equal(read_embeddings(tmp_path / f"old{suffix}"), vectors)
