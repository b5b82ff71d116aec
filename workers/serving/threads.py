"""Compute threads: set torch / onnxruntime intra-op threads explicitly.

Default: the cores this process may use divided by the pool concurrency, so two
tasks encoding at once do not fight over the same cores. ``EMBEDFLEET_THREADS``
(``Settings.threads``) overrides it.
"""

from __future__ import annotations

import os

from tasks.contract.host import usable_cores
from tasks.contract.logs import event_logger
from workers.models.compute_threads import apply_torch_threads, set_threads

log = event_logger(__name__)


def threads_per_task(concurrency: int, threads: int | None = None) -> int:
    """Intra-op threads one task should use: ``threads`` when set, else cores / tasks."""
    if threads:
        return max(1, threads)
    return max(1, usable_cores() // max(1, concurrency))


def configure_threads(
    concurrency: int, threads: int | None = None, import_torch: bool = False
) -> int:
    """Apply :func:`threads_per_task` to the onnxruntime sessions this process opens and
    to torch (if installed): now if it is imported (or ``import_torch``), else when a
    model load brings it in; returns the count."""
    threads = threads_per_task(concurrency, threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_threads(threads)
    if import_torch:
        try:
            import torch  # noqa: F401  (given the count just below)
        except ImportError:
            pass
        apply_torch_threads()
    log.info("event=threads_configured threads=%d concurrency=%d", threads, concurrency)
    return threads
