"""``onnx``: an ONNX transformer graph run by onnxruntime, plus its tokenizer and a pooling.

``model_path`` names a ``.onnx`` file, or a folder holding one (``model.onnx``, else
``onnx/model.onnx``, else the only ``*.onnx``). The tokenizer comes from the
``tokenizer`` field, else from the model's folder (or its parent, for the
``onnx/model.onnx`` layout). The graph's input names are read from the graph: any of
``input_ids``, ``attention_mask``, ``token_type_ids``, ``position_ids``. Its output is
``sentence_embedding`` (already pooled) when present, else ``last_hidden_state``, else
the first output; token vectors are pooled (``pooling``, default ``mean``) and, with
``normalize``, scaled to unit length.

Threads: ``intra_op_num_threads`` is set explicitly from ``EMBEDFLEET_THREADS`` (set by
``workers.serving.threads`` at worker boot), else 1. ``device``: ``cuda`` needs the
``CUDAExecutionProvider`` (onnxruntime-gpu); ``auto`` uses it when available.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError
from workers.models.base import BaseEmbeddingModel, encode_in_batches
from workers.models.compute_threads import onnx_threads
from workers.models.fidelity import PrecisionRecord
from workers.models.pooling import choose_pooling, get_pooling, normalize_rows
from workers.models.sizes import onnx_initializer_bytes, tokenizer_bytes
from workers.models.tokenizing import HFTokenizerCounts, has_tokenizer, load_tokenizer, token_window
from workers.sources import resolve_model_dir

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

log = event_logger(__name__)

#: Graph inputs this wrapper knows how to feed.
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
#: Preferred graph outputs, in order; else the first output.
PREFERRED_OUTPUTS = ("sentence_embedding", "last_hidden_state", "token_embeddings")
_NUMPY_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class OnnxEmbeddingWrapper(HFTokenizerCounts, BaseEmbeddingModel):
    """An onnxruntime ``InferenceSession`` of a transformer encoder."""

    imports = ("onnxruntime", "tokenizers")
    hf_tokenizer = True
    s3_format_order = 30  # a .onnx file, or a folder holding one

    @classmethod
    def recognizes(cls, path: Path) -> bool:
        if path.is_file():
            return path.suffix == ".onnx"
        return any(path.glob("*.onnx")) or any(path.glob("onnx/*.onnx"))

    def __init__(self, name: str, spec: ModelSpec) -> None:
        super().__init__(name, spec)
        import onnxruntime as ort

        if spec.precision in ("bf16", "fp16"):
            raise ModelLoadError(
                f"model {name!r}: precision {spec.precision!r} is not offered for type onnx: "
                "ONNX Runtime runs the graph in the precision it was exported in; use 'auto' "
                "or 'fp32' (or `embedfleet optimize --to onnx-int8`)"
            )
        quantized = ((spec.provenance or {}).get("quantization") or {}).get("weights")
        self.precision_record = PrecisionRecord(spec.precision, str(quantized or "fp32"))

        self.path = find_onnx_file(
            name, resolve_model_dir(spec.model_path, spec.base_dir, spec.region)
        )
        tok_dir = self._tokenizer_dir()
        self._tokenizer_lock = threading.Lock()
        self.tokenizer = load_tokenizer(name, tok_dir)
        folders = [self.path.parent, tok_dir]
        self.window = token_window(spec.max_seq_length, folders, self.tokenizer)
        pooling, self.normalize = choose_pooling(name, spec.pooling, spec.normalize, folders)
        self.pooling = get_pooling(pooling)
        self.threads = onnx_threads()
        self.providers = onnx_providers(name, spec.device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=self.providers
            )
        except Exception as exc:
            raise ModelLoadError(f"model {name!r}: cannot load {self.path}: {exc}") from exc
        if spec.device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise ModelLoadError(f"model {name!r}: onnxruntime could not start its CUDA provider")
        self.inputs = {
            i.name: _NUMPY_TYPES.get(i.type, np.int64) for i in self.session.get_inputs()
        }
        unknown = sorted(set(self.inputs) - set(KNOWN_INPUTS))
        if unknown or "input_ids" not in self.inputs:
            raise ModelLoadError(
                f"model {name!r}: {self.path} has inputs {sorted(self.inputs)}; this wrapper "
                f"feeds {', '.join(KNOWN_INPUTS)} and needs input_ids"
            )
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        self.output = next((n for n in PREFERRED_OUTPUTS if n in names), names[0])
        shape = outputs[names.index(self.output)].shape
        self._dim = shape[-1] if isinstance(shape[-1], int) else None
        log.info(
            "event=wrapper_ready model=%s path=%s providers=%s threads=%d inputs=%s output=%s "
            "pooling=%s normalize=%s window=%d",
            name,
            self.path,
            ",".join(self.session.get_providers()),
            self.threads,
            ",".join(self.inputs),
            self.output,
            pooling,
            self.normalize,
            self.window,
        )

    def _tokenizer_dir(self) -> Path:
        if self.spec.tokenizer:
            path = resolve_model_dir(self.spec.tokenizer, self.spec.base_dir, self.spec.region)
            return path if path.is_dir() else path.parent
        for folder in (self.path.parent, self.path.parent.parent):
            if has_tokenizer(folder):
                return folder
        raise ModelLoadError(
            f"model {self.name!r}: no tokenizer beside {self.path}; put tokenizer.json (or "
            "vocab.txt + tokenizer_config.json) there or set the 'tokenizer' field"
        )

    @property
    def dimension(self) -> int | None:
        return self._dim or self.spec.dimension

    def held_bytes(self) -> dict[str, int]:
        return {
            "initializers": onnx_initializer_bytes(self.path),
            "tokenizer": tokenizer_bytes(self.tokenizer),
        }

    def encode(self, sentences: list[str]) -> np.ndarray:
        # Batches of texts of similar token length, as sentence-transformers does: less
        # padding is less work and, for dynamically quantized models (activation scales
        # taken over the padded batch), better vectors (bench/quant_variants.py).
        with self._tokenizer_lock:
            ids = self.tokenizer(sentences, truncation=True, max_length=self.window)["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        vectors = encode_in_batches(
            [sentences[i] for i in order], self.spec.batch_size, self._encode_batch, self._dim
        )
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        with self._tokenizer_lock:  # a fast tokenizer is not safe across threads
            enc = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.window, return_tensors="np"
            )
        mask = enc["attention_mask"]
        feeds: dict[str, np.ndarray] = {}
        for name, dtype in self.inputs.items():
            if name in enc:
                feeds[name] = enc[name].astype(dtype)
            elif name == "token_type_ids":
                feeds[name] = np.zeros_like(enc["input_ids"], dtype=dtype)
            elif name == "position_ids":
                positions = np.arange(enc["input_ids"].shape[1], dtype=dtype)
                feeds[name] = np.broadcast_to(positions, enc["input_ids"].shape).copy()
            elif name == "attention_mask":
                feeds[name] = np.ones_like(enc["input_ids"], dtype=dtype)
        (out,) = self.session.run([self.output], feeds)
        vectors = self.pooling(out, mask) if out.ndim == 3 else np.asarray(out, np.float32)
        return normalize_rows(vectors) if self.normalize else vectors

    def close(self) -> None:
        del self.session


def find_onnx_file(model: str, path: Path) -> Path:
    """The ``.onnx`` file that ``path`` (a file or a model folder) names."""
    if path.is_file():
        return path
    for candidate in (path / "model.onnx", path / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    found = sorted(path.glob("*.onnx")) or sorted(path.glob("onnx/*.onnx"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"model {model!r}: no .onnx file in {path}")
    names = ", ".join(str(f.relative_to(path)) for f in found)
    raise ModelLoadError(
        f"model {model!r}: several .onnx files in {path} ({names}); point model_path at one"
    )


def onnx_providers(model: str, device: str, available: list[str]) -> list[Any]:
    """onnxruntime execution providers for the config's ``device``."""
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise ModelLoadError(
            f"model {model!r}: device 'cuda' was asked for but onnxruntime has no "
            f"CUDAExecutionProvider (available: {', '.join(available)}); install onnxruntime-gpu"
        )
    if device in {"cuda", "auto"} and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
