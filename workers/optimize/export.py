"""Export a sentence-transformers model's transformer to ONNX, and quantize it to int8."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.contract.logs import event_logger
from workers.errors import ConfigError, ModelLoadError

log = event_logger(__name__)

#: ONNX opset of the export (onnxruntime >= 1.14 runs it).
OPSET = 17
#: sentence-transformers modules the ONNX graph + the ``onnx`` wrapper reproduce.
SUPPORTED_MODULES = {"Transformer", "Pooling", "Normalize"}
#: Poolings the ``onnx`` wrapper implements (sentence-transformers mode -> config name).
POOLINGS = {"mean": "mean", "cls": "cls", "max": "max"}
#: Files copied beside the export: the model's window, pooling and normalize settings.
SIDECARS = ("config.json", "sentence_bert_config.json", "modules.json", "1_Pooling/config.json")


@dataclass(frozen=True)
class SourceLayout:
    """What the source model is made of, read from its sentence-transformers folder."""

    transformer_dir: Path
    pooling: str
    normalize: bool
    max_seq_length: int
    dimension: int


def read_layout(model: str, folder: Path) -> SourceLayout:
    """Check that ``folder`` holds Transformer -> Pooling [-> Normalize] and describe it."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    kinds = [type(module).__name__ for module in st]
    unsupported = [k for k in kinds if k not in SUPPORTED_MODULES]
    if unsupported or not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise ConfigError(
            f"model {model!r}: optimize exports Transformer -> Pooling [-> Normalize] models; "
            f"this one is {' -> '.join(kinds)}"
        )
    pooling_module = st[kinds.index("Pooling")]
    mode = getattr(pooling_module, "pooling_mode", None)  # sentence-transformers >= 6
    if mode is None and hasattr(pooling_module, "get_pooling_mode_str"):
        mode = pooling_module.get_pooling_mode_str()
    if not isinstance(mode, str) or mode not in POOLINGS:
        raise ConfigError(f"model {model!r}: pooling {mode!r} is not one the onnx wrapper runs")
    sub = _module_path(folder, 0)
    return SourceLayout(
        transformer_dir=folder / sub if sub else folder,
        pooling=POOLINGS[mode],
        normalize="Normalize" in kinds,
        max_seq_length=int(st.max_seq_length),
        dimension=int(_dimension(st) or 0),
    )


def _dimension(st: Any) -> int | None:
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return getter()


def _module_path(folder: Path, index: int) -> str:
    try:
        modules = json.loads((folder / "modules.json").read_text())
        return str(modules[index].get("path", ""))
    except (OSError, ValueError, IndexError, AttributeError):
        return ""


def export_onnx(model: str, layout: SourceLayout, source_dir: Path, dest: Path) -> Path:
    """Write ``dest/model.onnx`` (token vectors out) plus the tokenizer and settings.

    The TorchScript exporter (``dynamo=False``) needs only the ``onnx`` package; eager
    attention exports to plain MatMul/Softmax nodes that the quantizer handles.
    """
    from transformers import AutoModel, AutoTokenizer

    try:
        net = AutoModel.from_pretrained(
            str(layout.transformer_dir), attn_implementation="eager", local_files_only=True
        ).eval()
        tokenizer = AutoTokenizer.from_pretrained(
            str(layout.transformer_dir), local_files_only=True
        )
    except Exception as exc:
        raise ModelLoadError(f"model {model!r}: cannot load its transformer: {exc}") from exc
    names = [
        n
        for n in tokenizer.model_input_names
        if n in ("input_ids", "attention_mask", "token_type_ids")
    ]

    dest.mkdir(parents=True, exist_ok=True)
    out = export_last_hidden_state(net, tokenizer, names, dest / "model.onnx")
    tokenizer.save_pretrained(str(dest))
    for name in SIDECARS:
        for base in (source_dir, layout.transformer_dir):
            if (base / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(base / name, dest / name)
                break
    log.info("event=onnx_exported model=%s path=%s inputs=%s", model, out, ",".join(names))
    return out


def export_last_hidden_state(net: Any, tokenizer: Any, names: list[str], out: Path) -> Path:
    """Write ``net``'s token vectors (``last_hidden_state``) as an ONNX graph at ``out``,
    inputs ``names`` in that order, batch and sequence axes dynamic."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.net(**dict(zip(names, inputs, strict=True))).last_hidden_state

    sample = tokenizer(
        ["an example", "another, longer example text"], padding=True, return_tensors="pt"
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape checks that export fine
        torch.onnx.export(
            Encoder(),
            tuple(sample[n] for n in names),
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return out


def quantize_int8(src: Path, dest: Path) -> Path:
    """Dynamic int8 quantization of ``src``'s weights, one scale per output channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" advice
    try:
        quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    log.info("event=onnx_quantized src=%s dest=%s bytes=%d", src, dest, dest.stat().st_size)
    return dest
