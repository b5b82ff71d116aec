"""Every ``EMBEDFLEET_*`` environment variable, read and checked in one place.

:func:`load_settings` reads the environment once at a start (the CLI's ``main``, the
worker's boot, ``celeryconfig``) and hands back a frozen :class:`Settings`; what needs a
value takes it as an argument, as dramatiq's ``RedisBroker(client=...)`` takes its
client, so nothing deeper reads the environment. A bad value is a :class:`ConfigError`
of one line naming the variable (the CLI exits 2 on it).

Both sides read this module: it imports neither workers nor producers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.contract.errors import ConfigError
from tasks.contract.renames import DEPRECATED, Notice, log_notices, moved_to_fields, renamed

PREFIX = "EMBEDFLEET_"
MIB = 1024 * 1024
DAY_S = 24 * 3600  # seconds


class Settings(BaseSettings):
    """The environment of one process, typed. Field ``x`` is ``EMBEDFLEET_X``, except
    ``config_source`` (``EMBEDFLEET_MODEL_CONFIG``). Each description is the README's."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,  # VAR= means unset, as before
        frozen=True,
        extra="ignore",
        populate_by_name=True,
    )

    # -- broker and delivery ------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="broker and result backend (`rediss://` for TLS, `redis://:password@host`)",
    )
    visibility_timeout_s: int = Field(
        3600,
        gt=0,
        description="seconds before an unacked chunk is redelivered whoever holds it: the "
        "backstop for what the heartbeat misses",
    )
    result_ttl_s: int = Field(
        7 * DAY_S, gt=0, description="seconds job records and chunk results stay in Redis"
    )
    worker_lapse_s: float = Field(
        30.0,
        gt=0,
        description="seconds without a heartbeat after which a worker counts as dead and a "
        "live worker puts its unacked chunks back on their queues (capped at 3/4 of the "
        "visibility timeout)",
    )
    max_deliveries: int = Field(
        3, ge=1, description="deliveries of one chunk before it fails with `TooManyDeliveries`"
    )
    max_chunk_bytes: int = Field(32 * MIB, gt=0, description="text bytes one chunk may carry")
    precision_min_cosine: float = Field(
        0.9999,
        gt=0,
        le=1,
        description="the fidelity probe's bar: every probe row's cosine to fp32 in a lower "
        "precision, else the model runs fp32",
    )
    old_version_idle_s: float = Field(
        60.0,
        gt=0,
        description="seconds an old `name@version` copy stays loaded after its last chunk "
        "once a reload replaced it",
    )
    dataset_priority: int = Field(
        9,
        ge=0,
        le=9,
        description="Redis priority step of dataset chunks (0 first, 9 last: small jobs go "
        "first); the same on producers and workers",
    )
    redis_sentinel_master: str = Field(
        "mymaster", min_length=1, description="master name for `sentinel://` URLs"
    )
    redis_tls_ca_certs: str | None = Field(None, description="CA file for `rediss://` URLs")
    redis_tls_certfile: str | None = Field(None, description="client certificate (`rediss://`)")
    redis_tls_keyfile: str | None = Field(None, description="client key (`rediss://`)")
    redis_tls_cert_reqs: Literal["required", "optional", "none"] = Field(
        "required", description="server certificate check for `rediss://` URLs"
    )

    # -- models and memory (workers) ----------------------------------------------------
    config_source: str | None = Field(
        None,
        validation_alias="EMBEDFLEET_MODEL_CONFIG",
        description="JSON path, or `ssm:/parameter/name` (or `ssm:/prefix/`)",
    )
    worker_models: str = Field(
        "all", min_length=1, description="models a worker serves: `all` or `a,b` (`--models`)"
    )
    memory_limit_gb: float | None = Field(
        None, gt=0, description="model memory budget of one worker"
    )
    memory_floor_gb: float | None = Field(
        None, ge=0, description="evict idle models when available memory drops below this"
    )
    eviction_policy: Literal["largest", "lru"] = Field(
        "largest", description="`largest` (seed: highest RAM first) or `lru`"
    )
    watchdog_interval_s: float = Field(5.0, gt=0, description="seconds between memory checks")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads per task")
    download_dir: Path = Field(
        Path("~/.cache/embedfleet/models"),
        description="the download folder: where workers keep the model files they fetch "
        "from S3 (not the model cache, which is the models loaded in memory)",
    )
    model_store: Path | None = Field(
        None, description="where `embedfleet optimize` writes models (default `models/`)"
    )
    embed_cache: bool = Field(True, description="fleet-wide embedding cache on/off")
    embed_cache_ttl_s: int = Field(7 * DAY_S, gt=0, description="embedding cache TTL, seconds")
    embed_cache_max_mb: float | None = Field(
        None,
        gt=0,
        description="embedding cache memory cap, MB (default: a quarter of the server's "
        "`maxmemory`, 1024 when it has none)",
    )

    # -- gateway (`embedfleet serve`) -----------------------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="comma-separated keys `embedfleet serve` accepts as `Authorization: Bearer "
        "KEY` (none: it refuses to start unless `--no-auth` on a loopback address)",
    )
    file_store: str | None = Field(
        None,
        description="where `embedfleet serve` keeps uploaded files and batch output: a "
        "folder the workers can read, or an `s3://bucket/prefix/`",
    )

    # -- observability and local fleet --------------------------------------------------
    metrics_port: int = Field(0, ge=0, le=65535, description="worker Prometheus port (0 = off)")
    metrics_addr: str = Field("0.0.0.0", min_length=1, description="address metrics listen on")
    profile: str = Field("", description="worker cProfile output prefix (bench; empty = off)")
    log_level: str = Field("WARNING", description="log level of the CLI")
    log_json: bool = Field(False, description="`1`: JSON log lines instead of key=value text")
    state_dir: Path = Field(Path("~/.embedfleet"), description="pid files and logs of `up`/`demo`")

    # -- trust (tasks/contract/signing.py, tasks/io/data_roots.py) ----------------------
    job_key: SecretStr | None = Field(
        None,
        description="the key producers sign dataset jobs with and workers check (the same "
        "everywhere; unset: `job.key` in the state folder, one machine)",
    )
    data_roots: str = Field(
        "",
        description="comma-separated folders and `s3://` prefixes workers may read inputs "
        "from and write parts to (empty: anywhere but /proc, /sys, /dev)",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: Any, *_: Any, **__: Any
    ) -> tuple[Any, ...]:
        # Only what load_settings passes: it reads the environment (or a given mapping)
        # itself, so a test's mapping is honoured exactly and nothing else is read.
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _old_keywords(cls, values: Any) -> Any:
        """``Settings(model_cache=...)``, the download folder's deprecated keyword, sets
        ``download_dir`` (which wins when both are given), with a DeprecationWarning."""
        if isinstance(values, dict):
            values = renamed(values)
        return values

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update``'s fields (unchecked, as pydantic's); the deprecated
        ``model_cache`` sets ``download_dir`` here too, with a DeprecationWarning."""
        if update:
            update = renamed(dict(update))
            if isinstance(update.get("download_dir"), (str, Path)):
                update["download_dir"] = Path(update["download_dir"]).expanduser()
        return super().model_copy(update=update, deep=deep)

    @field_validator("redis_tls_cert_reqs", "eviction_policy", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        level = str(value).strip().upper()
        if not isinstance(logging.getLevelNamesMapping().get(level), int):
            raise ValueError(f"must be one of {sorted(_LEVELS)}")
        return level

    @field_validator("job_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("download_dir", "model_store", "state_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def model_cache(self) -> Path:
        """Deprecated name of :attr:`download_dir` (``EMBEDFLEET_MODEL_CACHE`` was the
        download folder's variable; "model cache" now means the models in memory)."""
        return self.download_dir

    @property
    def keys(self) -> tuple[str, ...]:
        """The gateway's API keys (``api_keys`` split on commas, blanks dropped)."""
        return tuple(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    @property
    def files_at(self) -> str:
        """The gateway's file store: ``file_store``, else ``<state_dir>/files/``."""
        return self.file_store or str(self.state_dir / "files") + "/"


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
#: Variables whose value an error never shows.
_SECRETS = {PREFIX + "JOB_KEY"}


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else PREFIX + field.upper()


def env_names() -> list[str]:
    """Every ``EMBEDFLEET_*`` variable embedfleet reads, sorted (deprecated ones too)."""
    return sorted([*(env_name(field) for field in Settings.model_fields), *DEPRECATED])


def load_settings(
    environ: Mapping[str, str] | None = None, notices: list[Notice] | None = None
) -> Settings:
    """The settings ``environ`` (default ``os.environ``) gives; :class:`ConfigError`
    of one line naming the variable for a bad value.

    Its warnings (a deprecated variable) are logged now, or, given a ``notices`` list,
    added to it: an entry point reads its settings before it configures logging, then
    hands them to :func:`log_notices`, so they come out in the configured format."""
    env = os.environ if environ is None else environ
    values = {
        name: env[name] for name in env_names() if name in env and str(env[name]).strip() != ""
    }
    found: list[Notice] = []
    moved_to_fields(values, found, env_name)
    if notices is None:
        log_notices(found)
    else:
        notices.extend(found)
    try:
        return Settings(**_by_field(values))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, values)) from None


