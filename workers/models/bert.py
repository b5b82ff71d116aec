"""``bert``: a BERT-family checkpoint with no sentence-transformers config.

transformers ``AutoModel`` + ``AutoTokenizer`` + the configured pooling (``pooling``,
else what a sentence-transformers folder declares, else ``mean``) and ``normalize``.
Texts are truncated to ``max_seq_length`` tokens (else the folder's
sentence-transformers window, else the tokenizer's / position table's limit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError
from workers.models.base import BaseEmbeddingModel, encode_in_batches
from workers.models.device import pick_torch_device
from workers.models.pooling import choose_pooling, get_pooling, normalize_rows
from workers.models.sizes import tokenizer_bytes, torch_bytes
from workers.models.tokenizing import HFTokenizerCounts, load_tokenizer, token_window
from workers.sources import resolve_model_dir

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

log = event_logger(__name__)

#: Files that hold transformers weights.
WEIGHT_FILES = ("*.safetensors", "pytorch_model.bin", "tf_model.h5")


class BertEmbeddingWrapper(HFTokenizerCounts, BaseEmbeddingModel):
    """A transformers encoder whose token vectors are pooled here."""

    imports = ("transformers",)
    hf_tokenizer = True
    s3_format_order = 20

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        return (path / "config.json").is_file() and any(
            any(path.glob(pattern)) for pattern in WEIGHT_FILES
        )

    def __init__(self, name: str, spec: ModelSpec) -> None:
        super().__init__(name, spec)
        from transformers import AutoModel

        path = resolve_model_dir(spec.model_path, spec.base_dir, spec.region)
        if not path.is_dir():
            raise ModelLoadError(f"model {name!r}: {path} is not a model folder")
        self.device = pick_torch_device(spec.device)
        self._tokenizer_lock = threading.Lock()
        self.tokenizer = load_tokenizer(name, path)
        try:
            self.model = AutoModel.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
        except Exception as exc:
            raise ModelLoadError(f"model {name!r}: cannot load {path}: {exc}") from exc
        self.model.to(self.device).eval()
        self.window = token_window(spec.max_seq_length, [path], self.tokenizer)
        pooling, self.normalize = choose_pooling(name, spec.pooling, spec.normalize, [path])
        self.pooling = get_pooling(pooling)
        hidden = getattr(self.model.config, "hidden_size", None)
        self._dim = int(hidden) if isinstance(hidden, int) else None
        self.batch_size = spec.batch_size
        from workers.models.lowering import settle_torch_precision

        self.precision_record, self.batch_size = settle_torch_precision(
            name, spec, self.device, self.model, self.encode, self._lower
        )
        log.info(
            "event=wrapper_ready model=%s path=%s device=%s precision=%s batch_size=%d "
            "pooling=%s normalize=%s window=%d",
            name,
            path,
            self.device,
            self.precision_record.precision,
            self.batch_size,
            pooling,
            self.normalize,
            self.window,
        )

    def _lower(self, precision: str) -> Callable[[], None]:
        from workers.models.lowering import lower_linears

        return lower_linears(self.model, precision)

    @property
    def dimension(self) -> int | None:
        return self._dim or self.spec.dimension

    def held_bytes(self) -> dict[str, int]:
        return {"tensors": torch_bytes(self.model), "tokenizer": tokenizer_bytes(self.tokenizer)}

    def encode(self, sentences: list[str]) -> np.ndarray:
        return encode_in_batches(sentences, self.batch_size, self._encode_batch, self._dim)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with self._tokenizer_lock:  # a fast tokenizer is not safe across threads
            enc = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.window, return_tensors="pt"
            )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            tokens = self.model(**enc).last_hidden_state
        vectors = self.pooling(tokens.float().cpu().numpy(), enc["attention_mask"].cpu().numpy())
        return normalize_rows(vectors) if self.normalize else vectors

    def close(self) -> None:
        del self.model
