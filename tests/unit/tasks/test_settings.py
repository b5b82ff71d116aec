"""The typed settings: every EMBEDFLEET_* variable read once, a bad one is one line
naming it and exit 2, the README's table lists exactly the variables read."""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.contract.errors import ConfigError
from tasks.contract.settings import DEPRECATED, PREFIX, Settings, env_names, load_settings
from tests.support import ROOT, run_cli

#: One bad value for each variable whose type can be wrong.
BAD = {
    "EMBEDFLEET_THREADS": "x",
    "EMBEDFLEET_EVICTION_POLICY": "random",
    "EMBEDFLEET_WATCHDOG_INTERVAL_S": "0",
    "EMBEDFLEET_VISIBILITY_TIMEOUT_S": "soon",
    "EMBEDFLEET_RESULT_TTL_S": "-5",
    "EMBEDFLEET_MAX_DELIVERIES": "0",
    "EMBEDFLEET_MAX_CHUNK_BYTES": "32MB",
    "EMBEDFLEET_MEMORY_LIMIT_GB": "lots",
    "EMBEDFLEET_MEMORY_FLOOR_GB": "-1",
    "EMBEDFLEET_METRICS_PORT": "70000",
    "EMBEDFLEET_LOG_JSON": "maybe",
    "EMBEDFLEET_LOG_LEVEL": "loud",
    "EMBEDFLEET_EMBED_CACHE": "perhaps",
    "EMBEDFLEET_EMBED_CACHE_TTL_S": "0",
    "EMBEDFLEET_EMBED_CACHE_MAX_MB": "x",
    "EMBEDFLEET_REDIS_TLS_CERT_REQS": "maybe",
}
#: Those that raised a bare ValueError before the settings object, and two more.
THROUGH_THE_CLI = [
    "EMBEDFLEET_EVICTION_POLICY",
    "EMBEDFLEET_WATCHDOG_INTERVAL_S",
    "EMBEDFLEET_THREADS",
    "EMBEDFLEET_VISIBILITY_TIMEOUT_S",
    "EMBEDFLEET_LOG_LEVEL",
    "EMBEDFLEET_METRICS_PORT",
]


def test_every_field_is_one_embedfleet_variable():
    names = env_names()
    assert len(names) == len(set(names)) == len(Settings.model_fields) + len(DEPRECATED)
    assert all(name.startswith(PREFIX) for name in names)
    assert "EMBEDFLEET_MODEL_CONFIG" in names  # the one field named otherwise


def test_the_download_folder_is_set_by_its_new_name_and_its_deprecated_one(tmp_path, caplog):
    new, old = tmp_path / "new", tmp_path / "old"
    assert load_settings({"EMBEDFLEET_DOWNLOAD_DIR": str(new)}).download_dir == new
    # Given only the old name, it still sets the folder, with a warning naming both
    with caplog.at_level(logging.WARNING, logger="tasks.contract.settings"):
        settings = load_settings({"EMBEDFLEET_MODEL_CACHE": str(old)})
    assert settings.download_dir == old and settings.model_cache == old
    assert "name=EMBEDFLEET_MODEL_CACHE use=EMBEDFLEET_DOWNLOAD_DIR" in caplog.text
    # Given both, the new name wins
    both = {"EMBEDFLEET_DOWNLOAD_DIR": str(new), "EMBEDFLEET_MODEL_CACHE": str(old)}
    assert load_settings(both).download_dir == new
    assert load_settings({}).download_dir == Path("~/.cache/embedfleet/models").expanduser()


def test_the_old_download_folder_keyword_still_sets_the_folder(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    # Given the deprecated keyword, to the constructor and to model_copy
    with pytest.deprecated_call(match="'model_cache' is deprecated, use 'download_dir'"):
        made = Settings(model_cache=str(old))
    with pytest.deprecated_call(match="'model_cache' is deprecated"):
        copied = load_settings({}).model_copy(update={"model_cache": str(new)})
    # Then each sets the download folder, as a Path
    assert made.download_dir == old and made.model_cache == old
    assert copied.download_dir == new and copied.model_cache == new
    # and the new keyword wins when both are given
    with pytest.deprecated_call():
        both = Settings(model_cache=str(old), download_dir=str(new))
    assert both.download_dir == new
    with pytest.deprecated_call():
        both = made.model_copy(update={"model_cache": str(old), "download_dir": new})
    assert both.download_dir == new


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_one_line_naming_the_variable(name):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: BAD[name]})
    message = str(caught.value)
    assert message.startswith(f"{name}={BAD[name]!r}: ") and "\n" not in message


