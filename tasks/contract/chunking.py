"""Cutting a job into chunks: sort by length, then fill chunks under a token budget.

Sorting across the whole job groups texts of similar length, so a chunk pads little.
A chunk's cost is (texts in it) x (longest text in it), in padded tokens; chunks are
cut when that would pass ``max_tokens`` or the chunk holds ``max_texts`` texts.
Token counts are estimated from UTF-8 bytes (producers load no tokenizer); the model
still truncates each text to its own window.
"""

from __future__ import annotations

import numpy as np

#: Padded tokens one chunk may hold (texts x longest text).
DEFAULT_MAX_TOKENS = 8192
#: Texts one chunk may hold.
DEFAULT_MAX_TEXTS = 128
#: UTF-8 bytes of text one chunk may carry (workers refuse chunks over 32 MiB).
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: Tokens the model sees at most (all-MiniLM-L6-v2 truncates at 256 word pieces).
DEFAULT_WINDOW = 256
#: The window to plan with when the model sees every token of a text
#: (``long_text=mean|windows``: a long text is several windows' work).
WHOLE_TEXT = 1 << 30
#: Rough bytes per word-piece token for English text.
BYTES_PER_TOKEN = 4.0
#: Special tokens added per text ([CLS], [SEP]).
SPECIAL_TOKENS = 2
#: Seconds of model time a chunk of a cheap model should hold at least. The fleet's
#: own cost per chunk (message, delivery count, result, marks, events) is a few ms
#: (bench/fleet_cost.py); at 50 ms of encoding it stays under ~10% of a chunk.
TARGET_CHUNK_S = 0.05
#: Texts a chunk of a cheap model may hold (the wire's limit, tasks.contract.wire).
MAX_CHEAP_TEXTS = 4096
#: Chunks a job of a cheap model is cut into at least, so its chunks overlap: the
#: producer sends, workers encode and the producer gathers at the same time, and the
#: job spreads over that many worker threads.
MIN_CHUNKS = 8


def utf8_lengths(texts: list[str]) -> np.ndarray:
    """UTF-8 bytes of each text (one encode per text; ASCII texts skip it)."""
    return np.fromiter(
        (len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts),
        dtype=np.int64,
        count=len(texts),
    )


def estimate_tokens(
    texts: list[str], window: int = DEFAULT_WINDOW, lengths: np.ndarray | None = None
) -> np.ndarray:
    """Estimated tokens of each text, capped at the model window (``lengths``: UTF-8
    bytes of each text, when the caller has them)."""
    lengths = utf8_lengths(texts) if lengths is None else lengths
    est = np.ceil(lengths / BYTES_PER_TOKEN).astype(np.int64) + SPECIAL_TOKENS
    return np.minimum(est, window)


def estimate_windows(
    texts: list[str],
    window: int = DEFAULT_WINDOW,
    overlap: int = 32,
    lengths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(windows, tokens)`` of each text under ``long_text=windows|mean``, estimated from
    UTF-8 bytes as :func:`estimate_tokens` does (no tokenizer here), by the worker's rule
    (``workers.models.tokenizing.window_spans``, issue 23 item 5): ``L`` = ``window``
    less the special tokens; a text of ``n`` word pieces is one window when ``n <= L``,
    else ``1 + ceil((n - L) / (L - overlap))`` windows. Every window is encoded, so its
    tokens are the ``n`` pieces, the ``overlap`` pieces each later window repeats, and
    the special tokens of each window. (A prompt, which shortens ``L`` and goes before
    every window, is not counted: the producer does not know every model's prompts.)"""
    lengths = utf8_lengths(texts) if lengths is None else lengths
    pieces = np.ceil(lengths / BYTES_PER_TOKEN).astype(np.int64)
    length = max(1, window - SPECIAL_TOKENS)
    step = max(1, length - overlap)  # overlap >= L is refused by the worker
    longer = np.maximum(pieces - length, 0)
    windows = 1 + -(-longer // step)
    tokens = pieces + (windows - 1) * (length - step) + SPECIAL_TOKENS * windows
    return windows, tokens


def budget_for(seconds_per_text: float | None, job_texts: int | None = None) -> tuple[int, int]:
    """``(max_tokens, max_texts)`` for a model that encodes a text in ``seconds_per_text``
    (as its workers measured it; None when unknown), for a job of ``job_texts`` texts.

    Models slower than ``TARGET_CHUNK_S / DEFAULT_MAX_TEXTS`` (all transformers on CPU)
    keep the defaults; cheaper ones get chunks of ``TARGET_CHUNK_S`` of work, up to
    :data:`MAX_CHEAP_TEXTS` texts and no more than a job's :data:`MIN_CHUNKS`-th part,
    with the token budget grown in proportion.
    """
    if seconds_per_text is None or seconds_per_text <= 0:
        return DEFAULT_MAX_TOKENS, DEFAULT_MAX_TEXTS
    texts = min(MAX_CHEAP_TEXTS, int(TARGET_CHUNK_S / seconds_per_text))
    if job_texts is not None:
        texts = min(texts, -(-job_texts // MIN_CHUNKS))
    if texts <= DEFAULT_MAX_TEXTS:
        return DEFAULT_MAX_TOKENS, DEFAULT_MAX_TEXTS
    return DEFAULT_MAX_TOKENS * texts // DEFAULT_MAX_TEXTS, texts


def plan_chunks(
    texts: list[str],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_texts: int = DEFAULT_MAX_TEXTS,
    window: int = DEFAULT_WINDOW,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(order, bounds)``: ``order`` lists input rows longest first; chunk ``i``
    holds rows ``order[bounds[i]:bounds[i+1]]``."""
    if max_tokens < 1 or max_texts < 1:
        raise ValueError("max_tokens and max_texts must be positive")
    lengths = utf8_lengths(texts)
    tokens = estimate_tokens(texts, window, lengths)
    order = np.argsort(-tokens, kind="stable").astype(np.int64)
    sizes = lengths[order]
    cumulative = np.concatenate([[0], np.cumsum(sizes)])
    bounds = [0]
    start = 0
    n = len(texts)
    while start < n:
        longest = int(tokens[order[start]])  # sorted: the first text is the longest
        fit = max(1, min(max_texts, max_tokens // max(1, longest)))
        end = min(n, start + fit)
        # texts are cut at 256 tokens but may be long in bytes: keep under max_bytes
        limit = int(np.searchsorted(cumulative, cumulative[start] + max_bytes, side="right")) - 1
        start = max(start + 1, min(end, limit))
        bounds.append(start)
    return order, np.asarray(bounds, dtype=np.int64)


def plan_window(long_text: str | None) -> int:
    """The ``window`` to plan a job's chunks with: :data:`DEFAULT_WINDOW`, or
    :data:`WHOLE_TEXT` under ``long_text=mean|windows`` (every window is encoded, so a
    chunk's work is all its tokens: a chunk of long texts holds fewer of them)."""
    return DEFAULT_WINDOW if long_text is None else WHOLE_TEXT
