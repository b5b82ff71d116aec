"""Intra-op threads of the onnxruntime sessions this process opens.

Like ``torch.set_num_threads``, a process-wide number: the worker's boot sets it from
``EMBEDFLEET_THREADS`` or cores / concurrency (``workers.serving.threads``); sessions
opened before or without a boot use 1.
"""

from __future__ import annotations

DEFAULT_THREADS = 1

# Process-wide on purpose, as torch.set_num_threads is: the boot sets it once from its
# settings, and a wrapper is built as ``cls(name, spec)`` (the type plugin contract),
# which has no place for it. Tests set it and put it back.
_threads = DEFAULT_THREADS


def set_onnx_threads(threads: int) -> None:
    """Threads each session opened from now on uses (at least 1)."""
    global _threads
    _threads = max(1, int(threads))


def onnx_threads() -> int:
    """Intra-op threads of one session."""
    return _threads
