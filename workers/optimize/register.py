"""Where optimized models are stored, and how they enter the JSON config."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tasks.contract.logs import event_logger
from workers.config.loader import DEFAULT_SOURCE, SSM_PREFIX, parse_model_config
from workers.errors import ConfigError

log = event_logger(__name__)


def config_file(config: str | None) -> Path:
    """The JSON config file to read and register in (``--config`` or
    ``EMBEDFLEET_MODEL_CONFIG``, as the caller resolved it; else ``models.json``)."""
    source = config or DEFAULT_SOURCE
    if source.startswith(SSM_PREFIX):
        raise ConfigError(
            f"{source}: optimize registers models in a JSON config file; pass --config FILE "
            "and copy the new entry into the SSM parameter"
        )
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{source}: no such config file")
    return path


def store_root(config: Path, store: str | None) -> Path:
    """The model store: ``store`` (``--store``, else ``$EMBEDFLEET_MODEL_STORE``, as the
    caller resolved it), else ``models/`` beside the config file."""
    chosen = store
    root = Path(chosen).expanduser().resolve() if chosen else config.parent / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def read_entries(config: Path) -> dict[str, Any]:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{config}: cannot read the config: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{config}: the config must be a JSON object of model entries")
    return data


def check_free(config: Path, name: str, root: Path) -> None:
    """Refuse a name the config or the store already holds."""
    if name in read_entries(config):
        raise ConfigError(f"{config}: an entry {name!r} exists already; pick another --name")
    if (root / name).exists():
        raise ConfigError(f"{root / name} exists already; remove it or pick another --name")


def register(config: Path, name: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``name`` to the config file, validated, in one atomic replace;
    every other entry is kept as it was written."""
    parsed = parse_model_config({name: entry}, str(config), config.parent)
    if parsed.errors:
        raise ConfigError(parsed.errors[name])
    data = read_entries(config)
    if name in data:
        raise ConfigError(f"{config}: an entry {name!r} exists already; pick another --name")
    data[name] = entry
    fd, tmp = tempfile.mkstemp(prefix=f".{config.name}.", dir=config.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        if config.exists():
            os.chmod(tmp, config.stat().st_mode & 0o777)
        os.replace(tmp, config)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("event=model_registered config=%s model=%s path=%s", config, name, entry["model_path"])
