"""The interface every model type implements, and the capabilities a type declares.

A type is one file: what the rest of the worker needs to know about it is declared on
its class here, not in tables elsewhere. The registry (``workers.models.registry``)
only maps a type name to its class's dotted path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from workers.models.sizes import object_bytes

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec
    from workers.models.fidelity import PrecisionRecord


#: Token window the estimate assumes for a type that states none.
ESTIMATE_WINDOW = 512  # tokens


class BaseEmbeddingModel(ABC):
    """A loaded embedding model. Construction loads it; :meth:`close` lets it go.

    Subclasses are built with ``cls(name, spec)`` by ``workers.models.registry``.
    ``encode`` may be called from several threads at once.
    """

    # -- capabilities of the type ---------------------------------------------------------
    #: The model runs elsewhere (an endpoint): no weights here, no warm-up encode at
    #: load, and no local RAM to measure (``workers.memory``).
    remote: ClassVar[bool] = False
    #: Libraries the type imports on first use, imported before a load is measured so
    #: the first model of a type is not charged for them (transformers alone is ~0.2 GB
    #: of RSS; ``workers.memory.loading.import_type``).
    imports: ClassVar[tuple[str, ...]] = ()
    #: ``model_path`` (or the entry's ``tokenizer``) is a folder holding a Hugging Face
    #: tokenizer, so token metrics count with it (``workers.observability.token_counts``).
    hf_tokenizer: ClassVar[bool] = False
    #: An ``s3`` model may be in this type's format: the ``s3`` type offers a download to
    #: the types that set this, lowest first (more specific formats lower), and the first
    #: whose :meth:`recognizes` says yes serves it (``workers.models.s3``).
    s3_format_order: ClassVar[int | None] = None
    #: The type ``embedfleet optimize`` exports this type's models to (``onnx``), or None
    #: when it cannot export them (``workers.optimize.pipeline``).
    exports_to: ClassVar[str | None] = None
    #: The precision the model runs in and what the fidelity probe measured
    #: (``workers.models.fidelity``); None for types that have no choice (remote ones).
    precision_record: PrecisionRecord | None = None

    def __init__(self, name: str, spec: ModelSpec) -> None:
        self.name = name
        self.spec = spec

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        """True when the downloaded file or folder ``path`` is in this type's format."""
        return False

    @classmethod
    def libraries(cls, spec: ModelSpec) -> tuple[str, ...]:
        """Libraries a model of this spec imports (:attr:`imports`, by default)."""
        return cls.imports

    @abstractmethod
    def encode(self, sentences: list[str]) -> np.ndarray:
        """Convert sentences to embeddings: an (len(sentences), dim) float32 matrix."""

    @property
    def dimension(self) -> int | None:
        """Embedding size, when known without encoding."""
        return self.spec.dimension

    @property
    def prompts(self) -> dict[str, str]:
        """Prompt name -> text this model declares (models.json ``prompts``)."""
        return dict(self.spec.prompts or {})

    @property
    def default_prompt_name(self) -> str | None:
        """The prompt a job that names none gets."""
        return self.spec.default_prompt_name

    def encode_with_prompt(self, sentences: list[str], prompt: str) -> np.ndarray:
        """:meth:`encode` with ``prompt`` put before each sentence (it counts toward the
        token window); ``""``: no prompt."""
        return self.encode([prompt + s for s in sentences] if prompt else sentences)

    def token_counts(self, sentences: list[str], prompt: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(tokens int32, truncated bool)`` of each sentence with ``prompt`` before it,
        as this model sees it. By default the byte estimate (``tasks.contract.chunking``)
        against ``max_seq_length``; types with a tokenizer count with it."""
        from workers.models.tokenizing import estimate_counts

        texts = [prompt + s for s in sentences] if prompt else sentences
        return estimate_counts(texts, self.spec.max_seq_length or ESTIMATE_WINDOW)

    def window_spans(
        self, sentences: list[str], prompt: str, overlap: int
    ) -> list[list[tuple[int, int]]]:
        """Per sentence, the character spans of its token windows for
        ``long_text=mean`` and ``windows`` (``workers.models.tokenizing.window_spans``);
        only types with a Hugging Face tokenizer can cut them: others refuse, naming the
        model (:func:`tasks.contract.options.no_windows_reason`)."""
        from tasks.contract.errors import InvalidRequest
        from tasks.contract.options import no_windows_reason

        raise InvalidRequest(no_windows_reason(self.name, self.spec.type))

    @property
    def normalizes(self) -> bool:
        """True when the vectors come out unit length (``dimensions`` then re-normalizes
        what it keeps, as sentence-transformers' ``truncate_dim`` does)."""
        return bool(getattr(self, "normalize", self.spec.normalize))

    def held_bytes(self) -> dict[str, int] | None:
        """What the loaded model holds, in bytes by part, measured where its runtime can
        say it (``{"tensors": n, "tokenizer": m}``; ``workers.models.sizes``); None for
        a remote model. By default, the Python objects it reaches."""
        if self.remote:
            return None
        return {"objects": object_bytes(self)}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the model holds beyond Python references (sessions, clients)."""


def encode_in_batches(
    sentences: list[str],
    batch_size: int,
    encode_batch: Callable[[list[str]], np.ndarray],
    dim: int | None = None,
) -> np.ndarray:
    """Run ``encode_batch`` over ``sentences`` in slices of ``batch_size``; stack the rows."""
    parts = [
        encode_batch(sentences[i : i + batch_size]) for i in range(0, len(sentences), batch_size)
    ]
    if not parts:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return np.concatenate(parts)


def generate_embeddings(
    model: BaseEmbeddingModel, sentences: list[str], prompt: str | None = None
) -> np.ndarray:
    """Encode ``sentences`` with ``model`` and return a C-contiguous float32 matrix
    (``prompt``: put before each sentence; None: the model's default prompt)."""
    if prompt is None:
        prompt = model.prompts.get(model.default_prompt_name or "", "")
    vectors = np.asarray(model.encode_with_prompt(list(sentences), prompt), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(sentences):
        raise ValueError(
            f"model {model.name!r} returned shape {vectors.shape} for {len(sentences)} texts"
        )
    return np.ascontiguousarray(vectors)
