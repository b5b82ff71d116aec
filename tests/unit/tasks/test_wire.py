import msgpack
import numpy as np
import pytest

from tasks.contract.errors import InvalidRequest
from tasks.contract.wire import pack_embeddings, unpack_embeddings, validate_request
from tasks.routing import queue_for, route_task


def test_result_round_trips_through_msgpack_with_little_overhead():
    vectors = np.random.default_rng(1).standard_normal((32, 384)).astype(np.float32)
    payload = msgpack.packb(pack_embeddings(vectors, model="m", version="v1"), use_bin_type=True)
    back = unpack_embeddings(msgpack.unpackb(payload, raw=False))
    np.testing.assert_array_equal(back, vectors)
    assert len(payload) <= vectors.nbytes * 1.05


def test_corrupt_results_are_refused():
    good = pack_embeddings(np.zeros((2, 3), dtype=np.float32), model="m")
    with pytest.raises(InvalidRequest):
        unpack_embeddings({**good, "data": good["data"][:-1]})
    with pytest.raises(InvalidRequest):
        unpack_embeddings({**good, "dtype": "<f8"})
    with pytest.raises(InvalidRequest):
        unpack_embeddings([1, 2])


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", 0, "m", ["a"], None), "job_id"),
        (("j", -1, "m", ["a"], None), "index"),
        (("j", True, "m", ["a"], None), "index"),
        (("j", 0, "bad model!", ["a"], None), "model"),
        (("j", 0, "m", [], None), "texts"),
        (("j", 0, "m", "abc", None), "texts"),
        (("j", 0, "m", ["a", 3], None), r"texts\[1\]"),
        (("j", 0, "m", ["a"], {"evil": 1}), "unknown option"),
        (("j", 0, "m", ["a"], [1]), "options"),
    ],
)
def test_malformed_requests_name_the_field(args, field):
    with pytest.raises(InvalidRequest, match=field):
        validate_request(*args)


def test_overlong_texts_are_cut():
    _, _, _, texts, _ = validate_request("j", 0, "m", ["x" * 200_000], None)
    assert len(texts[0]) == 100_000


def test_routing_sends_chunks_to_their_model_queue():
    assert queue_for("mini") == "embed.mini"
    assert route_task("embedfleet.embed_chunk", (), {"model": "mini"}, {}) == {
        "queue": "embed.mini"
    }
    assert route_task("other", (), {}, {}) is None


def test_long_texts_are_cut_and_others_kept_as_sent():
    from tasks.contract.wire import MAX_CHARS_PER_TEXT

    long = "é" * (MAX_CHARS_PER_TEXT + 5)
    _, _, _, texts, _ = validate_request("j", 0, "m", ["short", long, "ascii"], None)
    assert texts == ["short", long[:MAX_CHARS_PER_TEXT], "ascii"]
    same = ["a", "b"]
    assert validate_request("j", 0, "m", same, None)[3] is same  # no copy when none is long


def test_chunk_bytes_count_utf8_not_characters():
    validate_request("j", 0, "m", ["abcde", "fghij"], None, max_chunk_bytes=10)  # 10 bytes
    with pytest.raises(InvalidRequest, match="more than 10 bytes"):
        # 8 characters, 11 bytes
        validate_request("j", 0, "m", ["abcde", "ééé"], None, max_chunk_bytes=10)
