"""Reload: re-read a worker's config source and apply the difference to its runtime."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tasks.spec import ModelConfig
from workers.config.loader import load_model_config
from workers.errors import ConfigError

if TYPE_CHECKING:
    from workers.serving.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class ConfigChange:
    """What a reload changed."""

    config_hash: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


def apply_reload(runtime: Runtime) -> tuple[ConfigChange, ModelConfig]:
    """Re-read the config source and apply the difference.

    All or nothing: if the source cannot be read or any entry is invalid, raise
    :class:`ConfigError` and keep serving the old config. Removed models are unloaded
    once their leases end; for a changed model, running tasks finish on the old
    instance and new tasks load the new one.

    The caller holds the runtime's reload lock.
    """
    new = load_model_config(runtime.config.source or None)
    if new.errors:
        raise ConfigError("; ".join(new.errors[name] for name in sorted(new.errors)))
    old = runtime.config
    change = ConfigChange(
        config_hash=new.config_hash,
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        changed=sorted(n for n in set(new) & set(old) if new[n] != old[n]),
    )
    runtime.versions.retire(old, change.changed + change.removed)
    runtime.config = new
    runtime.cache.specs = runtime.versions.specs(new)
    for name in change.removed:
        runtime.cache.unload(name, reason="removed by reload")
        runtime.encode_costs.forget(name)
    for name in change.changed:
        runtime.cache.unload(name, reason="changed by reload")
        runtime.encode_costs.forget(name)
    log.info(
        "event=config_reloaded source=%s config_hash=%s old_hash=%s added=%s "
        "removed=%s changed=%s",
        new.source,
        new.config_hash,
        old.config_hash,
        ",".join(change.added) or "-",
        ",".join(change.removed) or "-",
        ",".join(change.changed) or "-",
    )
    return change, old
