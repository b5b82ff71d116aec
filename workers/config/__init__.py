"""Model config on the worker side: reading it (JSON file, SSM), checking it can serve.

The seed's entry point ``workers.config.load_model_config(source=None)`` lives here; the
schema of an entry is the contract's (``tasks.contract.spec``).
"""

from tasks.contract.spec import AliasSpec, ModelConfig, ModelSpec, spec_version
from workers.config.loader import load_model_config, parse_model_config

__all__ = [
    "AliasSpec",
    "ModelConfig",
    "ModelSpec",
    "load_model_config",
    "parse_model_config",
    "spec_version",
]
