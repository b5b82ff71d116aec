"""``s3``: a model stored on S3, served by the wrapper of its format.

``model_path`` is ``s3://bucket/key`` of a file or a prefix (a model folder); it is
fetched into the download folder (``workers.sources.s3``). The ``format`` field picks
the wrapper, else the download does: every registered type that declares an
``s3_format_order`` is asked, in that order, whether it ``recognizes`` the download (a
folder with ``modules.json`` -> ``sentence_transformer``; with transformers weights ->
``bert``; a ``.onnx`` file or a folder holding one -> ``onnx``). Anything else is an
unknown format, named in the error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError
from workers.models.base import BaseEmbeddingModel
from workers.models.registry import TYPES, resolve_class
from workers.sources.s3 import fetch_s3

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec
    from workers.models.fidelity import PrecisionRecord

log = event_logger(__name__)


class S3ModelWrapper(BaseEmbeddingModel):
    """Fetches the model, then delegates to the wrapper of its format."""

    @classmethod
    def libraries(cls, spec: ModelSpec) -> tuple[str, ...]:
        """The libraries of its format's type, when the entry names the format."""
        return resolve_class(spec.format).libraries(spec) if spec.format else ("boto3",)

    def __init__(self, name: str, spec: ModelSpec) -> None:
        super().__init__(name, spec)
        if not spec.model_path.startswith("s3://"):
            raise ModelLoadError(
                f"model {name!r}: type 's3' needs model_path s3://bucket/key, got {spec.model_path!r}"
            )
        local = fetch_s3(spec.model_path, spec.region)
        self.format = spec.format or detect_format(name, local)
        inner_spec = spec.model_copy(update={"type": self.format, "model_path": str(local)})
        self.inner = resolve_class(self.format)(name, inner_spec)
        log.info("event=s3_model_ready model=%s format=%s local=%s", name, self.format, local)

    @property
    def dimension(self) -> int | None:
        return self.inner.dimension

    def held_bytes(self) -> dict[str, int] | None:
        return self.inner.held_bytes()

    @property  # type: ignore[override]
    def precision_record(self) -> PrecisionRecord | None:
        return self.inner.precision_record

    def encode(self, sentences: list[str]) -> np.ndarray:
        return self.inner.encode(sentences)

    def encode_with_prompt(self, sentences: list[str], prompt: str) -> np.ndarray:
        return self.inner.encode_with_prompt(sentences, prompt)

    def token_counts(self, sentences: list[str], prompt: str = "") -> tuple[np.ndarray, np.ndarray]:
        return self.inner.token_counts(sentences, prompt)

    def window_spans(
        self, sentences: list[str], prompt: str, overlap: int
    ) -> list[list[tuple[int, int]]]:
        return self.inner.window_spans(sentences, prompt, overlap)

    def close(self) -> None:
        self.inner.close()
        del self.inner


def s3_formats() -> list[tuple[str, type[BaseEmbeddingModel]]]:
    """(type name, class) of every registered type an S3 model may be in, in order."""
    found = [(name, resolve_class(name)) for name in TYPES]
    formats = [(name, cls) for name, cls in found if cls.s3_format_order is not None]
    return sorted(formats, key=lambda pair: pair[1].s3_format_order or 0)


def detect_format(model: str, path: Path) -> str:
    """The format of a downloaded model (see the module docstring)."""
    formats = s3_formats()
    for name, cls in formats:
        if cls.recognizes(path):
            return name
    names = ", ".join(name for name, _ in formats)
    if path.is_file():
        raise ModelLoadError(
            f"model {model!r}: unknown format of {path.name!r}; a single file must be .onnx, "
            f"or set 'format' to one of {names}"
        )
    found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
    raise ModelLoadError(
        f"model {model!r}: unknown format of the folder {path} (holds {found}); expected "
        f"modules.json, transformers weights or a .onnx file, or set 'format' to one of "
        f"{names}"
    )
