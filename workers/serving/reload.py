"""Reload: re-read a worker's config source and apply the difference to its runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.contract.logs import event_logger
from tasks.contract.spec import ModelConfig
from workers.config.loader import load_model_config
from workers.config.preflight import check_sources
from workers.errors import ConfigError

log = event_logger(__name__)


@dataclass
class ConfigChange:
    """What a reload changed."""

    config_hash: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


def plan_reload(old: ModelConfig, allow_empty: bool = False) -> tuple[ConfigChange, ModelConfig]:
    """Re-read ``old``'s config source, check it can serve, and say what changes:
    ``(change, new config)``; the runtime applies it (``Runtime.reload``).

    All or nothing: if the source cannot be read, any entry is invalid, an added or
    changed model's type or source does not resolve (``workers.config.preflight``), or
    the config holds no model at all and ``allow_empty`` was not given, raise
    :class:`ConfigError`, and the worker keeps serving the old config, exactly as before.
    """
    new = load_model_config(old.source or None)
    if new.errors:
        raise ConfigError("; ".join(new.errors[name] for name in sorted(new.errors)))
    if not new.models and old.models and not allow_empty:
        raise ConfigError(
            f"{new.source}: the config holds no model; reloading it would stop this worker "
            "serving every model: refused (reload with allow_empty, `embedfleet reload "
            "--allow-empty`, to mean it)"
        )
    change = ConfigChange(
        config_hash=new.config_hash,
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        changed=sorted(n for n in set(new) & set(old) if new[n] != old[n]),
    )
    problems = check_sources(new, change.added + change.changed)
    if problems:
        raise ConfigError("; ".join(problems[name] for name in sorted(problems)))
    return change, new


def log_reload(change: ConfigChange, new: ModelConfig, old: ModelConfig) -> None:
    log.info(
        "event=config_reloaded source=%s config_hash=%s old_hash=%s added=%s removed=%s changed=%s",
        new.source,
        new.config_hash,
        old.config_hash,
        ",".join(change.added) or "-",
        ",".join(change.removed) or "-",
        ",".join(change.changed) or "-",
    )
