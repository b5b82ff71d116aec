"""The ``onnx`` and ``bert`` wrappers on a tiny random BERT and its ONNX export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.contract.settings import load_settings
from tests.artifacts import export_onnx, tiny_bert
from workers.config.loader import parse_model_config
from workers.errors import ModelLoadError
from workers.models.registry import build_model
from workers.models.s3 import detect_format

TEXTS = ["short", "a somewhat longer text, with punctuation!", "x " * 300, "naïve café"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def onnx_dir(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("tiny-onnx")
    export_onnx(bert_dir, dest)
    return dest


def build(entry: dict, name: str = "m"):
    config = parse_model_config({name: {"RAM": 0.1, "device": "cpu", **entry}})
    assert not config.errors, config.errors
    return build_model(name, config[name])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_onnx_export_matches_the_bert_wrapper(bert_dir, onnx_dir, pooling):
    bert = build({"type": "bert", "model_path": str(bert_dir), "pooling": pooling})
    onnx = build({"type": "onnx", "model_path": str(onnx_dir), "pooling": pooling})
    a, b = bert.encode(TEXTS), onnx.encode(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 32) and b.dtype == np.float32
    assert cosine(a, b).min() >= 0.9999
    assert onnx.dimension == bert.dimension == 32


def test_normalize_gives_unit_vectors_and_batches_do_not_change_results(onnx_dir):
    one_by_one = build(
        {"type": "onnx", "model_path": str(onnx_dir), "normalize": True, "batch_size": 1}
    )
    together = build({"type": "onnx", "model_path": str(onnx_dir), "normalize": True})
    a, b = one_by_one.encode(TEXTS), together.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_input_names_come_from_the_graph(bert_dir, tmp_path):
    # Given a graph with no token_type_ids input, as many exports are
    export_onnx(bert_dir, tmp_path, filename="custom.onnx", token_type_ids=False)
    model = build({"type": "onnx", "model_path": str(tmp_path / "custom.onnx")})
    assert list(model.inputs) == ["input_ids", "attention_mask"]
    # Then it encodes what the full graph encodes (token types are all 0 for one text)
    full = build({"type": "bert", "model_path": str(bert_dir)})
    assert cosine(model.encode(TEXTS), full.encode(TEXTS)).min() >= 0.9999


def test_threads_are_set_explicitly(onnx_dir):
    from workers.models.compute_threads import onnx_threads, set_threads, threads_set
    from workers.serving.threads import configure_threads

    assert build({"type": "onnx", "model_path": str(onnx_dir)}).threads == onnx_threads() == 1
    torch = pytest.importorskip("torch")  # imported here already (the fixtures' exports)
    count, threads = threads_set(), torch.get_num_threads()
    try:
        # the worker's boot: EMBEDFLEET_THREADS=2 reaches the sessions opened after it
        configure_threads(4, load_settings({"EMBEDFLEET_THREADS": "2"}).threads)
        model = build({"type": "onnx", "model_path": str(onnx_dir)})
        assert model.threads == 2
        assert model.session.get_session_options().intra_op_num_threads == 2
        assert torch.get_num_threads() == 2  # and torch's (test_worker_threads: lazily)
    finally:
        set_threads(count)
        torch.set_num_threads(threads)


def test_max_seq_length_truncates(bert_dir):
    model = build({"type": "bert", "model_path": str(bert_dir), "max_seq_length": 8})
    head = "one two three four five six"
    a, b = model.encode([head + " seven eight nine", head + " alpha beta gamma"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # both cut after six words + 2 specials
    full = build({"type": "bert", "model_path": str(bert_dir)})
    a, b = full.encode([head + " seven eight nine", head + " alpha beta gamma"])
    assert not np.allclose(a, b, atol=1e-3)


def _ort_has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _torch_has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_the_device_choice_on_either_kind_of_host():
    # Both answers of "is there a GPU?", whatever this host has: every branch runs here
    from workers.models.device import pick_torch_device
    from workers.models.onnx import onnx_providers

    assert onnx_providers("m", "cpu", WITH_CUDA) == CPU_ONLY
    assert onnx_providers("m", "auto", WITH_CUDA) == WITH_CUDA
    assert onnx_providers("m", "cuda", WITH_CUDA) == WITH_CUDA
    assert onnx_providers("m", "auto", CPU_ONLY) == CPU_ONLY
    with pytest.raises(ModelLoadError, match="'m'.*no CUDAExecutionProvider.*onnxruntime-gpu"):
        onnx_providers("m", "cuda", CPU_ONLY)
    assert [pick_torch_device(d, cuda_available=True) for d in ("cpu", "auto", "cuda")] == [
        "cpu",
        "cuda",
        "cuda",
    ]
    assert pick_torch_device("auto", cuda_available=False) == "cpu"
    with pytest.raises(ModelLoadError, match="torch sees no CUDA device"):
        pick_torch_device("cuda", cuda_available=False)


@pytest.mark.skipif("_ort_has_cuda()", reason="onnxruntime has a CUDA provider here")
def test_onnx_cuda_is_refused_clearly_where_there_is_none(onnx_dir):
    with pytest.raises(ModelLoadError, match="CUDAExecutionProvider"):
        build({"type": "onnx", "model_path": str(onnx_dir), "device": "cuda"})
    auto = build({"type": "onnx", "model_path": str(onnx_dir), "device": "auto"})
    assert auto.session.get_providers() == CPU_ONLY


@pytest.mark.skipif("not _ort_has_cuda()", reason="needs onnxruntime-gpu and a GPU")
def test_onnx_runs_on_cuda_where_there_is_one(onnx_dir):
    cpu = build({"type": "onnx", "model_path": str(onnx_dir), "device": "cpu"})
    for device in ("cuda", "auto"):
        gpu = build({"type": "onnx", "model_path": str(onnx_dir), "device": device})
        assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"
        assert cosine(gpu.encode(TEXTS), cpu.encode(TEXTS)).min() >= 0.999


@pytest.mark.skipif("_torch_has_cuda()", reason="torch sees a GPU here")
def test_torch_cuda_is_refused_clearly_where_there_is_none(bert_dir):
    with pytest.raises(ModelLoadError, match="cuda"):
        build({"type": "bert", "model_path": str(bert_dir), "device": "cuda"})
    assert build({"type": "bert", "model_path": str(bert_dir), "device": "auto"}).device == "cpu"


@pytest.mark.skipif("not _torch_has_cuda()", reason="needs a GPU torch can see")
def test_torch_runs_on_cuda_where_there_is_one(bert_dir):
    cpu = build({"type": "bert", "model_path": str(bert_dir), "device": "cpu"})
    for device in ("cuda", "auto"):
        gpu = build({"type": "bert", "model_path": str(bert_dir), "device": device})
        assert gpu.device == "cuda"
        assert cosine(gpu.encode(TEXTS), cpu.encode(TEXTS)).min() >= 0.999


def test_bad_onnx_models_fail_with_the_reason(onnx_dir, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(onnx_dir, corrupt)
    (corrupt / "model.onnx").write_bytes(b"this is not a protobuf graph")
    with pytest.raises(ModelLoadError, match="cannot load .*model.onnx"):
        build({"type": "onnx", "model_path": str(corrupt)})
    with pytest.raises(ModelLoadError, match="does not exist"):
        build({"type": "onnx", "model_path": str(tmp_path / "missing" / "model.onnx")})
    two = tmp_path / "two"
    shutil.copytree(onnx_dir, two)
    shutil.copy(two / "model.onnx", two / "other.onnx")
    (two / "model.onnx").rename(two / "first.onnx")
    with pytest.raises(ModelLoadError, match="several .onnx files"):
        build({"type": "onnx", "model_path": str(two)})
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(onnx_dir / "model.onnx", bare / "model.onnx")
    with pytest.raises(ModelLoadError, match="no tokenizer beside"):
        build({"type": "onnx", "model_path": str(bare)})
    # a tokenizer named in the config makes the bare graph usable
    model = build({"type": "onnx", "model_path": str(bare), "tokenizer": str(onnx_dir)})
    assert model.encode(["ok"]).shape == (1, 32)


def test_format_of_a_downloaded_model(bert_dir, onnx_dir, tmp_path):
    assert detect_format("m", onnx_dir / "model.onnx") == "onnx"
    assert detect_format("m", bert_dir) == "bert"
    st = tmp_path / "st"
    shutil.copytree(bert_dir, st)
    (st / "modules.json").write_text("[]")
    assert detect_format("m", st) == "sentence_transformer"
    only_graph = tmp_path / "g"
    only_graph.mkdir()
    shutil.copy(onnx_dir / "model.onnx", only_graph / "model.onnx")
    shutil.copy(bert_dir / "config.json", only_graph / "config.json")
    assert detect_format("m", only_graph) == "onnx"
    (tmp_path / "weights.bin").write_bytes(b"?")
    with pytest.raises(ModelLoadError, match="unknown format of 'weights.bin'"):
        detect_format("m", tmp_path / "weights.bin")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("hi")
    with pytest.raises(ModelLoadError, match="unknown format of the folder"):
        detect_format("m", empty)
