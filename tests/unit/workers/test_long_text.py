"""``long_text=mean``'s averaging (workers/serving/long_text.py)."""

from __future__ import annotations

import numpy as np

from workers.serving.long_text import mean_of_windows, window_texts


def test_mean_of_windows_weights_by_tokens_and_renormalizes():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]], dtype=np.float32)
    weights = np.array([3, 1, 7], dtype=np.int32)
    # The first text has two windows (weights 3 and 1), the second one
    raw = mean_of_windows(vectors, weights, [2, 1], normalize=False)
    np.testing.assert_allclose(raw, [[0.75, 0.25], [3.0, 4.0]], rtol=1e-6)
    unit = mean_of_windows(vectors, weights, [2, 1], normalize=True)
    np.testing.assert_allclose(unit[0], np.array([3.0, 1.0]) / np.sqrt(10.0), rtol=1e-6)
    np.testing.assert_allclose(unit[1], [0.6, 0.8], rtol=1e-6)
    assert unit.dtype == np.float32


def test_window_texts_cut_each_text_at_its_spans():
    assert window_texts(["abcdef", "xy"], [[(0, 4), (2, 6)], [(0, 2)]]) == [
        "abcd",
        "cdef",
        "xy",
    ]
