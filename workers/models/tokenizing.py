"""Tokenizer loading and the token window, shared by the ``onnx`` and ``bert`` wrappers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workers.errors import ModelLoadError

#: Files that mark a folder as holding a Hugging Face tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
#: Token window when neither the config, the folder nor the tokenizer gives one.
FALLBACK_WINDOW = 512  # tokens


def has_tokenizer(folder: Path) -> bool:
    """True when ``folder`` holds tokenizer files."""
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(model: str, folder: Path) -> Any:
    """A fast (Rust ``tokenizers``) tokenizer from ``folder``, never downloading."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
    except Exception as exc:
        raise ModelLoadError(
            f"model {model!r}: cannot load the tokenizer in {folder}: {exc}"
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"model {model!r}: the tokenizer in {folder} has no fast version")
    return tokenizer


def token_window(configured: int | None, folders: Iterable[Path], tokenizer: Any) -> int:
    """Tokens a text is truncated to: the config's ``max_seq_length``, else the
    sentence-transformers ``max_seq_length`` of the folder (what the model was trained
    with), else the smaller of the tokenizer's and the position table's limits."""
    if configured:
        return configured
    folders = list(folders)
    for folder in folders:
        value = _json_field(folder / "sentence_bert_config.json", "max_seq_length")
        if value:
            return value
    limits = []
    model_max = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if 0 < model_max < 1_000_000:
        limits.append(model_max)
    for folder in folders:
        positions = _json_field(folder / "config.json", "max_position_embeddings")
        if positions:
            limits.append(positions)
            break
    return min(limits) if limits else FALLBACK_WINDOW


def _json_field(path: Path, field: str) -> int | None:
    try:
        value = json.loads(path.read_text()).get(field)
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int | float) and value > 0 else None


def count_tokens(tokenizer: Any, texts: list[str], window: int) -> tuple[Any, Any]:
    """``(tokens, truncated)`` of each text as a model with this tokenizer and token
    ``window`` sees it: word pieces with special tokens, capped at the window (int32),
    and whether the text ran past it (bool)."""
    import numpy as np

    if not texts:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=bool)
    ids = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    full = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(texts))
    return np.minimum(full, window).astype(np.int32), full > window


def estimate_counts(texts: list[str], window: int) -> tuple[Any, Any]:
    """:func:`count_tokens` for a type with no tokenizer on disk: the producer's byte
    estimate (``tasks.contract.chunking``)."""
    import numpy as np

    from tasks.contract.chunking import estimate_tokens

    full = estimate_tokens(texts, window=1 << 30)
    return np.minimum(full, window).astype(np.int32), full > window


def window_spans(
    tokenizer: Any, texts: list[str], prompt: str, window: int, overlap: int, model: str
) -> list[list[tuple[int, int]]]:
    """Per text, the ``(char_start, char_end)`` of each window ``long_text=mean`` encodes.

    ``L`` = ``window`` less the special tokens and the prompt's word pieces (the prompt
    is put before every window). A text of ``n`` word pieces has one window (the whole
    text) when ``n <= L``, else ``1 + ceil((n - L) / (L - overlap))`` windows of ``L``
    word pieces starting every ``L - overlap`` pieces (the last may be shorter), each
    the text between its first piece's start and its last piece's end (tokenizer
    offsets). :class:`InvalidRequest` when ``overlap > L // 2``.
    """
    from tasks.contract.errors import InvalidRequest

    specials = int(tokenizer.num_special_tokens_to_add(pair=False))
    prompt_pieces = (
        len(tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
        if prompt
        else 0
    )
    length = window - specials - prompt_pieces
    if overlap > length // 2:
        # at most half: every word piece is then encoded at most twice (an overlap of
        # L - 1 would encode a text of n pieces as n - L + 1 windows of L)
        raise InvalidRequest(
            f"window_overlap={overlap} is more than half the window of model {model!r}: "
            f"at most {max(length // 2, 0)} of its {max(length, 0)} word pieces (its {window} "
            f"tokens less special tokens and the prompt)"
        )
    if not texts:
        return []
    offsets = tokenizer(
        texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )["offset_mapping"]
    step = length - overlap
    out = []
    for text, spans in zip(texts, offsets, strict=True):
        n = len(spans)
        if n <= length:
            out.append([(0, len(text))])
            continue
        count = 1 + -(-(n - length) // step)
        out.append(
            [
                (int(spans[s][0]), int(spans[min(s + length, n) - 1][1]))
                for s in (i * step for i in range(count))
            ]
        )
    return out


class HFTokenizerCounts:
    """``token_counts`` and ``window_spans`` of a wrapper that holds a Hugging Face fast
    tokenizer (``self.tokenizer``, guarded by ``self._tokenizer_lock``) and its token
    window (``self.window``): one copy for the bert and onnx wrappers."""

    name: str
    tokenizer: Any
    window: int
    _tokenizer_lock: Any

    def token_counts(self, sentences: list[str], prompt: str = "") -> tuple[Any, Any]:
        texts = [prompt + s for s in sentences] if prompt else sentences
        with self._tokenizer_lock:
            return count_tokens(self.tokenizer, texts, self.window)

    def window_spans(
        self, sentences: list[str], prompt: str, overlap: int
    ) -> list[list[tuple[int, int]]]:
        with self._tokenizer_lock:
            return window_spans(self.tokenizer, sentences, prompt, self.window, overlap, self.name)
