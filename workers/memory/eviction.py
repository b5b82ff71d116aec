"""Eviction policies: which loaded model goes first when memory is short.

``largest`` is the seed's policy (highest RAM first); ``lru`` evicts the least recently
used. Under both, preloaded models go last. Chosen by ``EMBEDFLEET_EVICTION_POLICY``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

DEFAULT_POLICY = "largest"


class Evictable(Protocol):
    """What a policy needs to know of a loaded model."""

    name: str
    last_used: float

    @property
    def ram_gb(self) -> float: ...

    @property
    def preload(self) -> bool: ...


def _largest(entry: Evictable) -> tuple[bool, float, float]:
    return (entry.preload, -entry.ram_gb, entry.last_used)


def _lru(entry: Evictable) -> tuple[bool, float, float]:
    return (entry.preload, entry.last_used, -entry.ram_gb)


POLICIES: dict[str, Callable[[Evictable], tuple[bool, float, float]]] = {
    "largest": _largest,
    "lru": _lru,
}


T = TypeVar("T", bound=Evictable)


def eviction_order(entries: Iterable[T], policy: str) -> list[T]:
    """Candidates in the order they should be evicted."""
    return sorted(entries, key=POLICIES[policy])
