"""Reading the worker's model config: a JSON file or AWS SSM Parameter Store.

``load_model_config()`` validates each entry on its own (the schema is the contract's,
``tasks.contract.spec``; type names are checked against this worker's registry): a bad entry is
reported (by model and field) in ``config.errors`` while the valid ones load. A config
that cannot be read at all (missing file, invalid JSON, not an object) raises
:class:`ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.contract.spec import ModelConfig, read_config_file
from tasks.contract.spec import parse_model_config as parse_spec
from workers.config.ssm import read_ssm_config
from workers.models.registry import check_format, check_type

#: Where the config is read from when neither an argument nor the env var says.
DEFAULT_SOURCE = "models.json"
SSM_PREFIX = "ssm:"


def parse_model_config(
    data: Any, source: str = "<memory>", base_dir: Path | None = None
) -> ModelConfig:
    """Validate a decoded config object entry by entry, types checked by the registry."""
    return parse_spec(data, source, base_dir, check_type=check_type, check_format=check_format)


def load_model_config(source: str | None = None) -> ModelConfig:
    """Read and validate the model config from a JSON path or ``ssm:/name``; without a
    ``source``, the one ``EMBEDFLEET_MODEL_CONFIG`` names (the seed's entry point)."""
    if not source:
        from tasks.contract.settings import load_settings

        source = load_settings().config_source
    source = source or DEFAULT_SOURCE
    if source.startswith(SSM_PREFIX):
        return parse_model_config(read_ssm_config(source[len(SSM_PREFIX) :]), source)
    return read_config_file(source, check_type, check_format)
