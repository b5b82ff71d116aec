"""Before a config serves: every model's type imports and every model's source resolves.

The schema (``tasks.contract.spec``) checks the shape of an entry; this module checks that it
can serve, without loading it:

- a dotted ``type`` (``package.module:Class``) imports and subclasses
  ``BaseEmbeddingModel``;
- for the built-in types that read files (everything but ``sagemaker``), the
  ``model_path`` resolves: a local path exists (relative paths against the config's
  folder), an ``s3://`` key or prefix lists (or, S3 unreachable, a copy is cached), a Hub
  id is shipped by a package or cached, or the Hub may be asked (not ``HF_HUB_OFFLINE``).
  A custom type's ``model_path`` means what that type says, so it is not checked here.

At worker start an entry that fails is set aside with its reason (``config.errors``),
like an entry the schema refuses; at reload any failure refuses the whole reload and
the old config keeps serving (``workers.serving.reload``).
"""

from __future__ import annotations

from pathlib import Path

from tasks.contract.logs import event_logger
from tasks.contract.spec import ModelConfig, ModelSpec
from workers.errors import ConfigError, ModelLoadError
from workers.models.registry import TYPES, resolve_class

log = event_logger(__name__)


def source_problem(name: str, spec: ModelSpec) -> str | None:
    """Why model ``name`` cannot serve as configured, or None when its sources resolve."""
    try:
        cls = resolve_class(spec.type)
        # a remote type's model_path names no files (an endpoint name): declared on its class
        if spec.type in TYPES and not cls.remote:
            _check_path(spec.model_path, spec.base_dir, spec.region)
    except (ConfigError, ModelLoadError) as exc:
        text = str(exc)
        return text if repr(name) in text else f"model {name!r}: {text}"
    return None


def check_sources(config: ModelConfig, names: list[str] | None = None) -> dict[str, str]:
    """``{model: reason}`` for the models of ``config`` (or just ``names``) that cannot serve."""
    problems = {}
    for name in sorted(config if names is None else names):
        problem = source_problem(name, config[name])
        if problem:
            problems[name] = problem
    return problems


def set_aside(config: ModelConfig) -> ModelConfig:
    """``config`` with the models that cannot serve moved to its errors (worker start)."""
    problems = check_sources(config)
    for problem in problems.values():
        log.error("event=config_entry_invalid source=%s error=%r", config.source, problem)
    if not problems:
        return config
    models = {n: s for n, s in config.models.items() if n not in problems}
    aliases = {n: a for n, a in config.aliases.items() if not set(a.targets) & set(problems)}
    errors = {**config.errors, **problems}
    for name in set(config.aliases) - set(aliases):
        errors[name] = f"model {name!r}: alias targets {sorted(problems)} cannot serve"
    return ModelConfig(models, errors, config.source, config.base_dir, aliases)


def _check_path(model_path: str, base_dir: Path | None, region: str | None) -> None:
    if model_path.startswith("s3://"):
        _check_s3(model_path, region)
        return
    candidates = [Path(model_path).expanduser()]
    if base_dir is not None and not candidates[0].is_absolute():
        candidates.insert(0, base_dir / model_path)
    if any(path.exists() for path in candidates):
        return
    from workers.sources.resolve import looks_local

    if looks_local(model_path):
        raise ModelLoadError(f"model path {model_path!r} does not exist")
    _check_hub(model_path)


def _check_hub(hub_id: str) -> None:
    from huggingface_hub import constants, snapshot_download

    from workers.sources.hub import not_cached
    from workers.sources.packaged import packaged_model_dir

    if packaged_model_dir(hub_id) is not None:
        return
    try:
        snapshot_download(hub_id, local_files_only=True)
    except Exception as exc:
        if constants.HF_HUB_OFFLINE:
            raise ModelLoadError(not_cached(hub_id)) from exc
        log.info("event=hub_not_cached model_path=%s msg=%r", hub_id, "fetched at first load")


def _check_s3(uri: str, region: str | None) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from workers.sources import s3

    bucket, key = s3.parse_s3_uri(uri)
    client = boto3.session.Session().client(
        "s3", region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 2})
    )
    try:
        s3.list_objects(client, bucket, key)
    except ClientError as exc:
        raise ModelLoadError(f"{uri}: {s3.describe_error(exc)}") from exc
    except BotoCoreError as exc:
        if s3.newest_download(uri) is None:
            raise ModelLoadError(
                f"{uri}: S3 cannot be reached and nothing is cached: {exc}"
            ) from exc
        log.warning("event=s3_unreachable uri=%s msg=%r", uri, "a cached copy will serve")
