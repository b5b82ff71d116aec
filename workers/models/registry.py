"""Model types: type name -> ``module:Class``, imported only when first used.

Adding a type is one wrapper file and one line here: what the type can do (token
counting, S3 format detection, its libraries, remote or local) is declared on its class
(``workers.models.base.BaseEmbeddingModel``), not here. Operators can also name their
own class in models.json with a dotted path (``"type": "package.module:Class"``).
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

from workers.errors import ConfigError
from workers.models.base import BaseEmbeddingModel

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

TYPES: dict[str, str] = {
    "sentence_transformer": "workers.models.sentence_transformer:SentenceTransformerWrapper",
    "onnx": "workers.models.onnx:OnnxEmbeddingWrapper",
    "bert": "workers.models.bert:BertEmbeddingWrapper",
    "sagemaker": "workers.models.sagemaker:SageMakerEmbeddingWrapper",
    "s3": "workers.models.s3:S3ModelWrapper",
}

_DOTTED = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_known_type(type_name: str) -> bool:
    """True for a registered type name or a ``module:Class`` dotted path."""
    return type_name in TYPES or bool(_DOTTED.match(type_name))


def check_type(type_name: str) -> None:
    """The config schema's type check (``tasks.contract.spec.TypeCheck``): ValueError if unknown."""
    if not is_known_type(type_name):
        raise ValueError(f"unknown type {type_name!r}; known: {', '.join(sorted(TYPES))}")


def check_format(type_name: str) -> None:
    """The config schema's check of an ``s3`` entry's ``format``: a registered type
    that declares an S3 format (``s3_format_order``); ValueError if not."""
    formats = sorted(n for n in TYPES if resolve_class(n).s3_format_order is not None)
    if type_name not in formats:
        raise ValueError(f"unknown format {type_name!r}; known: {', '.join(formats)}")


def resolve_class(type_name: str) -> type[BaseEmbeddingModel]:
    """Import the wrapper class of ``type_name``."""
    target = TYPES.get(type_name, type_name)
    if not _DOTTED.match(target):
        raise ConfigError(f"unknown model type {type_name!r}; known: {sorted(TYPES)}")
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model type {type_name!r}: cannot import {target}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseEmbeddingModel)):
        raise ConfigError(f"model type {type_name!r}: {target} is not a BaseEmbeddingModel")
    return cls


def cuts_windows(type_name: str) -> bool | None:
    """True when the type cuts texts into token windows (``long_text=mean|windows``: its
    class implements ``window_spans``); None when the type cannot be imported here.
    Producers refuse those options at submit for a type that cannot
    (``tasks.contract.options.check_for_model``, the published fact ``windows``)."""
    try:
        cls = resolve_class(type_name)
    except ConfigError:
        return None
    return cls.window_spans is not BaseEmbeddingModel.window_spans


def build_model(name: str, spec: ModelSpec) -> BaseEmbeddingModel:
    """Construct (load) the model ``name`` described by ``spec``."""
    return resolve_class(spec.type)(name, spec)
