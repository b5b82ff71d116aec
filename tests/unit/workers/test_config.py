import json

import pytest

from tasks.contract.spec import spec_version
from workers.config.loader import load_model_config, parse_model_config
from workers.errors import ConfigError

GOOD = {"type": "sentence_transformer", "model_path": "org/model", "RAM": 0.5}


def test_the_shipped_models_json_is_valid():
    config = load_model_config("models.json")
    assert "all-MiniLM-L6-v2" in config and not config.errors
    assert config["all-MiniLM-L6-v2"].preload is True


def test_bad_entries_are_named_and_good_ones_still_load():
    config = parse_model_config(
        {
            "good": GOOD,
            "neg": {**GOOD, "RAM": -1},
            "typo": {**GOOD, "pooling": "median"},
            "extra": {**GOOD, "colour": "red"},
            "kind": {**GOOD, "type": "magic"},
            "missing": {"type": "sentence_transformer", "RAM": 1},
            "notobj": [1],
        }
    )
    assert list(config) == ["good"]
    assert "'neg'" in config.errors["neg"] and "RAM" in config.errors["neg"]
    assert "pooling" in config.errors["typo"]
    assert "unknown field 'colour'" in config.errors["extra"]
    assert "unknown type 'magic'" in config.errors["kind"]
    assert "model_path" in config.errors["missing"]
    assert "object" in config.errors["notobj"]


def test_dotted_path_types_are_accepted():
    config = parse_model_config({"p": {**GOOD, "type": "tests.plugins:HashModel"}})
    assert "p" in config


def test_unreadable_configs_raise(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_model_config(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_model_config(str(bad))
    arr = tmp_path / "arr.json"
    arr.write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_model_config(str(arr))


def test_hash_ignores_formatting_and_default_values(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps({"m": GOOD}))
    b.write_text(json.dumps({"m": {**GOOD, "preload": False}}, indent=4))
    assert load_model_config(str(a)).config_hash == load_model_config(str(b)).config_hash
    c = parse_model_config({"m": {**GOOD, "RAM": 0.6}})
    assert c.config_hash != load_model_config(str(a)).config_hash


def test_version_is_the_field_or_a_settings_hash():
    config = parse_model_config({"a": {**GOOD, "version": "2024-01"}, "b": GOOD})
    assert spec_version(config["a"]) == "2024-01"
    assert spec_version(config["b"]).startswith("h")
    other = parse_model_config({"b": {**GOOD, "normalize": True}})
    assert spec_version(other["b"]) != spec_version(config["b"])
