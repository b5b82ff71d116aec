"""Tokens per chunk, for metrics: the model's own tokenizer where one is on disk.

Counting runs after a chunk is done (``workers.observability.metrics``), not in the
encode path. A
fast tokenizer counts 128 short texts in ~50 ms on one core, against seconds to
encode them on CPU, so the count is real rather than estimated wherever the model
folder holds a Hugging Face tokenizer (types whose class declares ``hf_tokenizer``, or
any entry with a ``tokenizer`` path). Other types (remote endpoints,
plugins) fall back to the producer's estimate (``tasks.contract.chunking``: UTF-8 bytes / 4
+ 2, capped at the window). Which method a model uses is logged once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError
from workers.models.registry import resolve_class
from workers.models.tokenizing import has_tokenizer, load_tokenizer, token_window

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

log = event_logger(__name__)

#: Tokenizers kept in memory at once (a few MB each).
MAX_TOKENIZERS = 16
#: Token window used by the estimate when the config names none.
DEFAULT_WINDOW = 256


class TokenCounter:
    """Counts the tokens a model saw for a list of texts (thread-safe)."""

    def __init__(self) -> None:
        self._tokenizers: OrderedDict[tuple[str, str], tuple[Any, int | None]] = OrderedDict()
        self._lock = threading.Lock()  # guards the dict and the (not re-entrant) tokenizers

    def count(self, model: str, spec: ModelSpec | None, texts: list[str]) -> int:
        """Tokens of ``texts`` as ``model`` sees them (special tokens in, truncated)."""
        if spec is None:
            return estimate(texts, DEFAULT_WINDOW)
        key = (model, spec.model_dump_json())
        with self._lock:
            if key not in self._tokenizers:
                self._tokenizers[key] = _load(model, spec)
                while len(self._tokenizers) > MAX_TOKENIZERS:
                    self._tokenizers.popitem(last=False)
            self._tokenizers.move_to_end(key)
            tokenizer, window = self._tokenizers[key]
            if tokenizer is None:
                return estimate(texts, window or DEFAULT_WINDOW)
            kwargs: dict[str, Any] = {"add_special_tokens": True}
            if window:
                kwargs.update(truncation=True, max_length=window)
            ids = tokenizer(texts, **kwargs)["input_ids"]
        return sum(len(row) for row in ids)


def estimate(texts: list[str], window: int) -> int:
    """The producer's estimate: UTF-8 bytes / 4 + 2 special tokens, capped at ``window``."""
    from tasks.contract.chunking import estimate_tokens

    return int(estimate_tokens(texts, window).sum())


def _load(model: str, spec: ModelSpec) -> tuple[Any, int | None]:
    """(tokenizer or None, token window) for ``spec``, as the wrappers load them
    (``workers.models.tokenizing``); never raises."""
    folder = _tokenizer_folder(spec)
    if folder is None:
        log.info("event=token_count model=%s method=estimate type=%s", model, spec.type)
        return None, spec.max_seq_length
    try:
        tokenizer = load_tokenizer(model, folder)
    except ModelLoadError as exc:  # metrics must never fail a worker
        log.warning("event=token_count model=%s method=estimate error=%r", model, str(exc))
        return None, spec.max_seq_length
    window = token_window(spec.max_seq_length, [folder], tokenizer)
    log.info("event=token_count model=%s method=tokenizer window=%s", model, window)
    return tokenizer, window


def _tokenizer_folder(spec: ModelSpec) -> Path | None:
    """Local folder of the model's tokenizer, without downloading anything."""
    from workers.sources import resolve_model_dir

    source = spec.tokenizer or (spec.model_path if _has_hf_tokenizer(spec.type) else None)
    if source is None or source.startswith("s3://"):
        return None
    try:
        path = resolve_model_dir(source, spec.base_dir)
    except Exception:  # not local, not cached: the estimate will do
        return None
    folder = path if path.is_dir() else path.parent
    return folder if has_tokenizer(folder) else None


def _has_hf_tokenizer(type_name: str) -> bool:
    """True when the type declares its model folder holds a Hugging Face tokenizer."""
    try:
        return resolve_class(type_name).hf_tokenizer
    except Exception:  # an unimportable plugin type: the estimate will do
        return False
