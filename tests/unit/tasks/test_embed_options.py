"""Embedding options and the pure vector functions (tasks/contract/options.py, vectors.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.contract.errors import InvalidRequest, UsageError
from tasks.contract.options import EmbedOptions, check_for_model
from tasks.contract.vectors import from_base64, to_base64, truncate_dimensions
from tasks.contract.wire import validate_request


def test_truncate_dimensions_keeps_the_head_and_renormalizes_only_when_asked():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((5, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[4] = 0.0
    cut = truncate_dimensions(vectors, 4, normalize=True)
    assert cut.shape == (5, 4) and cut.dtype == np.float32
    head = vectors[:4, :4]
    np.testing.assert_allclose(
        cut[:4], head / np.linalg.norm(head, axis=1, keepdims=True), rtol=1e-6
    )
    assert not cut[4].any()  # a zero row stays zero, no NaN
    np.testing.assert_array_equal(truncate_dimensions(vectors, 4, normalize=False), vectors[:, :4])
    assert truncate_dimensions(vectors, None, True) is vectors
    for bad in (0, 17, True, 2.5):
        with pytest.raises(ValueError, match="dimensions must be an integer in 1..16"):
            truncate_dimensions(vectors, bad, True)


def test_base64_is_little_endian_float32_as_openai_sends_it():
    vector = np.array([1.0, -2.5, 0.125], dtype=np.float32)
    text = to_base64(vector)
    assert text == "AACAPwAAIMAAAAA+"  # bytes of <f4 1.0, -2.5, 0.125
    np.testing.assert_array_equal(from_base64(text), vector)


def test_options_travel_as_a_flat_map_of_what_differs_from_the_defaults():
    assert EmbedOptions().to_wire() == {}
    options = EmbedOptions.from_user(dimensions=128)
    assert options.to_wire() == {"dimensions": 128}
    assert EmbedOptions.from_json(options.to_json()) == options
    assert EmbedOptions.from_json(None) == EmbedOptions()
    with pytest.raises(UsageError, match="^dimensions must be a positive integer, got -3$"):
        EmbedOptions.from_user(dimensions=-3)


def test_a_chunk_with_a_bad_option_value_is_refused_naming_it():
    validate_request("j", 0, "m", ["a"], {"dimensions": 64})
    with pytest.raises(InvalidRequest, match="options.dimensions must be a positive integer"):
        validate_request("j", 0, "m", ["a"], {"dimensions": "64"})


def test_check_for_model_names_the_model_and_what_it_offers():
    facts = {"dimension": 384, "dimensions_supported": [64, 128]}
    check_for_model(EmbedOptions(dimensions=128), "m", facts)
    check_for_model(EmbedOptions(dimensions=384), "m", facts)
    check_for_model(EmbedOptions(dimensions=100), "m", {})  # unknown: the worker checks
    with pytest.raises(UsageError, match="larger than model 'm''s dimension 384"):
        check_for_model(EmbedOptions(dimensions=385), "m", facts)
    with pytest.raises(UsageError, match=r"dimensions_supported: \[64, 128\]"):
        check_for_model(EmbedOptions(dimensions=100), "m", facts)


def test_result_columns_round_trip_and_bad_ones_are_refused():
    from tasks.contract.wire import pack_embeddings, unpack_columns

    vectors = np.zeros((3, 2), dtype=np.float32)
    columns = {"tokens": np.array([5, 256, 7]), "truncated": np.array([False, True, False])}
    result = pack_embeddings(vectors, "m", columns=columns)
    back = unpack_columns(result)
    assert back["tokens"].dtype == np.int32 and back["tokens"].tolist() == [5, 256, 7]
    assert back["truncated"].tolist() == [False, True, False]
    assert unpack_columns(pack_embeddings(vectors, "m")) == {}
    bad = {**result, "columns": {"tokens": {"dtype": "<i4", "data": b"\0\0\0\0"}}}
    with pytest.raises(InvalidRequest, match="does not hold 3 values"):
        unpack_columns(bad)
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        pack_embeddings(vectors, "m", columns={"tokens": np.array([1, 2])})


def test_quantize_equals_sentence_transformers_quantize_embeddings():
    from sentence_transformers.util.quantization import quantize_embeddings

    from tasks.contract.vectors import calibration_ranges, quantize

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((50, 24)).astype(np.float32)
    calibration = rng.standard_normal((200, 24)).astype(np.float32)
    ranges = calibration_ranges(calibration)
    for precision in ("int8", "uint8"):
        want = quantize_embeddings(vectors, precision, calibration_embeddings=calibration)
        got = quantize(vectors, precision, ranges)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for precision in ("binary", "ubinary"):
        np.testing.assert_array_equal(
            quantize(vectors, precision), quantize_embeddings(vectors, precision)
        )
    with pytest.raises(ValueError, match="int8 needs \\(2, 24\\) ranges"):
        quantize(vectors, "int8")
    with pytest.raises(UsageError, match="quantize must be one of int8, uint8, binary, ubinary"):
        EmbedOptions.from_user(quantize="int4")


def test_long_text_options_default_to_truncate_and_bad_values_are_named():
    # truncate is today's behaviour: it travels as nothing
    assert EmbedOptions.from_user(long_text="truncate").to_wire() == {}
    mean = EmbedOptions.from_user(long_text="mean", window_overlap=16)
    assert mean.to_wire() == {"long_text": "mean", "window_overlap": 16}
    assert EmbedOptions.from_json(mean.to_json()) == mean
    assert EmbedOptions(long_text="mean").overlap == 32
    with pytest.raises(UsageError, match="long_text must be one of truncate, mean, windows, got"):
        EmbedOptions.from_user(long_text="x")
    assert EmbedOptions.from_user(long_text="windows").to_wire() == {"long_text": "windows"}
    for bad in (-1, True, 2.5):
        with pytest.raises(InvalidRequest, match="options.window_overlap must be"):
            EmbedOptions.from_wire({"long_text": "mean", "window_overlap": bad})


def test_long_text_windows_or_mean_is_refused_for_a_model_that_cannot_cut_windows():
    facts = {"windows": False, "type": "sagemaker"}
    for mode in ("windows", "mean"):
        with pytest.raises(UsageError, match="model 'remote' \\(type sagemaker\\) has none"):
            check_for_model(EmbedOptions(long_text=mode), "remote", facts)
    check_for_model(EmbedOptions(), "remote", facts)  # truncate is fine
    check_for_model(EmbedOptions(long_text="windows"), "m", {"windows": True})
    check_for_model(EmbedOptions(long_text="windows"), "m", {})  # unknown: the worker checks


def test_a_window_overlap_without_windows_is_refused_naming_both() -> None:
    for long_text in (None, "truncate"):
        with pytest.raises(UsageError, match="window_overlap=16 needs long_text=mean or windows"):
            EmbedOptions.from_user(long_text=long_text, window_overlap=16)
    assert EmbedOptions.from_user(long_text="windows", window_overlap=16).overlap == 16
