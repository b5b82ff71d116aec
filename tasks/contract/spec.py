"""The model spec schema: typed entries of models.json, A/B aliases, versions.

Shared by both sides: workers read their config with it (``workers.config``), and a
producer with a local config override checks jobs against it. Type names are checked
for shape here (a registered name or ``module:Class``); whether a type really exists is
the worker's question (``workers.models.registry``), passed in as ``check_type``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from tasks.contract.errors import ConfigError
from tasks.contract.logs import event_logger
from tasks.routing import MODEL_NAME_RE

log = event_logger(__name__)

#: A type name: a registered one (``sentence_transformer``) or ``package.module:Class``.
TYPE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: Checks a type name (of ``type``, or of an ``s3`` entry's ``format``) and raises
#: ValueError saying why it is not served (workers pass the registry's checks; producers
#: only check the shape).
TypeCheck = Callable[[str], None]


class ModelSpec(BaseModel):
    """One entry of models.json (the seed's fields plus documented extensions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    model_path: str = Field(min_length=1)
    RAM: float = Field(gt=0, description="GB the model is expected to take")
    preload: bool = False
    pooling: Literal["mean", "cls", "max"] | None = None
    normalize: bool | None = None
    max_seq_length: int | None = Field(default=None, gt=0)
    dimension: int | None = Field(default=None, gt=0)
    format: str | None = None  # for ``s3``: a type name; see ``_known_format``
    tokenizer: str | None = None
    region: str | None = None
    version: str | None = None
    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(default=32, gt=0, le=4096)
    trust_remote_code: bool = False
    #: Numeric precision of torch-based types (``workers.models.precision``).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: Where the model came from (``embedfleet optimize``: source, method, quality, speed).
    provenance: dict[str, Any] | None = None
    #: Matryoshka sizes the model was trained for: a job's ``dimensions`` must be one of
    #: them (or the full dimension). None: any size up to the dimension.
    dimensions_supported: list[int] | None = Field(default=None, min_length=1)
    #: Prompt name -> text put before each input (e5: ``{"query": "query: "}``); for a
    #: ``sentence_transformer`` model, over those of its folder's config.
    prompts: dict[str, str] | None = None
    #: The prompt a job gets when it names none.
    default_prompt_name: str | None = None
    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path | None:
        """Folder that relative local ``model_path`` values are resolved against."""
        return self._base_dir

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
        if not TYPE_NAME_RE.match(value):
            raise ValueError(f"not a type name: {value!r} (a registered type or module:Class)")
        check = (info.context or {}).get("check_type")
        if check is not None:
            check(value)
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"not a format: {value!r} (the name of a local model type)")
        check = (info.context or {}).get("check_format")
        if check is not None:
            check(value)
        return value

    @field_validator("dimensions_supported")
    @classmethod
    def _positive_sizes(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(n <= 0 for n in value):
            raise ValueError(f"sizes must be positive integers, got {value}")
        return sorted(set(value)) if value is not None else None

    @field_validator("default_prompt_name")
    @classmethod
    def _declared_default(cls, value: str | None, info: ValidationInfo) -> str | None:
        prompts = info.data.get("prompts")
        if value is not None and prompts is not None and value not in prompts:
            raise ValueError(f"{value!r} is not one of the prompts {sorted(prompts)}")
        return value


class AliasSpec(BaseModel):
    """An A/B alias: each job is assigned one target, weighted, deterministically.

    ``{"type": "alias", "targets": {"mini-a": 0.9, "mini-b": 0.1}}``
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["alias"]
    targets: dict[str, float] = Field(min_length=1)

    @field_validator("targets")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in value.items() if not weight > 0]
        if bad:
            raise ValueError(f"weights must be > 0 (targets {bad})")
        return value

    def pick(self, key: str) -> str:
        """The target for ``key``: the same key always gets the same target."""
        point = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) / 16**15
        total = sum(self.targets.values())
        acc = 0.0
        for name in sorted(self.targets):
            acc += self.targets[name] / total
            if point < acc:
                return name
        return sorted(self.targets)[-1]


class ModelConfig(Mapping[str, ModelSpec]):
    """The validated models of one config source, plus what was wrong with the rest."""

    def __init__(
        self,
        models: dict[str, ModelSpec],
        errors: dict[str, str] | None = None,
        source: str = "",
        base_dir: Path | None = None,
        aliases: dict[str, AliasSpec] | None = None,
    ) -> None:
        self.models = dict(models)
        #: A/B aliases; producers resolve them, workers only ever see their targets.
        self.aliases = dict(aliases or {})
        self.errors = dict(errors or {})
        self.source = source
        #: Relative local model paths are resolved against this folder.
        self.base_dir = base_dir or Path.cwd()

    def __getitem__(self, name: str) -> ModelSpec:
        return self.models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    @property
    def config_hash(self) -> str:
        """Hash of the valid entries, the same wherever the config was read from."""
        canon: dict[str, Any] = {
            name: spec.model_dump(exclude_defaults=True) for name, spec in self.models.items()
        }
        canon.update({name: a.model_dump() for name, a in self.aliases.items()})
        blob = json.dumps(canon, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_model_config(
    data: Any,
    source: str = "<memory>",
    base_dir: Path | None = None,
    check_type: TypeCheck | None = None,
    check_format: TypeCheck | None = None,
) -> ModelConfig:
    """Validate a decoded config object entry by entry (``check_type``, ``check_format``:
    see :data:`TypeCheck`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object of model entries")
    models: dict[str, ModelSpec] = {}
    aliases: dict[str, AliasSpec] = {}
    errors: dict[str, str] = {}
    for name, entry in data.items():
        if not MODEL_NAME_RE.match(str(name)):
            errors[str(name)] = (
                f"model {name!r}: the name may hold letters, digits, '.', '_', '-' "
                "(up to 128 characters)"
            )
            continue
        if not isinstance(entry, dict):
            errors[name] = f"model {name!r}: the entry must be an object"
            continue
        if entry.get("type") == "alias":
            try:
                aliases[name] = AliasSpec.model_validate(entry)
            except ValidationError as exc:
                errors[name] = f"model {name!r}: " + _describe(exc)
            continue
        try:
            context = {"check_type": check_type, "check_format": check_format}
            spec = ModelSpec.model_validate(entry, context=context)
            spec._base_dir = base_dir
            models[name] = spec
        except ValidationError as exc:
            errors[name] = f"model {name!r}: " + _describe(exc)
    for name, alias in list(aliases.items()):
        missing = [t for t in alias.targets if t not in models]
        if missing:
            errors[name] = f"model {name!r}: alias targets {missing} are not valid models here"
            del aliases[name]
    for message in errors.values():
        log.error("event=config_entry_invalid source=%s error=%r", source, message)
    return ModelConfig(models, errors, source, base_dir, aliases)


def read_config_file(
    source: str, check_type: TypeCheck | None = None, check_format: TypeCheck | None = None
) -> ModelConfig:
    """Read and validate a JSON config file (checks: see :data:`TypeCheck`)."""
    path = Path(source).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the model config: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: the model config is not UTF-8 text: {exc.reason}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return parse_model_config(data, source, path.resolve().parent, check_type, check_format)


def read_local_config(source: str) -> ModelConfig:
    """A producer's local config override: a JSON file (SSM configs are the workers')."""
    if source.startswith("ssm:"):
        raise ConfigError(
            f"{source}: a producer reads the fleet's models from Redis; a local override "
            "must be a JSON file"
        )
    return read_config_file(source)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(x) for x in err["loc"]) or "entry"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {field!r}")
        else:
            parts.append(f"field {field!r}: {err['msg']}")
    return "; ".join(parts)


def spec_version(spec: ModelSpec) -> str:
    """The model's version: its ``version`` field, else a hash of its settings."""
    if spec.version:
        return spec.version
    blob = json.dumps(spec.model_dump(exclude_defaults=True), sort_keys=True)
    return "h" + hashlib.sha256(blob.encode()).hexdigest()[:12]
