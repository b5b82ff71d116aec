"""What the fleet serves, as its workers publish it: producers learn models from here.

Every worker writes its field of the hash ``embedfleet:fleet:catalog`` (its name) at
boot and after every reload: the config hash, each configured model's version and type,
the models it consumes, and the A/B aliases, and the entries it refused with the reason. A producer checks a job's model and pins its
version from the newest publication that names the model, so an ETL machine needs no
copy of the fleet's models.json, and a models.json being edited badly never stops
``submit`` while the workers still serve the old config.

Each worker refreshes its ``heartbeat`` every :data:`HEARTBEAT_S` seconds (six times
in its lapse, when that is shorter) and removes its field when it stops. Readers merge
the publications of live workers (heartbeat within :data:`LIVE_S`, or the shorter
``live_s`` the worker published); when none is live they merge all of them, so a fleet
that is down for a while still accepts jobs, which wait in their queues.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from tasks.contract.spec import AliasSpec, ModelConfig, ModelSpec, spec_version

CATALOG_KEY = "embedfleet:fleet:catalog"
#: Seconds between two heartbeats of a worker's publication.
HEARTBEAT_S = 5.0
#: A publication whose heartbeat is older than this (seconds) is from a worker that
#: stopped without saying so (killed): used only when no live one names the model.
#: Six beats, the default ``EMBEDFLEET_WORKER_LAPSE_S`` (30 s) after which the fleet
#: gives a silent worker's chunks to others (``tasks.jobs.reclaim``). A worker whose
#: lapse is shorter publishes it as its entry's ``live_s`` and beats six times in it.
LIVE_S = 6 * HEARTBEAT_S
#: Keys of a model's entry that :attr:`FleetModel.facts` keeps.
FACT_KEYS = frozenset(
    {
        "dimension",
        "dimensions_supported",
        "prompts",
        "default_prompt_name",
        "windows",
        "max_seq_length",
    }
)


@dataclass(frozen=True)
class FleetModel:
    """A model as the fleet serves it."""

    name: str
    version: str
    type: str
    worker: str
    published: float
    #: Seconds one text cost the publishing worker's encode (None until it encoded one):
    #: producers size chunks of cheap models from it (``tasks.contract.chunking.budget_for``).
    seconds_per_text: float | None = None
    #: What producers check a job's embedding options against (``dimension``,
    #: ``dimensions_supported``; ``tasks.contract.options.check_for_model``).
    facts: dict[str, Any] = field(default_factory=dict)
    #: Seconds one estimated token (``tasks.contract.chunking.estimate_tokens``) cost one
    #: worker thread's encode (None until measured): dry runs estimate durations from it.
    seconds_per_token: float | None = None
    #: Width of the vectors the model returned as measured (``encoded_dimension``), else
    #: its config's ``dimension``; 0 when neither is known.
    dimension: int = 0


@dataclass
class Catalog:
    """The fleet's models and aliases, merged over the workers' publications."""

    models: dict[str, FleetModel] = field(default_factory=dict)
    aliases: dict[str, AliasSpec] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)  # worker -> config hash
    #: Entries a worker refused, with the reason (a producer refuses jobs for them).
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no worker has ever published."""
        return not self.workers

    def names(self) -> list[str]:
        return sorted([*self.models, *self.aliases])


#: What a worker publishes of a model's measured cost: seconds per text, or a dict of
#: ``seconds_per_text``, ``seconds_per_token``, ``dimension``.
Costs = dict[str, float] | dict[str, dict[str, float]]


