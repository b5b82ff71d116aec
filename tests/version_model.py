"""A gated test model whose vectors depend on its configured version, so a job that
mixed two versions would show it."""

from __future__ import annotations

import numpy as np

from tests.gate_model import GateModel


class VersionedGateModel(GateModel):
    """:class:`GateModel` vectors plus the entry's ``version`` (a number)."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        return super().encode(sentences) + float(self.spec.version or 0)
