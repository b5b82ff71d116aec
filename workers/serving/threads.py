"""Compute threads: set torch / onnxruntime intra-op threads explicitly.

Default: the cores this process may use divided by the pool concurrency, so two
tasks encoding at once do not fight over the same cores. ``EMBEDFLEET_THREADS``
overrides it.
"""

from __future__ import annotations

import logging
import os

from tasks.host import usable_cores

log = logging.getLogger(__name__)


def threads_per_task(concurrency: int) -> int:
    """Intra-op threads one task should use."""
    env = os.environ.get("EMBEDFLEET_THREADS")
    if env:
        return max(1, int(env))
    return max(1, usable_cores() // max(1, concurrency))


def configure_threads(concurrency: int) -> int:
    """Apply :func:`threads_per_task` to torch (if installed); returns the count."""
    threads = threads_per_task(concurrency)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["EMBEDFLEET_THREADS"] = str(threads)  # read by onnxruntime sessions
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    log.info("event=threads_configured threads=%d concurrency=%d", threads, concurrency)
    return threads
