"""Pooling: token vectors -> one vector per text, chosen by name from the config.

Each function takes ``tokens`` (batch, seq, dim) and ``mask`` (batch, seq; 1 for a real
token, 0 for padding) as numpy arrays and returns (batch, dim) float32. Wrappers that
produce token vectors (``onnx``, ``bert``, a token-level ``sagemaker`` response) inject
one of these instead of inheriting a pooling. When the config names none, a
sentence-transformers folder says which one its model was trained with
(``1_Pooling/config.json``, ``modules.json``); else ``mean``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tasks.contract.logs import event_logger
from workers.errors import ConfigError

log = event_logger(__name__)

Pooling = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Pooling used when neither the config nor the model folder names one.
DEFAULT_POOLING = "mean"


def mean_pooling(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average of the real tokens' vectors (padding excluded)."""
    weights = mask[..., None].astype(np.float32)
    summed = (tokens.astype(np.float32) * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return (summed / counts).astype(np.float32)


def cls_pooling(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first token's vector ([CLS] for BERT-family models)."""
    return np.ascontiguousarray(tokens[:, 0], dtype=np.float32)


def max_pooling(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Element-wise maximum over the real tokens (padding excluded)."""
    masked = np.where(mask[..., None].astype(bool), tokens.astype(np.float32), -np.inf)
    return masked.max(axis=1).astype(np.float32)


POOLINGS: dict[str, Pooling] = {"mean": mean_pooling, "cls": cls_pooling, "max": max_pooling}


def get_pooling(name: str) -> Pooling:
    """The pooling function called ``name``."""
    try:
        return POOLINGS[name]
    except KeyError:
        raise ConfigError(f"unknown pooling {name!r}; known: {', '.join(POOLINGS)}") from None


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def folder_pooling(folders: Iterable[Path]) -> tuple[str | None, bool | None]:
    """(pooling, normalize) that a sentence-transformers folder declares, else Nones."""
    pooling: str | None = None
    normalize: bool | None = None
    for folder in folders:
        if pooling is None:
            pooling = _pooling_mode(folder / "1_Pooling" / "config.json")
        if normalize is None and (folder / "modules.json").is_file():
            normalize = "Normalize" in (folder / "modules.json").read_text(errors="replace")
    return pooling, normalize


def _pooling_mode(path: Path) -> str | None:
    try:
        modes = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for key, name in (
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
    ):
        if isinstance(modes, dict) and modes.get(key):
            return name
    return None


def choose_pooling(
    model: str, configured: str | None, normalize: bool | None, folders: Iterable[Path]
) -> tuple[str, bool]:
    """The (pooling, normalize) a model uses: the config's, else its folder's, else mean."""
    folder_mode, folder_norm = folder_pooling(folders)
    pooling = configured or folder_mode or DEFAULT_POOLING
    norm = normalize if normalize is not None else bool(folder_norm)
    log.debug("event=pooling model=%s pooling=%s normalize=%s", model, pooling, norm)
    return pooling, norm
