"""Intra-op threads of the compute libraries in this process: onnxruntime and torch.

A process-wide number, like ``torch.set_num_threads``: the worker's boot sets it from
``EMBEDFLEET_THREADS`` or cores / concurrency (``workers.serving.threads``). ONNX
sessions opened from then on use it (1 before or without a boot). torch is not imported
for it: a worker serving only models that never import torch (an endpoint, an ONNX
graph, a plugin) does not pay ~1 s of CPU for torch at every start. A model load gives
torch the number as soon as the wrapper's libraries or its build brought torch in
(``workers.memory.loading``), before the model computes anything.
"""

from __future__ import annotations

import sys

#: Threads of an onnxruntime session opened before or without a boot.
DEFAULT_THREADS = 1

# Process-wide on purpose, as torch.set_num_threads is: the boot sets it once from its
# settings, and a wrapper is built as ``cls(name, spec)`` (the type plugin contract),
# which has no place for it. None: no boot set it. Tests set it and put it back.
_threads: int | None = None


def set_threads(threads: int | None) -> None:
    """Threads of the sessions opened from now on and of torch (at least 1): torch's now
    if it is imported, else once a load imports it. None: no count (torch keeps its own,
    sessions use :data:`DEFAULT_THREADS`)."""
    global _threads
    _threads = None if threads is None else max(1, int(threads))
    apply_torch_threads()


def threads_set() -> int | None:
    """The count set for this process (None before a boot set one)."""
    return _threads


def onnx_threads() -> int:
    """Intra-op threads of one onnxruntime session."""
    return _threads or DEFAULT_THREADS


def apply_torch_threads() -> None:
    """Give torch the count set, if there is one and torch is imported by now."""
    torch = sys.modules.get("torch")
    if _threads is None or torch is None or not hasattr(torch, "get_num_threads"):
        return  # no count set, torch not imported (or half-way through its import)
    if torch.get_num_threads() != _threads:
        torch.set_num_threads(_threads)