def _by_field(values: dict[str, str]) -> dict[str, Any]:
    fields = {env_name(f): f for f in Settings.model_fields}
    return {fields[name]: value for name, value in values.items()}


def _one_line(exc: ValidationError, values: dict[str, str]) -> str:
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = env_name(field) if field in Settings.model_fields else field
        message = str(error["msg"]).removeprefix("Value error, ")
        shown = "***" if name in _SECRETS else values.get(name, "")
        parts.append(f"{name}={shown!r}: {message}")
    return "; ".join(parts)


class _ProcessSettings:
    """This process's settings: handed over by its entry point (:func:`use_settings`:
    the CLI's main, the worker's main), or else read from the environment once, at first
    use (``celery -A tasks ...``, a library user's default ``EmbeddingClient()``)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._lock = threading.Lock()

    def get(self) -> Settings:
        with self._lock:
            if self._settings is None:
                self._settings = load_settings()
            return self._settings

    def use(self, settings: Settings) -> Settings:
        with self._lock:
            self._settings = settings
            return settings


_PROCESS = _ProcessSettings()


def process_settings() -> Settings:
    """This process's settings (see :class:`_ProcessSettings`)."""
    return _PROCESS.get()


def use_settings(settings: Settings) -> Settings:
    """Make ``settings`` this process's settings (an entry point, once, before use)."""
    return _PROCESS.use(settings)
