import json

import numpy as np
import pytest

from workers.errors import ConfigError
from workers.models.pooling import (
    POOLINGS,
    choose_pooling,
    cls_pooling,
    get_pooling,
    max_pooling,
    mean_pooling,
    normalize_rows,
)

# two texts, three positions, two dims; the second text has one padding position whose
# vector is huge, so any pooling that looks at padding gives itself away
TOKENS = np.array(
    [
        [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]],
        [[2.0, -2.0], [4.0, -6.0], [1000.0, 1000.0]],
    ],
    dtype=np.float32,
)
MASK = np.array([[1, 1, 1], [1, 1, 0]])


def test_mean_averages_real_tokens_only():
    np.testing.assert_allclose(mean_pooling(TOKENS, MASK), [[3.0, 2.0], [3.0, -4.0]])


def test_cls_takes_the_first_token():
    np.testing.assert_array_equal(cls_pooling(TOKENS, MASK), [[1.0, 2.0], [2.0, -2.0]])


def test_max_ignores_padding():
    np.testing.assert_array_equal(max_pooling(TOKENS, MASK), [[5.0, 4.0], [4.0, -2.0]])


def test_poolings_return_float32_rows():
    for fn in POOLINGS.values():
        out = fn(TOKENS.astype(np.float16), MASK)
        assert out.dtype == np.float32 and out.shape == (2, 2)


def test_normalize_rows_gives_unit_length_and_keeps_zero_rows():
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_pooling_is_chosen_by_name():
    assert get_pooling("max") is max_pooling
    with pytest.raises(ConfigError, match="unknown pooling 'median'"):
        get_pooling("median")


def test_config_beats_the_folder_which_beats_the_default(tmp_path):
    assert choose_pooling("m", None, None, [tmp_path]) == ("mean", False)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    (tmp_path / "modules.json").write_text(
        json.dumps([{"type": "sentence_transformers.models.Normalize"}])
    )
    assert choose_pooling("m", None, None, [tmp_path]) == ("cls", True)
    assert choose_pooling("m", "max", False, [tmp_path]) == ("max", False)
