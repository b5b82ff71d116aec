"""``usage.prompt_tokens`` of an embeddings response, counted with the model's own
tokenizer where the gateway can find it, else estimated.

The gateway loads no model, but a tokenizer is a small file: where the gateway is given
a model config (``EMBEDFLEET_MODEL_CONFIG``) whose entry leads to a ``tokenizer.json``
(the entry's ``tokenizer`` folder, a local ``model_path`` folder, a packaged model, or
the Hugging Face cache, never downloading), it counts with the Rust ``tokenizers``
library (no torch), truncated at the model's window as the model truncates. Otherwise
it counts as the producers do: ``tasks.contract.chunking.estimate_tokens``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tasks.contract.chunking import estimate_tokens
from tasks.contract.logs import event_logger
from tasks.contract.packaged import packaged_model_dir
from tasks.contract.spec import ModelSpec, read_local_config

log = event_logger(__name__)

TOKENIZER_FILE = "tokenizer.json"


class TokenCounter:
    """Tokens a model sees for some texts (thread-safe; one tokenizer per model, kept)."""

    def __init__(self, config_source: str | None) -> None:
        self._source = config_source
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def count(self, model: str, texts: list[str]) -> int:
        tokenizer = self._tokenizer(model)
        if tokenizer is None:
            return int(estimate_tokens(texts).sum())
        return sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts))

    def _tokenizer(self, model: str) -> Any:
        with self._lock:
            if model not in self._tokenizers:
                self._tokenizers[model] = self._load(model)
                how = "tokenizer" if self._tokenizers[model] is not None else "estimate"
                log.info("event=gateway_token_count model=%s method=%s", model, how)
            return self._tokenizers[model]

    def _load(self, model: str) -> Any:
        if not self._source:
            return None
        try:
            spec = read_local_config(self._source).get(model)
        except Exception as exc:  # a bad local config: the estimate serves
            log.warning("event=gateway_token_config_unreadable error=%r", str(exc))
            return None
        found = tokenizer_file(spec) if spec is not None else None
        if found is None:
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(found))
        tokenizer.no_padding()
        window = spec.max_seq_length or _window(found.parent)  # type: ignore[union-attr]
        if window:
            tokenizer.enable_truncation(window)
        return tokenizer


def tokenizer_file(spec: ModelSpec) -> Path | None:
    """The ``tokenizer.json`` of a model entry, where one is on this machine."""
    folders: list[Path] = []
    if spec.tokenizer:
        folders.append(Path(spec.tokenizer))
    path = Path(spec.model_path)
    if not path.is_absolute() and spec.base_dir is not None:
        path = spec.base_dir / path
    folders.append(path if path.is_dir() else path.parent)
    packaged = packaged_model_dir(spec.model_path)
    if packaged is not None:
        folders.append(packaged)
    for folder in folders:
        candidate = folder / TOKENIZER_FILE if folder.is_dir() else folder
        if candidate.name == TOKENIZER_FILE and candidate.is_file():
            return candidate
    return _hub_cached(spec.model_path)


def _hub_cached(model_path: str) -> Path | None:
    if model_path.startswith(("s3://", "/", ".")) or model_path.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model_path, TOKENIZER_FILE)
    return Path(found) if isinstance(found, str) else None


def _window(folder: Path) -> int | None:
    """The sentence-transformers window of a model folder (what the model truncates to)."""
    try:
        value = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
