"""Memory readings: process RSS, the budget and the floor (env, cgroup, host), the memory
still available, and giving memory back to the OS.

In a container the cgroup is the truth, not the host: the budget is capped by the
cgroup limit, and "available" is the limit minus the cgroup's working set (usage less
its reclaimable inactive page cache, as the kubelet counts it). cgroup v2 is read from
``/sys/fs/cgroup/memory.*``, v1 from ``/sys/fs/cgroup/memory/memory.*``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from tasks.contract.logs import event_logger

log = event_logger(__name__)

GB = 1024**3
#: Share of host RAM used as the budget when neither env nor cgroup sets one.
DEFAULT_HOST_SHARE = 0.8
#: Default floor of available memory: the smaller of this many GB ...
DEFAULT_FLOOR_GB = 0.5
#: ... and this share of the memory limit (cgroup limit, else host RAM).
DEFAULT_FLOOR_SHARE = 0.05
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: cgroup v1 reports "no limit" as a huge number; anything above this is unlimited.
_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class CgroupMemory:
    """One reading of a cgroup's memory controller, in GB."""

    version: int
    limit_gb: float
    usage_gb: float
    inactive_file_gb: float

    @property
    def available_gb(self) -> float:
        """The limit less the working set (usage that cannot simply be reclaimed)."""
        working_set = max(0.0, self.usage_gb - self.inactive_file_gb)
        return max(0.0, self.limit_gb - working_set)


def rss_gb() -> float:
    """Resident set size of this process, in GB."""
    return float(psutil.Process().memory_info().rss) / GB


def _read_int(path: Path) -> int | None:
    """An integer file of the cgroup fs; None when missing, ``max`` or unparsable."""
    try:
        raw = path.read_text().strip()
        return int(raw)
    except (OSError, ValueError):
        return None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def read_cgroup(root: Path = CGROUP_ROOT) -> CgroupMemory | None:
    """The container's memory limit and usage (v2, else v1), or None when unlimited."""
    layouts = (
        (2, root, "memory.max", "memory.current", "inactive_file"),
        (1, root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
         "total_inactive_file"),
    )  # fmt: skip
    for version, folder, limit_file, usage_file, inactive_key in layouts:
        limit = _read_int(folder / limit_file)
        if limit is None or limit >= _V1_UNLIMITED:
            continue
        usage = _read_int(folder / usage_file) or 0
        inactive = _stat_value(folder / "memory.stat", inactive_key)
        return CgroupMemory(version, limit / GB, usage / GB, inactive / GB)
    return None


def cgroup_limit_gb(root: Path = CGROUP_ROOT) -> float | None:
    """The container's memory limit in GB, or None when unlimited."""
    reading = read_cgroup(root)
    return reading.limit_gb if reading else None


def memory_budget_gb(limit_gb: float | None = None, root: Path = CGROUP_ROOT) -> float:
    """Model memory budget of one worker: the smaller of ``limit_gb``
    (``EMBEDFLEET_MEMORY_LIMIT_GB``, checked > 0 by ``tasks.contract.settings``) and the cgroup
    limit; else 80% of host RAM."""
    limits = []
    if limit_gb is not None:
        limits.append(limit_gb)
    cgroup = cgroup_limit_gb(root)
    if cgroup is not None:
        limits.append(cgroup)
    if limits:
        return min(limits)
    return float(psutil.virtual_memory().total) / GB * DEFAULT_HOST_SHARE


def available_gb(root: Path = CGROUP_ROOT) -> float:
    """Memory this process could still get, in GB: the host's available memory, and
    in a container no more than the cgroup's limit less its working set."""
    host = float(psutil.virtual_memory().available) / GB
    cgroup = read_cgroup(root)
    return min(host, cgroup.available_gb) if cgroup else host


def memory_floor_gb(floor_gb: float | None = None, root: Path = CGROUP_ROOT) -> float:
    """Available memory below which the watchdog evicts: ``floor_gb``
    (``EMBEDFLEET_MEMORY_FLOOR_GB``), else the smaller of 0.5 GB and 5% of the limit
    (cgroup limit, else host RAM)."""
    if floor_gb is not None:
        return max(0.0, floor_gb)
    cgroup = read_cgroup(root)
    total = cgroup.limit_gb if cgroup else float(psutil.virtual_memory().total) / GB
    return min(DEFAULT_FLOOR_GB, DEFAULT_FLOOR_SHARE * total)


@functools.cache
def _malloc_trim_fn() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (find_library runs ldconfig)."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
    except OSError:
        trim = None
    if trim is None:  # not glibc (musl, macOS): nothing to trim
        log.debug("event=malloc_trim_unavailable")
    return trim


def _malloc_trim() -> None:
    trim = _malloc_trim_fn()
    if trim is not None:
        trim(0)


def release_memory() -> None:
    """Give freed memory back to the OS: collect garbage, then ``malloc_trim(0)`` on glibc
    (freed heap pages otherwise stay in the process, counted in its RSS)."""
    gc.collect()
    _malloc_trim()


def release_until(
    rss_before_gb: float,
    expected_gb: float,
    rss: Callable[[], float] = rss_gb,
    rounds: int = 3,
) -> float:
    """After an unload: :func:`release_memory` until RSS has fallen by at least half of
    ``expected_gb`` (up to ``rounds`` tries; later rounds collect garbage that earlier
    finalizers freed). Returns the RSS after, in GB."""
    target = rss_before_gb - expected_gb / 2
    after = rss_before_gb
    for _ in range(max(1, rounds)):
        release_memory()
        after = rss()
        if after <= target:
            break
    return after
