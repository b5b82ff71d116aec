"""A model type is one file: what it can do is read from its class, nowhere else."""

from __future__ import annotations

import sys

from tasks.contract.spec import parse_model_config as parse_shape_only
from workers.config.loader import parse_model_config
from workers.memory.loading import import_type
from workers.models import registry
from workers.models.s3 import s3_formats
from workers.observability.token_counts import TokenCounter, estimate

PLUGIN = "tests.plugins:TokenizedHashModel"
MINILM_PATH = "sentence-transformers/all-MiniLM-L6-v2"


def test_the_registry_is_one_dotted_path_per_type_and_each_resolves():
    for name, target in registry.TYPES.items():
        assert ":" in target
        assert registry.resolve_class(name).__module__ == target.partition(":")[0]


def test_s3_formats_come_from_the_classes_that_declare_them_in_their_order():
    assert [name for name, _ in s3_formats()] == ["sentence_transformer", "bert", "onnx"]
    assert registry.resolve_class("sagemaker").remote
    assert not any(registry.resolve_class(n).remote for n in ("bert", "onnx", "s3"))


def test_a_plugin_types_declared_tokenizer_is_used_for_token_counts():
    # Given a type defined only in the test suite that declares an HF tokenizer folder
    config = parse_model_config(
        {
            "declared": {"type": PLUGIN, "model_path": MINILM_PATH, "RAM": 0.1},
            "plain": {"type": "tests.plugins:HashModel", "model_path": MINILM_PATH, "RAM": 0.1},
        }
    )
    text = " ".join(["a"] * 20)  # 20 word pieces; the estimate says 12
    counter = TokenCounter()
    # Then tokens are counted with the tokenizer in its folder; the other type estimates
    assert counter.count("declared", config["declared"], [text]) == 22
    assert counter.count("plain", config["plain"], [text]) == estimate([text], 256) == 12


def test_the_libraries_a_class_declares_are_imported_before_a_measured_load(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    spec = parse_model_config({"m": {"type": PLUGIN, "model_path": "x", "RAM": 0.1}})["m"]
    import_type(spec)
    assert "colorsys" in sys.modules


def test_an_s3_entrys_format_must_be_a_type_that_declares_an_s3_format():
    entry = {"type": "s3", "model_path": "s3://b/k", "RAM": 0.5}
    config = parse_model_config(
        {
            "ok": {**entry, "format": "bert"},
            "remote": {**entry, "format": "sagemaker"},
            "nonsense": {**entry, "format": "Not A Type"},
        }  # fmt: skip
    )
    assert list(config) == ["ok"]
    assert (
        "format" in config.errors["remote"]
        and "unknown format 'sagemaker'" in (config.errors["remote"])
    )
    assert "not a format" in config.errors["nonsense"]
    # a producer (no registry) checks only the shape
    shape = parse_shape_only({"remote": {**entry, "format": "sagemaker"}})
    assert list(shape) == ["remote"]


def test_what_optimize_exports_and_what_is_remote_are_read_from_the_classes():
    from workers.config.preflight import source_problem
    from workers.optimize.pipeline import exportable_types

    assert exportable_types() == ["sentence_transformer"]
    assert registry.resolve_class("sentence_transformer").exports_to == "onnx"
    # a remote type's model_path is an endpoint name: preflight looks for no files
    spec = parse_shape_only(
        {"ep": {"type": "sagemaker", "model_path": "no-such-endpoint", "RAM": 0.1}}
    )["ep"]
    assert source_problem("ep", spec) is None


def test_which_types_cut_token_windows_is_read_from_their_class():
    # long_text=mean|windows need window_spans: the types holding a tokenizer have it
    assert [n for n in sorted(registry.TYPES) if registry.cuts_windows(n)] == [
        "bert", "onnx", "s3", "sentence_transformer",
    ]  # fmt: skip
    assert registry.cuts_windows("sagemaker") is False
    assert registry.cuts_windows("no.such.module:Thing") is None  # not importable here
