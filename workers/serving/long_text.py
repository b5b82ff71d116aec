"""``long_text=mean`` (``tasks.contract.options``): one vector per text from all of it.

Each text is cut into windows of the model's token window overlapping by the job's
``window_overlap`` tokens (``workers.models.tokenizing.window_spans``); every window is
encoded as its own text (with the job's prompt before it), and the text's vector is the
token-weighted mean of its windows' vectors (weights: the tokens the model saw of each
window), re-normalized when the model normalizes. A text that fits has one window: the
text itself, so its vector is the one ``truncate`` gives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workers.models.base import BaseEmbeddingModel

Spans = list[tuple[int, int]]


def window_texts(texts: list[str], spans: list[Spans]) -> list[str]:
    """The text of every window of every text, in order."""
    return [text[a:b] for text, own in zip(texts, spans, strict=True) for a, b in own]


def mean_of_windows(
    vectors: np.ndarray, weights: np.ndarray, counts: list[int], normalize: bool
) -> np.ndarray:
    """One row per text: the ``weights``-weighted mean of its ``counts[i]`` consecutive
    window rows of ``vectors``, unit length when ``normalize``."""
    out = np.zeros((len(counts), vectors.shape[1] if vectors.ndim == 2 else 0), np.float64)
    start = 0
    for row, count in enumerate(counts):
        w = weights[start : start + count].astype(np.float64)
        block = vectors[start : start + count].astype(np.float64)
        out[row] = (w[:, None] * block).sum(axis=0) / max(float(w.sum()), 1.0)
        start += count
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)


class MeanOfWindows:
    """The windows of one chunk's texts, and the encode that averages them."""

    def __init__(
        self, model: BaseEmbeddingModel, texts: list[str], prompt: str, overlap: int
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.spans = dict(zip(texts, model.window_spans(texts, prompt, overlap), strict=True))

    def columns(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Per text, ``tokens`` the model saw over all its windows and ``truncated``
        (a window the model still cut: only where re-tokenizing a window's text grew it)."""
        own = [self.spans[t] for t in texts]
        tokens, truncated = self.model.token_counts(window_texts(texts, own), self.prompt)
        bounds = np.cumsum([0] + [len(s) for s in own])
        return {
            "tokens": np.add.reduceat(tokens, bounds[:-1]).astype(np.int32)
            if len(texts)
            else np.zeros(0, np.int32),
            "truncated": np.logical_or.reduceat(truncated, bounds[:-1])
            if len(texts)
            else np.zeros(0, bool),
        }

    def encoder(
        self, encode: Callable[[list[str]], np.ndarray]
    ) -> Callable[[list[str]], np.ndarray]:
        """``encode`` of window texts turned into an encode of whole texts (the mean)."""

        def encode_mean(batch: list[str]) -> np.ndarray:
            own = [self.spans[t] for t in batch]
            pieces = window_texts(batch, own)
            vectors = encode(pieces)
            weights, _ = self.model.token_counts(pieces, self.prompt)
            return mean_of_windows(vectors, weights, [len(s) for s in own], self.model.normalizes)

        return encode_mean


class WindowRows:
    """``long_text=windows``: every window of one chunk's texts as a text of its own."""

    def __init__(
        self, model: BaseEmbeddingModel, texts: list[str], prompt: str, overlap: int
    ) -> None:
        self.model = model
        self.prompt = prompt
        spans = model.window_spans(texts, prompt, overlap)
        #: The window texts, in order: the texts the model encodes.
        self.texts = window_texts(texts, spans)
        self.source = np.repeat(np.arange(len(texts), dtype=np.int64), [len(s) for s in spans])
        self.window = np.concatenate(
            [np.arange(len(s), dtype=np.int32) for s in spans] or [np.zeros(0, np.int32)]
        )
        flat = [span for own in spans for span in own]
        self.char_start = np.array([a for a, _ in flat], dtype=np.int64)
        self.char_end = np.array([b for _, b in flat], dtype=np.int64)

    def columns(self) -> dict[str, np.ndarray]:
        """Per window: ``source_row`` (the text's index in the chunk; the dataset task
        turns it into ``row``), ``window``, ``char_start``, ``char_end``, ``tokens`` and
        ``truncated``."""
        tokens, truncated = self.model.token_counts(self.texts, self.prompt)
        return {
            "source_row": self.source,
            "window": self.window,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "tokens": tokens,
            "truncated": truncated,
        }
