"""Precision per machine: detection, the fidelity probe, fallback and its load errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tasks.contract.settings import load_settings
from tests.artifacts import tiny_bert
from workers.config.loader import parse_model_config
from workers.errors import ConfigError, ModelLoadError
from workers.models import precision as precision_mod
from workers.models.fidelity import (
    MIN_COSINE,
    MIN_COSINE_ENV,
    min_cosine_bar,
    probe_texts,
    row_cosines,
    set_min_cosine_bar,
    settle_precision,
)
from workers.models.precision import (
    Hardware,
    choose_precision,
    detect_hardware,
    native_precisions,
    read_cpu_flags,
)
from workers.models.registry import build_model

AVX2 = "fpu sse sse2 avx f16c fma avx2"
AVX512_BF16 = AVX2 + " avx512f avx512bw avx512_vnni avx512_bf16"  # AMD Zen 4
AMX = AVX512_BF16 + " avx512_fp16 amx_bf16 amx_tile amx_int8"  # Sapphire Rapids


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
    )
    return path


def cpu(flags: str) -> Hardware:
    return Hardware("cpu", frozenset(flags.split()))


# -- detection ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "picked"), [(AMX, "bf16"), (AVX512_BF16, "bf16"), (AVX2, "fp32"), ("", "fp32")]
)
def test_auto_picks_bf16_where_the_cpu_has_amx_or_avx512_bf16(tmp_path, flags, picked):
    hw = Hardware("cpu", read_cpu_flags(cpuinfo(tmp_path, flags)))
    assert choose_precision("m", "auto", hw) == picked


def test_detection_reads_the_flags_lscpu_shows(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_mod, "CPUINFO", cpuinfo(tmp_path, AVX512_BF16))
    hw = detect_hardware("cpu")
    assert "avx512_bf16" in hw.cpu_flags and hw.describe() == "cpu avx512_bf16"
    monkeypatch.setattr(precision_mod, "CPUINFO", tmp_path / "missing")
    assert detect_hardware("cpu").cpu_flags == frozenset()  # unreadable: fp32


def test_cuda_picks_fp16_on_tensor_cores_else_fp32():
    assert choose_precision("m", "auto", Hardware("cuda", cuda_capability=(9, 0))) == "fp16"
    assert native_precisions(Hardware("cuda", cuda_capability=(8, 0))) == ("fp16", "bf16", "fp32")
    assert choose_precision("m", "auto", Hardware("cuda", cuda_capability=(6, 1))) == "fp32"


def test_explicit_precision_the_hardware_lacks_is_a_load_error_naming_the_flags():
    assert choose_precision("m", "bf16", cpu(AVX512_BF16)) == "bf16"
    assert choose_precision("m", "fp32", cpu(AMX)) == "fp32"
    with pytest.raises(ModelLoadError, match=r"'m'.*'bf16' needs CPU flag amx_bf16 or avx512_bf16"):
        choose_precision("m", "bf16", cpu(AVX2))
    with pytest.raises(ModelLoadError, match="'fp16' needs CPU flag amx_fp16 or avx512_fp16"):
        choose_precision("m", "fp16", cpu(AVX512_BF16))
    with pytest.raises(ModelLoadError, match="needs CUDA capability 8.0"):
        choose_precision("m", "bf16", Hardware("cuda", cuda_capability=(7, 5)))


def test_the_precision_field_is_validated_and_defaults_to_auto():
    config = parse_model_config(
        {
            "a": {"type": "bert", "model_path": "x", "RAM": 1},
            "b": {"type": "bert", "model_path": "x", "RAM": 1, "precision": "bf16"},
            "c": {"type": "bert", "model_path": "x", "RAM": 1, "precision": "int4"},
        }
    )
    assert config["a"].precision == "auto" and config["b"].precision == "bf16"
    assert "field 'precision'" in config.errors["c"]


# -- the probe, on a fake model ----------------------------------------------------------
class FakeModel:
    """fp32 vectors, and a 'lowered' mode that adds a chosen amount of noise."""

    def __init__(self, noise: float) -> None:
        self.noise, self.lowered, self.encodes, self.restored = noise, False, 0, 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encodes += 1
        base = np.stack([np.random.default_rng(len(t)).normal(size=16) for t in texts])
        if self.lowered:
            base = base + np.random.default_rng(1).normal(scale=self.noise, size=base.shape)
        return base

    def lower(self, precision: str):
        assert precision == "bf16"
        self.lowered = True

        def restore() -> None:
            self.lowered, self.restored = False, self.restored + 1

        return restore


def test_a_faithful_precision_is_kept_with_its_probe_minimum():
    model = FakeModel(noise=1e-4)
    record = settle_precision("m", "auto", cpu(AVX512_BF16), model.encode, model.lower)
    assert record.precision == "bf16" and model.lowered and not model.restored
    assert MIN_COSINE <= record.probe_min_cosine < 1.0


def test_a_lossy_precision_under_auto_falls_back_to_fp32_and_says_why(caplog):
    model = FakeModel(noise=0.05)
    with caplog.at_level(logging.WARNING, logger="workers.models.fidelity"):
        record = settle_precision("m", "auto", cpu(AMX), model.encode, model.lower)
    assert record.precision == "fp32" and record.probe_min_cosine < MIN_COSINE
    assert not model.lowered and model.restored == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert "event=precision_fallback model=m" in line and "failed the fidelity probe" in line


def test_a_lossy_explicit_precision_is_a_load_error_that_says_so():
    model = FakeModel(noise=0.05)
    with pytest.raises(ModelLoadError, match=r"'m': precision bf16 failed the fidelity probe"):
        settle_precision("m", "bf16", cpu(AVX512_BF16), model.encode, model.lower)
    assert not model.lowered


def test_no_probe_runs_where_fp32_is_chosen():
    model = FakeModel(noise=0.05)
    record = settle_precision("m", "auto", cpu(AVX2), model.encode, model.lower)
    assert (record.precision, record.probe_min_cosine, model.encodes) == ("fp32", None, 0)


def test_nan_vectors_fail_the_probe():
    a = np.ones((2, 4))
    assert np.isnan(row_cosines(a, np.full((2, 4), np.nan))).all()
    model = FakeModel(noise=np.nan)
    record = settle_precision("m", "auto", cpu(AVX512_BF16), model.encode, model.lower)
    assert record.precision == "fp32" and record.probe_min_cosine == -1.0


@pytest.fixture
def bar():
    """Set this process's probe bar for one test (a worker sets it at boot)."""
    yield set_min_cosine_bar
    set_min_cosine_bar(MIN_COSINE)


