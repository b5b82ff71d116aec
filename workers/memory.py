"""Memory readings: process RSS, the budget (env, cgroup, host), and giving memory back."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

GB = 1024**3
#: Share of host RAM used as the budget when neither env nor cgroup sets one.
DEFAULT_HOST_SHARE = 0.8
_CGROUP_V2 = Path("/sys/fs/cgroup/memory.max")
_CGROUP_V1 = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
#: cgroup v1 reports "no limit" as a huge number; anything above this is unlimited.
_V1_UNLIMITED = 1 << 60


def rss_gb() -> float:
    """Resident set size of this process, in GB."""
    return psutil.Process().memory_info().rss / GB


def cgroup_limit_gb(v2: Path = _CGROUP_V2, v1: Path = _CGROUP_V1) -> float | None:
    """The container's memory limit in GB (cgroup v2, else v1), or None when unlimited."""
    for path in (v2, v1):
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw == "max":
            return None
        try:
            value = int(raw)
        except ValueError:
            continue
        return None if value >= _V1_UNLIMITED else value / GB
    return None


def memory_budget_gb() -> float:
    """Model memory budget of one worker: the smaller of the env var and the cgroup
    limit; else 80% of host RAM."""
    limits = []
    env = os.environ.get("EMBEDFLEET_MEMORY_LIMIT_GB")
    if env:
        limits.append(float(env))
    cgroup = cgroup_limit_gb()
    if cgroup is not None:
        limits.append(cgroup)
    if limits:
        return min(limits)
    return psutil.virtual_memory().total / GB * DEFAULT_HOST_SHARE


def available_gb() -> float:
    """Memory the system could still hand out, in GB."""
    return psutil.virtual_memory().available / GB


def release_memory() -> None:
    """Give freed memory back to the OS: collect garbage, then ``malloc_trim(0)`` on glibc."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        libc = ctypes.CDLL(libc_name)
        trim = getattr(libc, "malloc_trim", None)
        if trim is not None:
            trim(0)
    except OSError:  # not glibc
        log.debug("event=malloc_trim_unavailable")