def entry_for(
    worker: str,
    config: ModelConfig,
    served: list[str],
    costs: Costs | None = None,
    facts: dict[str, dict[str, Any]] | None = None,
    concurrency: int = 1,
    live_s: float = LIVE_S,
) -> dict[str, Any]:
    """The publication of one worker serving ``config`` (``costs``: what its encodes
    cost, per model; ``facts``: per model, what the worker knows beyond the entry, e.g.
    the prompts its folder declares; ``concurrency``: its pool threads, each running one
    chunk; ``live_s``: seconds its heartbeat counts as fresh, see :func:`is_fresh`)."""
    entry = {
        "worker": worker,
        "concurrency": concurrency,
        "live_s": live_s,
        "config_hash": config.config_hash,
        "published": time.time(),
        "heartbeat": time.time(),
        "served": sorted(served),
        "models": {
            name: {
                "version": spec_version(spec),
                "type": spec.type,
                **model_facts(spec),
                **(facts or {}).get(name, {}),
            }
            for name, spec in config.items()
        },
        "aliases": {name: alias.model_dump() for name, alias in config.aliases.items()},
        "errors": dict(config.errors),
    }
    _set_costs(entry, costs)
    return entry


def model_facts(spec: ModelSpec) -> dict[str, Any]:
    """What a model's entry tells producers about the options it takes (the fields set)."""
    facts: dict[str, Any] = {
        "dimension": spec.dimension,
        "dimensions_supported": spec.dimensions_supported,
        "default_prompt_name": spec.default_prompt_name,
        "max_seq_length": spec.max_seq_length,  # the token window, when the entry sets it
    }
    if spec.type != "sentence_transformer":  # else its folder may declare more
        facts["prompts"] = dict(spec.prompts or {})
    return {k: v for k, v in facts.items() if v is not None}


def _set_costs(entry: dict[str, Any], costs: Costs | None) -> None:
    for name, value in (costs or {}).items():
        if name in entry["models"]:
            if isinstance(value, dict):
                entry["models"][name].update(value)
            else:
                entry["models"][name]["seconds_per_text"] = value


#: ``write(client, key, field, value)``: how an entry is stored (see :func:`publish`).
Write = Callable[[redis.Redis, str, str, str], object]

#: KEYS: the catalog. ARGV: worker, entry. The heartbeat's write when none is given.
_HSET_IF_EXISTS = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def publish(
    client: redis.Redis,
    worker: str,
    config: ModelConfig,
    served: list[str],
    costs: Costs | None = None,
    facts: dict[str, dict[str, Any]] | None = None,
    concurrency: int = 1,
    live_s: float = LIVE_S,
    write: Write | None = None,
) -> None:
    """Record what ``worker`` serves now (boot, reload; ``facts``, ``live_s``: see
    :func:`entry_for`). ``write(client, key, field, value)`` stores the entry (default
    HSET; the worker passes one that a full Redis lets through, so a worker that boots
    or reloads then still shows in the catalog)."""
    entry = json.dumps(entry_for(worker, config, served, costs, facts, concurrency, live_s))
    if write is None:
        client.hset(CATALOG_KEY, worker, entry)
    else:
        write(client, CATALOG_KEY, worker, entry)


def heartbeat(
    client: redis.Redis,
    worker: str,
    costs: Costs | None = None,
    write: Write | None = None,
) -> bool:
    """Refresh ``worker``'s heartbeat (and its models' ``costs``); False when it has no
    publication to refresh. ``write(client, key, field, value)`` stores the entry only
    while the field is still there and returns whether it did (default: a script that
    checks and writes at once; the worker passes one that a full Redis lets through too:
    a worker that serves must not look dead because Redis memory is full). So a beat
    that read the entry just before :func:`forget` removed it never brings it back."""
    raw = client.hget(CATALOG_KEY, worker)
    if raw is None:
        return False
    entry = json.loads(raw)  # type: ignore[arg-type]
    entry["heartbeat"] = time.time()
    _set_costs(entry, costs)
    if write is None:
        written = client.eval(_HSET_IF_EXISTS, 1, CATALOG_KEY, worker, json.dumps(entry))
    else:
        written = write(client, CATALOG_KEY, worker, json.dumps(entry))
    return bool(written)


def forget(client: redis.Redis, worker: str) -> None:
    """Drop a worker's publication (it stopped for good)."""
    client.hdel(CATALOG_KEY, worker)