def test_the_bar_comes_from_the_settings(bar):
    assert min_cosine_bar() == MIN_COSINE
    assert load_settings({MIN_COSINE_ENV: "0.999"}).precision_min_cosine == 0.999
    bar(0.999)
    assert min_cosine_bar() == 0.999
    with pytest.raises(ConfigError, match=MIN_COSINE_ENV):
        load_settings({MIN_COSINE_ENV: "1.5"})


def test_probe_texts_are_shipped_varied_and_include_long_ones():
    texts = probe_texts()
    assert len(texts) >= 30 and len(set(texts)) == len(texts)
    assert max(map(len, texts)) > 1000 and min(map(len, texts)) < 5
    assert any(not t.isascii() for t in texts)


# -- the probe on a real torch model (tiny random BERT), bf16 detected ------------------------
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def bf16_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_mod, "CPUINFO", cpuinfo(tmp_path, AVX512_BF16))


def build(bert_dir: Path, **entry):
    config = parse_model_config(
        {"t": {"type": "bert", "model_path": str(bert_dir), "RAM": 0.1, "device": "cpu", **entry}}
    )
    return build_model("t", config["t"])


def test_bert_runs_its_linear_layers_in_bf16_when_the_probe_passes(bert_dir, bf16_cpu, bar):
    from workers.models.lowering import LowPrecisionLinear

    bar(0.99)  # a random tiny BERT is not what the bar is for
    model = build(bert_dir)
    assert model.precision_record.precision == "bf16"
    assert model.precision_record.probe_min_cosine >= 0.99
    layers = [m for m in model.model.modules() if isinstance(m, LowPrecisionLinear)]
    assert layers and all(
        m.weight.dtype.is_floating_point and m.weight.itemsize == 2 for m in layers
    )
    assert model.encode(["hello"]).dtype == np.float32 and model.batch_size == 16


def test_bert_falls_back_to_its_exact_fp32_weights_when_the_probe_fails(bert_dir, bf16_cpu, bar):
    reference = build(bert_dir, precision="fp32").encode(probe_texts())
    bar(1.0)  # forced: no bf16 row is exactly fp32
    model = build(bert_dir)
    assert model.precision_record.precision == "fp32"
    assert model.precision_record.probe_min_cosine < 1.0
    np.testing.assert_array_equal(model.encode(probe_texts()), reference)
    with pytest.raises(ModelLoadError, match="precision bf16 failed the fidelity probe"):
        build(bert_dir, precision="bf16")


def test_onnx_stays_fp32_and_refuses_an_explicit_lower_precision(tmp_path):
    from workers.models.onnx import OnnxEmbeddingWrapper

    config = parse_model_config(
        {"o": {"type": "onnx", "model_path": str(tmp_path), "RAM": 0.1, "precision": "bf16"}}
    )
    with pytest.raises(ModelLoadError, match="precision 'bf16' is not offered for type onnx"):
        OnnxEmbeddingWrapper("o", config["o"])


def test_bf16_on_a_cpu_batches_16_texts_unless_the_config_says_otherwise():
    from workers.models.precision import batch_size_for

    config = parse_model_config(
        {
            "a": {"type": "bert", "model_path": "x", "RAM": 1},
            "b": {"type": "bert", "model_path": "x", "RAM": 1, "batch_size": 64},
        }
    )
    assert batch_size_for(config["a"], "bf16", "cpu") == 16
    assert batch_size_for(config["a"], "fp32", "cpu") == 32
    assert batch_size_for(config["a"], "fp16", "cuda") == 32
    assert batch_size_for(config["b"], "bf16", "cpu") == 64
