"""What a loaded model holds, read from the runtime that holds it (bytes).

Used by the wrappers' :meth:`~workers.models.base.BaseEmbeddingModel.held_bytes`; the
model cache combines the figure with the RSS growth over the load
(``workers.memory.loading``):

- torch: the bytes of every parameter and buffer storage, each shared storage once
  (tied embeddings count once), on the CPU only (GPU memory is not the worker's RAM);
- ONNX Runtime: the graph's initializers (element count x element size), read from
  the model file (onnxruntime does not report a session's memory);
- a Hugging Face fast tokenizer: its serialised size (vocabulary, merges, rules);
- anything else: the Python objects the model reaches (:func:`object_bytes`).
"""

from __future__ import annotations

import gc
import math
import sys
from pathlib import Path
from typing import Any

#: Most objects :func:`object_bytes` visits (a bound on its cost).
MAX_OBJECTS = 200_000


def torch_bytes(*modules: Any) -> int:
    """Bytes of the CPU tensor storages of ``modules``' parameters and buffers."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        tensors = [*module.parameters(), *module.buffers()]
        for tensor in tensors:
            if tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            if storage.data_ptr() in seen:
                continue
            seen.add(storage.data_ptr())
            total += int(storage.nbytes())
    return total


def onnx_initializer_bytes(path: Path) -> int:
    """Bytes of the initializers (weights) of the ONNX graph in ``path``."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    total = 0
    for init in graph.initializer:
        itemsize = helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        total += math.prod(init.dims) * itemsize
    return total


#: Bytes of one element of each safetensors dtype the models here use.
SAFETENSORS_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def safetensors_bytes(path: Path) -> int:
    """Bytes of every tensor a ``.safetensors`` file holds, read from its header (what a
    model's tensors should add up to: the reference the measured RAM is checked against)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), "np") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            part = f.get_slice(key)
            total += math.prod(part.get_shape()) * SAFETENSORS_DTYPE_BYTES[part.get_dtype()]
    return total


def tokenizer_bytes(tokenizer: Any) -> int:
    """Serialised size of a fast tokenizer (0 when it cannot say)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    try:
        return len(backend.to_str().encode("utf-8"))
    except Exception:  # not a Rust tokenizer: nothing to read
        return 0


def object_bytes(root: object) -> int:
    """Bytes of the Python objects reachable from ``root`` (numpy arrays with data).

    Modules, classes and functions are not followed: they are the program, not the
    model.
    """
    skip = (type, type(sys), type(object_bytes), type(len))
    seen = {id(root)}
    stack = [root]
    total = 0
    while stack and len(seen) < MAX_OBJECTS:
        obj = stack.pop()
        try:
            total += sys.getsizeof(obj)
        except TypeError:
            continue
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not isinstance(ref, skip):
                seen.add(id(ref))
                stack.append(ref)
    return total