def is_fresh(entry: dict[str, Any], now: float) -> bool:
    """True while ``entry``'s heartbeat is younger than the ``live_s`` its worker
    published (:data:`LIVE_S` for a worker that published none, or a longer one)."""
    live_s = min(float(entry.get("live_s") or LIVE_S), LIVE_S)
    return now - float(entry.get("heartbeat", 0)) <= live_s


def read(client: redis.Redis, now: float | None = None) -> Catalog:
    """The merged catalog: for each model and alias, the newest publication of a live
    worker wins (of any worker, when none is live)."""
    catalog = Catalog()
    raw: dict[bytes, bytes] = client.hgetall(CATALOG_KEY)  # type: ignore[assignment]
    entries = []
    for value in raw.values():
        try:
            entries.append(json.loads(value))
        except (ValueError, TypeError):
            continue  # one unreadable field must not hide the others
    now = time.time() if now is None else now
    live = [e for e in entries if is_fresh(e, now)]
    entries = live or entries
    newest_alias: dict[str, float] = {}
    for entry in sorted(entries, key=lambda e: float(e.get("published", 0))):
        worker, published = str(entry.get("worker")), float(entry.get("published", 0))
        catalog.workers[worker] = str(entry.get("config_hash"))
        for name, model in (entry.get("models") or {}).items():
            version = str(model["version"])
            # a newer publication that has not measured the model keeps an older one's
            # figures for the same version (any worker's measure serves an estimate)
            prev = catalog.models.get(name)
            known = prev if prev is not None and prev.version == version else None
            catalog.models[name] = FleetModel(
                name,
                version,
                str(model["type"]),
                worker,
                published,
                _positive(model.get("seconds_per_text")) or (known and known.seconds_per_text),
                {k: v for k, v in model.items() if k in FACT_KEYS},
                _positive(model.get("seconds_per_token")) or (known and known.seconds_per_token),
                int(
                    _positive(model.get("encoded_dimension"))
                    or (known and known.dimension)
                    or _positive(model.get("dimension"))
                    or 0
                ),
            )
        for name, reason in (entry.get("errors") or {}).items():
            catalog.errors[str(name)] = str(reason)
        for name, alias in (entry.get("aliases") or {}).items():
            catalog.aliases[name] = AliasSpec.model_validate(alias)
            newest_alias[name] = published
    # A name that is a model in a newer publication than its alias is a model now.
    for name in list(catalog.aliases):
        if name in catalog.models and catalog.models[name].published >= newest_alias[name]:
            del catalog.aliases[name]
        elif name in catalog.models:
            del catalog.models[name]
    for name in [*catalog.models, *catalog.aliases]:
        catalog.errors.pop(name, None)  # served somewhere: not an error of the fleet
    return catalog


def live_workers(
    client: redis.Redis, model: str | None = None, now: float | None = None
) -> list[str]:
    """Workers whose heartbeat is fresh (:func:`is_fresh`) and, when ``model`` is
    given, that consume its queue. The one answer to "is anyone serving this?" for
    producers, the CLI and the gateway."""
    now = time.time() if now is None else now
    raw: dict[bytes, bytes] = client.hgetall(CATALOG_KEY)  # type: ignore[assignment]
    live = []
    for value in raw.values():
        try:
            entry = json.loads(value)
            fresh = is_fresh(entry, now)
        except (ValueError, TypeError, AttributeError):
            continue
        if fresh and (model is None or model in (entry.get("served") or [])):
            live.append(str(entry.get("worker")))
    return sorted(live)


def live_threads(client: redis.Redis, model: str, now: float | None = None) -> int:
    """Pool threads of the live workers consuming ``model``'s queue (each runs one chunk
    at a time); 0 when none is live."""
    now = time.time() if now is None else now
    raw: dict[bytes, bytes] = client.hgetall(CATALOG_KEY)  # type: ignore[assignment]
    threads = 0
    for value in raw.values():
        try:
            entry = json.loads(value)
            fresh = is_fresh(entry, now)
            if fresh and model in (entry.get("served") or []):
                threads += max(1, int(entry.get("concurrency") or 1))
        except (ValueError, TypeError, AttributeError):
            continue
    return threads


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None
