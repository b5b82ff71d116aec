import numpy as np
import pytest

from tasks.contract.chunking import estimate_tokens, plan_chunks


def _chunks(texts, **kw):
    order, bounds = plan_chunks(texts, **kw)
    return order, [order[bounds[i] : bounds[i + 1]].tolist() for i in range(len(bounds) - 1)]


def test_every_row_lands_in_exactly_one_chunk():
    texts = [("x" * (i * 37 % 900)) or "y" for i in range(1000)]
    order, chunks = _chunks(texts, max_tokens=2048, max_texts=64)
    assert sorted(r for c in chunks for r in c) == list(range(1000))
    assert sorted(order.tolist()) == list(range(1000))


def test_chunks_are_sorted_longest_first_and_stay_under_the_token_budget():
    texts = ["word " * n for n in range(1, 400)]
    tokens = estimate_tokens(texts)
    _, chunks = _chunks(texts, max_tokens=1000, max_texts=128)
    flat = [r for c in chunks for r in c]
    assert list(tokens[flat]) == sorted(tokens[flat], reverse=True)
    for chunk in chunks:
        assert len(chunk) == 1 or len(chunk) * max(tokens[chunk]) <= 1000


def test_max_texts_caps_a_chunk_of_short_texts():
    _, chunks = _chunks(["hi"] * 100, max_tokens=10**6, max_texts=16)
    assert [len(c) for c in chunks] == [16] * 6 + [4]


def test_tokens_are_capped_at_the_model_window():
    assert estimate_tokens(["a" * 100_000], window=256)[0] == 256
    assert estimate_tokens(["é" * 10])[0] == np.ceil(20 / 4) + 2


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError):
        plan_chunks(["a"], max_tokens=0)


def test_chunks_stay_under_the_byte_bound_even_when_tokens_are_capped():
    texts = ["x" * 50_000] * 20  # each capped at 256 tokens, but 50 KB of text
    order, chunks = _chunks(texts, max_tokens=10**6, max_texts=128, max_bytes=120_000)
    assert [len(c) for c in chunks] == [2] * 10
    _, single = _chunks(["y" * 500_000], max_bytes=1000)  # one text over the bound still goes
    assert single == [[0]]


def test_under_mean_or_windows_a_chunk_is_budgeted_on_all_its_tokens():
    from tasks.contract.chunking import plan_window

    texts = ["word " * 2000] * 8  # ~2500 tokens each: 10+ windows of 256
    # truncate: each costs one window, so all 8 fit a budget of 8192 padded tokens
    assert len(_chunks(texts, max_tokens=8192, window=plan_window(None))[1]) == 1
    # mean/windows: every token is encoded, so 3 texts a chunk
    for mode in ("mean", "windows"):
        sizes = [len(c) for c in _chunks(texts, max_tokens=8192, window=plan_window(mode))[1]]
        assert sizes == [3, 3, 2]
