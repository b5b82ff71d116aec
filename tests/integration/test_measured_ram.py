"""Measured RAM that tracks the model: the real all-MiniLM-L6-v2 loaded, evicted and
reloaded in a real model cache, every figure checked against the bytes of its weights
(read from the safetensors file, not from the loaded model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.artifacts import export_onnx, minilm_dir, tiny_bert
from workers.config.loader import parse_model_config
from workers.memory.loading import measure
from workers.memory.model_cache import ModelCache
from workers.models.base import BaseEmbeddingModel
from workers.models.registry import build_model
from workers.models.sizes import onnx_initializer_bytes, safetensors_bytes, torch_bytes
from workers.observability.events import Events, ModelLoaded, Subscriber

GB = 1024**3
#: Bytes per element of the safetensors dtypes the model uses.


def weight_bytes(folder: Path) -> int:
    """Bytes of every tensor in ``folder/model.safetensors``, from its header."""
    return safetensors_bytes(folder / "model.safetensors")


class Loads(Subscriber):
    def __init__(self) -> None:
        self.events: list[ModelLoaded] = []

    def on_model_loaded(self, event: ModelLoaded) -> None:
        self.events.append(event)


def test_reloading_the_same_real_model_measures_its_tensors_every_time():
    # Given the real model under two names (two cache entries) and a budget for one
    folder = minilm_dir()
    tensors_gb = weight_bytes(folder) / GB
    assert 0.08 < tensors_gb < 0.09  # 22.7M fp32 parameters, ~91 MB
    # fp32: the figure is checked against the fp32 weights file (in bf16 the linear
    # layers hold half the bytes; see docs/MEASURED_RAM.md)
    entry = {"type": "sentence_transformer", "model_path": str(folder), "RAM": 0.1,
             "device": "cpu", "precision": "fp32"}  # fmt: skip
    config = parse_model_config(
        {
            "mini-a": entry,
            "mini-b": {**entry, "version": "b"},
            "mini-bert": {**entry, "type": "bert"},
        }
    )
    loads = Loads()
    cache = ModelCache(config.models, budget_gb=0.15, events=Events([loads]))
    # When it is loaded, evicted and reloaded, alone and in turn with the other names
    for name in ["mini-a"] * 3:
        cache.load(name)
        cache.unload(name)
    for name in ["mini-a", "mini-b", "mini-a", "mini-b", "mini-bert", "mini-a"]:
        cache.load(name)  # each load evicts the one before
    # Then every measured figure is within 25% of the weights' bytes, never 0
    figures = [(e.model, e.ram_gb_measured, e.ram_method) for e in loads.events]
    assert len(figures) == 9
    for model, gb, method in figures:
        assert abs(gb - tensors_gb) <= 0.25 * tensors_gb, (model, gb, method, tensors_gb)
        assert method in {"tensors", "rss"}
    row = {r["name"]: r for r in cache.snapshot()}["mini-a"]
    assert row["loaded"] and row["ram_method"] in {"tensors", "rss"}
    assert abs(row["ram_gb_measured"] - tensors_gb) <= 0.25 * tensors_gb


def test_a_model_lowered_to_bf16_measures_the_same_at_every_load():
    # Given the real model in bf16 (where this CPU runs it natively)
    from workers.models.precision import detect_hardware, native_precisions

    if "bf16" not in native_precisions(detect_hardware("cpu")):
        pytest.skip("this CPU has no native bf16 (avx512_bf16 / amx_bf16)")
    folder = minilm_dir()
    tensors_gb = weight_bytes(folder) / GB
    entry = {"type": "sentence_transformer", "model_path": str(folder), "RAM": 0.1,
             "device": "cpu", "precision": "bf16"}  # fmt: skip
    config = parse_model_config({"mini-bf16": entry})
    loads = Loads()
    cache = ModelCache(config.models, budget_gb=1.0, events=Events([loads]))
    # When it is loaded and unloaded three times in this process (the first load pays
    # the probe's fp32 pass, whose heap the allocator keeps for the next ones)
    for _ in range(3):
        cache.load("mini-bf16")
        cache.unload("mini-bf16")
    # Then every load reads the same figure (within 1.25x), never 0: its bf16 linears
    # plus its fp32 rest, below the fp32 weights
    for name in ["mini-bf16"]:
        figures = [e.ram_gb_measured for e in loads.events if e.model == name]
        assert len(figures) == 3 and min(figures) > 0, figures
        assert max(figures) <= 1.25 * min(figures), figures
        assert 0.5 * tensors_gb < min(figures) < tensors_gb, (figures, tensors_gb)
        assert {e.ram_method for e in loads.events if e.model == name} == {"tensors"}
        assert {e.precision for e in loads.events if e.model == name} == {"bf16"}


def test_torch_bytes_count_a_shared_storage_once():
    import torch

    tied = torch.nn.Sequential(torch.nn.Linear(100, 10, bias=False), torch.nn.Linear(10, 100))
    one = tied[0].weight.numel() * 4
    assert torch_bytes(tied) == one + tied[1].weight.numel() * 4 + 100 * 4
    tied[1].weight = torch.nn.Parameter(tied[0].weight.t())  # a view of the same storage
    assert torch_bytes(tied) == one + 100 * 4


def test_onnx_initializers_are_the_weights_of_the_graph(tmp_path):
    bert = tiny_bert(tmp_path / "bert")
    export_onnx(bert, tmp_path / "onnx")
    model = build_model(
        "t", parse_model_config({"t": {"type": "bert", "model_path": str(bert), "RAM": 0.1}})["t"]
    )
    expected = torch_bytes(model.model)
    got = onnx_initializer_bytes(tmp_path / "onnx" / "model.onnx")
    # the export folds the position ids buffer away and keeps every weight
    assert abs(got - expected) <= 0.05 * expected, (got, expected)


class _Remote(BaseEmbeddingModel):
    remote = True

    def encode(self, sentences):  # pragma: no cover - never called
        raise AssertionError


class _Sized(BaseEmbeddingModel):
    def __init__(self, parts):
        from workers.models.fidelity import PrecisionRecord

        self.parts = {k: v for k, v in parts.items() if not isinstance(v, bool)}
        lowered = [k for k, v in parts.items() if v is True]
        if lowered:
            self.precision_record = PrecisionRecord(lowered[0], lowered[0])

    def held_bytes(self):
        return self.parts

    def encode(self, sentences):  # pragma: no cover - never called
        raise AssertionError


@pytest.mark.parametrize(
    ("parts", "rss_gb", "expected"),
    [
        ({"tensors": GB // 10, "tokenizer": GB // 1000}, 0.05, (0.101, "tensors")),
        ({"tensors": GB // 10, "tokenizer": GB // 1000}, 0.3, (0.3, "rss")),
        ({"initializers": GB // 10, "tokenizer": 0}, -0.2, (0.1, "initializers")),
        # a torch model lowered to bf16: the load's RSS carries the probe's fp32 pass
        ({"tensors": GB // 10, "tokenizer": GB // 1000, "bf16": True}, 0.3, (0.101, "tensors")),
        ({"tensors": GB // 10, "tokenizer": GB // 1000, "fp32": True}, 0.3, (0.3, "rss")),
    ],
)
def test_the_larger_of_the_direct_figure_and_the_rss_growth_is_charged(parts, rss_gb, expected):
    model = _Sized(parts)
    footprint = measure(model, rss_gb)
    assert (round(footprint.gb, 3), footprint.method) == expected
    assert footprint.direct_gb == pytest.approx(sum(model.parts.values()) / GB)


def test_a_remote_model_says_remote_and_a_plain_one_counts_its_objects():
    spec = parse_model_config({"h": {"type": "tests.plugins:HashModel", "model_path": "x",
                                     "RAM": 0.1}})["h"]  # fmt: skip
    remote = measure(_Remote("r", spec), 0.0)
    assert (remote.gb, remote.method, remote.direct_gb) == (0.0, "remote", None)
    plain = measure(build_model("h", spec), 0.0)  # a plugin model: no tensors, no RSS growth
    assert plain.method == "objects" and plain.gb > 0


def test_a_loaded_remote_model_shows_remote_not_a_number():
    config = parse_model_config({"r": {"type": "tests.plugins:HashModel", "model_path": "x",
                                       "RAM": 0.1}})  # fmt: skip
    cache = ModelCache(config.models, 1.0, factory=_Remote, events=Events())
    cache.load("r")
    (row,) = cache.snapshot()
    assert row["loaded"] and row["ram_gb_measured"] is None and row["ram_method"] == "remote"
    assert cache.used_gb() == 0.1  # charged its configured RAM
