"""``sentence_transformer``: models with a sentence-transformers config (modules.json)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError
from workers.models.base import BaseEmbeddingModel
from workers.models.device import pick_torch_device
from workers.models.sizes import tokenizer_bytes, torch_bytes
from workers.sources import resolve_model_dir

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

log = event_logger(__name__)


class SentenceTransformerWrapper(BaseEmbeddingModel):
    """A ``sentence_transformers.SentenceTransformer``; texts beyond ``max_seq_length``
    tokens are truncated, as the model itself does."""

    imports = ("sentence_transformers",)
    hf_tokenizer = True
    exports_to = "onnx"  # optimize exports its folder to ONNX (workers/optimize/export.py)
    s3_format_order = 10  # before bert: its folders hold transformers weights too

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        return (path / "modules.json").is_file()

    def __init__(self, name: str, spec: ModelSpec) -> None:
        super().__init__(name, spec)
        from sentence_transformers import SentenceTransformer

        path = resolve_model_dir(spec.model_path, spec.base_dir, spec.region)
        self.device = pick_torch_device(spec.device)
        try:
            self.model = SentenceTransformer(
                str(path),
                device=self.device,
                trust_remote_code=spec.trust_remote_code,
                local_files_only=True,
                # models.json's prompts over the folder's own (sentence-transformers merges)
                prompts=spec.prompts,
                default_prompt_name=spec.default_prompt_name,
            )
        except Exception as exc:
            raise ModelLoadError(f"model {name!r}: cannot load {path}: {exc}") from exc
        self.model.eval()
        if spec.max_seq_length:
            self.model.max_seq_length = spec.max_seq_length
        self.batch_size = spec.batch_size
        from workers.models.lowering import settle_torch_precision

        self.precision_record, self.batch_size = settle_torch_precision(
            name, spec, self.device, self.model, self.encode, self._lower
        )
        log.info(
            "event=wrapper_ready model=%s path=%s device=%s precision=%s batch_size=%d",
            name,
            path,
            self.device,
            self.precision_record.precision,
            self.batch_size,
        )

    def _lower(self, precision: str) -> Callable[[], None]:
        """Lower the transformer (not the pooling / normalize / dense heads): see
        ``workers.models.lowering``."""
        from workers.models.lowering import lower_linears

        first = self.model[0] if len(self.model) else None
        encoder = getattr(first, "auto_model", None)
        return lower_linears(encoder if encoder is not None else self.model, precision)

    @property
    def dimension(self) -> int | None:
        dim = self.model.get_sentence_embedding_dimension()
        return int(dim) if dim else self.spec.dimension

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.model.prompts or {})

    @property
    def default_prompt_name(self) -> str | None:
        return self.model.default_prompt_name or None

    def encode_with_prompt(self, sentences: list[str], prompt: str) -> np.ndarray:
        return self._encode(sentences, prompt)

    def token_counts(self, sentences: list[str], prompt: str = "") -> tuple[np.ndarray, np.ndarray]:
        from workers.models.tokenizing import count_tokens

        texts = [prompt + s for s in sentences] if prompt else sentences
        return count_tokens(self.model.tokenizer, texts, int(self.model.max_seq_length))

    def window_spans(
        self, sentences: list[str], prompt: str, overlap: int
    ) -> list[list[tuple[int, int]]]:
        from workers.models.tokenizing import window_spans

        window = int(self.model.max_seq_length)
        return window_spans(self.model.tokenizer, sentences, prompt, window, overlap, self.name)

    @property
    def normalizes(self) -> bool:
        from sentence_transformers.sentence_transformer.modules import Normalize

        return bool(self.spec.normalize) or any(isinstance(m, Normalize) for m in self.model)

    def held_bytes(self) -> dict[str, int]:
        tokenizer = getattr(self.model, "tokenizer", None)
        return {
            "tensors": torch_bytes(self.model),
            "tokenizer": tokenizer_bytes(tokenizer) if tokenizer is not None else 0,
        }

    def encode(self, sentences: list[str]) -> np.ndarray:
        """Vectors with the model's default prompt (if it declares one)."""
        return self._encode(sentences, None)

    def _encode(self, sentences: list[str], prompt: str | None) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.encode(
                sentences,
                prompt=prompt,  # None: the default prompt; "": none
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=bool(self.spec.normalize),
                show_progress_bar=False,
            )

    def close(self) -> None:
        del self.model
