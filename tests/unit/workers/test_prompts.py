"""Prompts a model declares and the one a job gets (workers/models/prompts.py)."""

from __future__ import annotations

import json

import pytest

from tasks.contract.errors import InvalidRequest, UsageError
from tasks.contract.options import EmbedOptions, check_for_model
from tasks.contract.spec import parse_model_config
from workers.models.prompts import declared_prompts, prompt_text
from workers.reuse.store import reuse_key

PROMPTS = {"query": "query: ", "passage": "passage: "}


def test_the_job_gets_its_literal_prompt_else_the_named_else_the_default():
    assert prompt_text(EmbedOptions(prompt="x: "), "m", PROMPTS, "passage") == "x: "
    assert prompt_text(EmbedOptions(prompt=""), "m", PROMPTS, "passage") == ""
    assert prompt_text(EmbedOptions(prompt_name="query"), "m", PROMPTS, "passage") == "query: "
    assert prompt_text(EmbedOptions(), "m", PROMPTS, "passage") == "passage: "
    assert prompt_text(EmbedOptions(), "m", {}, None) == ""
    with pytest.raises(
        InvalidRequest, match="model 'm' has no prompt 'doc'; its prompts: passage, query"
    ):
        prompt_text(EmbedOptions(prompt_name="doc"), "m", PROMPTS, None)


def test_prompt_and_prompt_name_exclude_each_other_and_are_checked_at_submit():
    with pytest.raises(UsageError, match="exclude each other"):
        EmbedOptions.from_user(prompt="q: ", prompt_name="query")
    check_for_model(EmbedOptions(prompt_name="query"), "m", {"prompts": PROMPTS})
    check_for_model(EmbedOptions(prompt_name="any"), "m", {})  # unknown: the worker checks
    with pytest.raises(UsageError, match="its prompts: none"):
        check_for_model(EmbedOptions(prompt_name="query"), "m", {"prompts": {}})


def test_a_folder_declares_prompts_and_the_entry_overrides_them(tmp_path):
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": PROMPTS, "default_prompt_name": "passage"})
    )
    entry = {"type": "sentence_transformer", "model_path": str(tmp_path), "RAM": 0.1}
    config = parse_model_config(
        {
            "plain": entry,
            "tuned": {**entry, "prompts": {"query": "q: "}, "default_prompt_name": "query"},
            "bad": {**entry, "prompts": {"query": "q: "}, "default_prompt_name": "doc"},
        }
    )
    assert declared_prompts(config["plain"]) == (PROMPTS, "passage")
    assert declared_prompts(config["tuned"]) == ({**PROMPTS, "query": "q: "}, "query")
    assert "default_prompt_name" in config.errors["bad"] and "'doc'" in config.errors["bad"]


def test_the_cache_keys_on_the_prompt_and_the_window_only():
    assert reuse_key("v1") == "v1"
    assert reuse_key("v1", "query: ") != reuse_key("v1", "passage: ")
    assert reuse_key("v1", "query: ").startswith("v1+p")
    assert reuse_key("v1", "", "w256o32") == "v1+ww256o32"
