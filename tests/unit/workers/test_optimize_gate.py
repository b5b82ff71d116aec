"""The optimize pipeline's pure parts: retrieval pairs, the gate, config registration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workers.config.loader import load_model_config
from workers.errors import ConfigError, ModelLoadError, QualityGateError
from workers.optimize.gate import Quality, check_gate, neighbour_overlap, ranks, retrieval_pairs
from workers.optimize.register import config_file, register, store_root


def _quality(cosine: float, mrr_source: float, mrr_candidate: float) -> Quality:
    return Quality(
        probes=100,
        pairs=90,
        cosine_mean=cosine,
        cosine_min=cosine - 0.01,
        mrr_source=mrr_source,
        mrr_candidate=mrr_candidate,
        recall_at_10_source=0.9,
        recall_at_10_candidate=0.9,
        neighbour_overlap_at_10=0.9,
    )


def test_retrieval_pairs_split_the_first_sentence_from_the_rest() -> None:
    texts = [
        "Unix process pipeline library. This is a C library for running pipelines.",
        "no sentence end here",
        "Short. But the rest of it is long enough to count.",
    ]

    queries, docs = retrieval_pairs(texts)

    assert queries == ["Unix process pipeline library."]
    assert docs == ["This is a C library for running pipelines."]


def test_ranks_put_each_query_s_own_document_first_when_they_match() -> None:
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(20, 8))

    assert ranks(docs, docs).tolist() == [0] * 20
    shuffled = ranks(docs[::-1], docs)
    assert (shuffled > 0).any()


def test_neighbour_overlap_is_one_for_the_same_vectors_and_lower_for_others() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 8))

    assert neighbour_overlap(a, a, k=5) == 1.0
    assert neighbour_overlap(a, rng.normal(size=(30, 8)), k=5) < 0.6


def test_the_gate_passes_at_its_thresholds_and_fails_just_below() -> None:
    # exactly at both thresholds: registered (no error)
    check_gate("m", _quality(0.99, 0.80, 0.79), min_cosine=0.99, max_drop=0.01 + 1e-12)
    # a hair below either one: refused, naming that one only
    with pytest.raises(QualityGateError, match="mean cosine") as low:
        check_gate("m", _quality(0.9899, 0.80, 0.79), min_cosine=0.99, max_drop=0.01 + 1e-12)
    assert "retrieval" not in str(low.value)
    with pytest.raises(QualityGateError, match="retrieval MRR dropped") as drop:
        check_gate("m", _quality(0.99, 0.80, 0.7899), min_cosine=0.99, max_drop=0.01 + 1e-12)
    assert "mean cosine" not in str(drop.value)


def test_the_gate_names_every_threshold_missed() -> None:
    with pytest.raises(QualityGateError) as err:
        check_gate("m-int8", _quality(0.95, 0.80, 0.70), min_cosine=0.99, max_drop=0.01)

    message = str(err.value)
    assert "m-int8" in message and "mean cosine 0.9500 < 0.99" in message
    assert "retrieval MRR dropped 0.1000 > 0.01" in message and "not registered" in message


def test_register_adds_a_valid_entry_and_keeps_the_others(tmp_path: Path) -> None:
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"a": {"type": "onnx", "model_path": "x.onnx", "RAM": 1}}))
    entry = {
        "type": "onnx",
        "model_path": "models/b/model.onnx",
        "RAM": 0.2,
        "version": "onnx-int8-abc",
        "provenance": {"source": "a", "method": "onnx-int8"},
    }

    register(config, "b", entry)

    data = json.loads(config.read_text())
    assert list(data) == ["a", "b"] and data["b"] == entry
    loaded = load_model_config(str(config))
    assert loaded["b"].provenance == {"source": "a", "method": "onnx-int8"}
    assert loaded["b"].base_dir == tmp_path


def test_register_refuses_an_existing_name_and_an_invalid_entry(tmp_path: Path) -> None:
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"a": {"type": "onnx", "model_path": "x.onnx", "RAM": 1}}))
    before = config.read_text()

    with pytest.raises(ConfigError, match="exists already"):
        register(config, "a", {"type": "onnx", "model_path": "y.onnx", "RAM": 1})
    with pytest.raises(ConfigError, match="RAM"):
        register(config, "c", {"type": "onnx", "model_path": "y.onnx", "RAM": -1})
    assert config.read_text() == before


def test_the_store_defaults_to_models_beside_the_config(tmp_path: Path) -> None:
    config = tmp_path / "models.json"
    config.write_text("{}")

    assert store_root(config, None) == tmp_path / "models"
    assert store_root(config, str(tmp_path / "given")) == tmp_path / "given"


def test_optimize_registers_in_json_files_only() -> None:
    with pytest.raises(ConfigError, match="JSON config file"):
        config_file("ssm:/embedfleet/models")


def _ort_has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def test_cpu_and_auto_entries_can_always_be_optimized() -> None:
    from workers.models.onnx import onnx_providers
    from workers.optimize.pipeline import check_device

    check_device("m", "cpu")  # accepted here, whatever onnxruntime this machine has
    check_device("m", "auto")
    # and what they run on: the CPU, or CUDA first for auto when the provider exists
    cpu_only = ["CPUExecutionProvider"]
    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("m", "cpu", with_cuda) == cpu_only
    assert onnx_providers("m", "auto", cpu_only) == cpu_only
    assert onnx_providers("m", "auto", with_cuda) == with_cuda


@pytest.mark.skipif("_ort_has_cuda()", reason="onnxruntime has a CUDA provider here")
def test_a_cuda_entry_is_refused_without_onnxruntime_s_cuda_provider() -> None:
    from workers.optimize.pipeline import check_device

    with pytest.raises(ModelLoadError, match="'m'.*onnxruntime-gpu"):
        check_device("m", "cuda")


@pytest.mark.skipif("not _ort_has_cuda()", reason="needs onnxruntime-gpu and a GPU")
def test_a_cuda_entry_is_accepted_with_onnxruntime_s_cuda_provider() -> None:
    from workers.optimize.pipeline import check_device

    check_device("m", "cuda")
