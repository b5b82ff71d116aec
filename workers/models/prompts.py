"""The prompts a model declares: models.json ``prompts`` / ``default_prompt_name`` over,
for ``sentence_transformer`` models, the folder's own config_sentence_transformers.json
(as sentence-transformers merges them: the entry's values win).

A job's ``prompt_name`` / ``prompt`` (``tasks.contract.options``) picks the text put
before each input; :func:`prompt_text` resolves it against a loaded model.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.contract.errors import InvalidRequest
from tasks.contract.logs import event_logger
from tasks.contract.options import EmbedOptions
from tasks.contract.spec import ModelConfig, ModelSpec

log = event_logger(__name__)

#: sentence-transformers' file holding a model folder's prompts.
ST_CONFIG = "config_sentence_transformers.json"


def declared_prompts(spec: ModelSpec) -> tuple[dict[str, str], str | None]:
    """``(prompts, default_prompt_name)`` of ``spec`` without loading the model: its
    folder's config (``sentence_transformer`` models in a local folder or a package)
    under the entry's own values."""
    prompts: dict[str, str] = {}
    default: str | None = None
    if spec.type == "sentence_transformer" and not spec.model_path.startswith("s3://"):
        try:
            from workers.sources import resolve_model_dir

            folder = resolve_model_dir(spec.model_path, spec.base_dir, spec.region)
            saved = json.loads((folder / ST_CONFIG).read_text())
            prompts = {str(k): str(v) for k, v in (saved.get("prompts") or {}).items()}
            default = saved.get("default_prompt_name") or None
        except Exception as exc:  # not local, or no config: the entry's values only
            log.debug("event=prompts_not_read path=%s error=%r", spec.model_path, str(exc))
    prompts.update(spec.prompts or {})
    return prompts, spec.default_prompt_name or default


def published_facts(config: ModelConfig) -> dict[str, dict[str, Any]]:
    """Per model, the prompts the catalog publishes so producers check ``prompt_name``."""
    out = {}
    for name, spec in config.items():
        prompts, default = declared_prompts(spec)
        out[name] = {"prompts": prompts, "default_prompt_name": default}
    return out


def prompt_text(
    options: EmbedOptions, model: str, prompts: dict[str, str], default: str | None
) -> str:
    """The text put before each input of a job: its literal ``prompt``, else the named
    prompt, else the model's default prompt, else none (``""``); :class:`InvalidRequest`
    naming the model's prompts when the name is not one of them."""
    if options.prompt is not None:
        return options.prompt
    name = options.prompt_name if options.prompt_name is not None else default
    if name is None:
        return ""
    if name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise InvalidRequest(f"model {model!r} has no prompt {name!r}; its prompts: {known}")
    return prompts[name]
