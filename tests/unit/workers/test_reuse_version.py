"""The embedding cache keys vectors by the precision a model runs in, beside its version."""

from __future__ import annotations

import numpy as np

from tasks.contract.spec import parse_model_config
from workers.models.base import BaseEmbeddingModel
from workers.models.fidelity import PrecisionRecord
from workers.serving.runtime import reuse_version

SPEC = parse_model_config(
    {"m": {"type": "tests.plugins:HashModel", "model_path": "x", "RAM": 0.1}}
)["m"]


class Model(BaseEmbeddingModel):
    def encode(self, sentences: list[str]) -> np.ndarray:  # pragma: no cover - not called
        return np.zeros((len(sentences), 2), dtype=np.float32)


def _model(precision: str | None) -> Model:
    model = Model("m", SPEC)
    if precision is not None:
        model.precision_record = PrecisionRecord("auto", precision, 0.99999)
    return model


def test_fp32_and_types_without_a_choice_keep_the_version_as_it_was():
    assert reuse_version(_model(None), "h1") == "h1"
    assert reuse_version(_model("fp32"), "h1") == "h1"


def test_a_lower_precision_gets_entries_of_its_own():
    assert reuse_version(_model("bf16"), "h1") == "h1+bf16"
    assert reuse_version(_model("fp16"), "h1") != reuse_version(_model("bf16"), "h1")