def test_values_are_typed_and_an_empty_value_is_unset():
    settings = load_settings(
        {
            "EMBEDFLEET_THREADS": "3",
            "EMBEDFLEET_LOG_JSON": "1",
            "EMBEDFLEET_EVICTION_POLICY": "LRU",
            "EMBEDFLEET_STATE_DIR": "~/fleet",
            "EMBEDFLEET_MEMORY_LIMIT_GB": "",
            "EMBEDFLEET_MODEL_CONFIG": "ssm:/embedfleet/models",
        }
    )
    assert settings.threads == 3 and settings.log_json is True
    assert settings.eviction_policy == "lru"
    assert not str(settings.state_dir).startswith("~")
    assert settings.memory_limit_gb is None
    assert settings.config_source == "ssm:/embedfleet/models"
    with pytest.raises(ValueError):  # frozen: read once, passed on, never changed
        settings.threads = 4  # type: ignore[misc]


def test_only_the_given_mapping_is_read(monkeypatch):
    monkeypatch.setenv("EMBEDFLEET_THREADS", "not a number")
    assert load_settings({}).threads is None
    with pytest.raises(ConfigError, match="EMBEDFLEET_THREADS"):
        load_settings()


@pytest.mark.parametrize("verb", ["jobs", "worker"])
@pytest.mark.parametrize("name", THROUGH_THE_CLI)
def test_the_cli_and_the_worker_stop_with_one_line_and_exit_2(verb, name):
    # Given a bad value and an address where nothing answers
    env = {name: BAD[name], "EMBEDFLEET_REDIS_URL": "redis://127.0.0.1:1/0"}
    # When the CLI or a worker starts
    proc = run_cli(verb, env=env, timeout=60)
    # Then it stops before anything else, with one line naming the variable
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"embedfleet: {name}={BAD[name]!r}: ")
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


def test_celeryconfig_takes_its_values_from_the_settings():
    # Given settings read from a mapping (not the environment), When Celery's are built
    import celeryconfig

    settings = load_settings(
        {"EMBEDFLEET_VISIBILITY_TIMEOUT_S": "10", "EMBEDFLEET_RESULT_TTL_S": "60"}
    )
    conf = celeryconfig.celery_settings(settings)
    # Then they follow that object
    assert conf["result_expires"] == 60 and conf["broker_url"] == settings.redis_url
    options = conf["broker_transport_options"]
    assert options["visibility_timeout"] == 10
    # kombu's scan for unacked messages follows the timeout (10 / 2 s, every time)
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (5, 1)


def test_importing_any_module_reads_no_settings():
    # every module of the packages (the worker side too: a lapse or TTL fixed at import
    # would ignore the settings its entry point hands over), and celeryconfig
    modules = ["celeryconfig"]
    for package in ("tasks", "producers", "gateway", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    code = (
        f"import importlib; [importlib.import_module(m) for m in {modules!r}]; "
        "import tasks.contract.settings as s; "
        "assert s._PROCESS._settings is None; print('ok')"
    )
    # a bad value in the environment: reading it would raise
    env = {"EMBEDFLEET_RESULT_TTL_S": "soon"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_clean_env(), **env, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def _readme_variables() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Environment", 1)[1].split("\n### ", 1)[0]
    known = set(env_names())
    found = []
    for line in table.splitlines():
        if not line.startswith("| `EMBEDFLEET_"):
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([A-Z_.]+)`", cell)
        first = names[0]
        found.append(first)
        for short in names[1:]:  # `..._TTL_S` shares the first name's longest known prefix
            suffix = short.removeprefix("...")
            cuts = [first[:i] for i in range(len(first), 0, -1) if first[i - 1] != "_"]
            full = next((c + suffix for c in cuts if c + suffix in known), first + suffix)
            found.append(full)
    return found


def test_the_readme_table_lists_exactly_the_variables_read():
    documented = _readme_variables()
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    assert sorted(documented) == env_names()


def test_nothing_but_the_settings_reads_embedfleet_variables():
    readers = []
    for package in ("tasks", "workers", "producers", "gateway"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "settings.py" and path.parent.name == "tasks":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if _reads_embedfleet_env(node):
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []


def _reads_embedfleet_env(node: ast.AST) -> bool:
    """``os.environ.get("EMBEDFLEET_...")``, ``os.getenv(...)`` or ``os.environ[...]``
    read with an EMBEDFLEET_ name or a ``*_ENV`` constant."""
    key: ast.AST | None = None
    if isinstance(node, ast.Call) and node.args:
        func = ast.unparse(node.func)
        if func in ("os.environ.get", "os.getenv", "environ.get", "env.get"):
            key = node.args[0]
    elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        if ast.unparse(node.value) in ("os.environ", "environ"):
            key = node.slice
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return key.value.startswith(PREFIX)
    return isinstance(key, ast.Name) and key.id.endswith("_ENV")


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
