"""A model type for tests that must hold a chunk mid-encode: it waits at a gate file.

A text ``GATE:<path> ...`` makes :class:`GateModel` touch ``<path>.entered`` and wait
until ``<path>`` exists (at most :data:`GATE_TIMEOUT_S`), so a test knows a chunk is
running and decides when it ends, without sleeps or timing guesses.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tests.plugins import HashModel

#: Prefix of the texts that hold their chunk at a gate.
GATE_PREFIX = "GATE:"
#: Seconds a chunk waits at a closed gate before it gives up (fails).
GATE_TIMEOUT_S = 120.0


class GateModel(HashModel):
    """:class:`HashModel` whose chunks wait at the gate file their texts name."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        for gate in sorted({_gate(t) for t in sentences if t.startswith(GATE_PREFIX)}):
            Path(f"{gate}.entered").touch()
            deadline = time.monotonic() + GATE_TIMEOUT_S
            while not gate.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gate {gate} stayed closed")
                time.sleep(0.02)
        return super().encode(sentences)


def _gate(text: str) -> Path:
    return Path(text[len(GATE_PREFIX) :].split(" ", 1)[0])
