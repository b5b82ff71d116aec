"""Which model, alias and version a job gets: from the fleet's own publication
(``tasks.contract.catalog``), or from a local model config when the client names one."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from producers.errors import UnknownModelError
from tasks.contract import catalog as fleet_catalog
from tasks.contract.spec import read_local_config, spec_version
from tasks.jobs.redis_retry import retry_while_unreachable


def resolve_model(
    redis: Any, model: str, key: str, config_source: str | None, fallback: str | None
) -> tuple[str, str, str]:
    """``(model, alias, version)`` of a job for ``model`` (a model or an A/B alias).

    From the fleet's publication unless ``config_source`` names a config to read;
    ``fallback`` (``EMBEDFLEET_MODEL_CONFIG``), when set, is consulted only for a model
    the fleet does not publish (e.g. no worker has started yet). ``key`` picks an
    alias's target.
    """
    local = config_source
    if local is None:
        catalog = retry_while_unreachable(lambda: fleet_catalog.read(redis))
        local = fallback
        known = model in catalog.models or model in catalog.aliases
        if known or model in catalog.errors or not local:
            if catalog.empty:
                raise UnknownModelError(
                    "no worker has published the models it serves to this Redis yet: "
                    "start one (`embedfleet worker` or `embedfleet up`), or name a config "
                    "with EMBEDFLEET_MODEL_CONFIG"
                )
            return resolve_in_catalog(catalog, model, key)
    config = read_local_config(local)
    alias = ""
    if model in config.aliases:
        alias, model = model, config.aliases[model].pick(key)
    spec = config.get(model)
    if spec is None:
        known_names = ", ".join(sorted([*config, *config.aliases])) or "none"
        why = f" ({config.errors[model]})" if model in config.errors else ""
        raise UnknownModelError(f"unknown model {model!r}{why}; configured: {known_names}")
    return model, alias, spec_version(spec)


def resolve_in_catalog(
    catalog: fleet_catalog.Catalog, model: str, key: str
) -> tuple[str, str, str]:
    """``(model, alias, version)`` of ``model`` as the fleet publishes it."""
    alias = ""
    if model in catalog.aliases:
        alias, model = model, catalog.aliases[model].pick(key)
    served = catalog.models.get(model)
    if served is None and model in catalog.errors:
        raise UnknownModelError(
            f"model {model!r} is refused by the fleet's workers: {catalog.errors[model]}"
        )
    if served is None:
        known = ", ".join(catalog.names()) or "none"
        why = f" ({catalog.errors[model]})" if model in catalog.errors else ""
        raise UnknownModelError(f"unknown model {model!r}{why}; the fleet serves: {known}")
    return model, alias, served.version


def seconds_per_text(redis: Any, model: str) -> float | None:
    """What one text costs ``model`` in the fleet, as its workers publish it (None when
    unknown or when Redis cannot say: sizing is an optimisation, the defaults serve)."""
    try:
        served = fleet_catalog.read(redis).models.get(model)
    except RedisError:
        return None
    return served.seconds_per_text if served is not None else None
