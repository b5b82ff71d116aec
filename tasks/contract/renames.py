"""Old names of settings that still work: the download folder was the "model cache".

``EMBEDFLEET_MODEL_CACHE`` still sets ``EMBEDFLEET_DOWNLOAD_DIR`` (an ``event=
deprecated_variable`` warning, kept as a :data:`Notice` until the entry point has
configured logging), and ``Settings(model_cache=...)`` or ``model_copy(update=
{"model_cache": ...})`` still set ``download_dir`` (a DeprecationWarning). The new name
wins when both are given. Read by :mod:`tasks.contract.settings` only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from tasks.contract.logs import event_logger

log = event_logger("tasks.contract.settings")  # the settings' warnings, under their name

#: Old variable -> the field it still sets, when the field's own variable is unset.
DEPRECATED = {"EMBEDFLEET_MODEL_CACHE": "download_dir"}
#: Old keyword of ``Settings(...)`` and ``model_copy(update=...)`` -> the field it sets.
OLD_KEYWORDS = {"model_cache": "download_dir"}
#: A warning kept for later: an event template and its values (see :func:`log_notices`).
Notice = tuple[str, tuple[Any, ...]]


def renamed(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each old keyword moved to its field (unless the field is given
    too), with a DeprecationWarning for each one found."""
    for old, field in OLD_KEYWORDS.items():
        if old in values:
            warnings.warn(
                f"Settings: {old!r} is deprecated, use {field!r}", DeprecationWarning, stacklevel=4
            )
            values = dict(values)
            value = values.pop(old)
            values.setdefault(field, value)
    return values


def moved_to_fields(
    values: dict[str, str], notices: list[Notice], env_name: Callable[[str], str]
) -> None:
    """Move each deprecated variable's value in ``values`` to its field's variable
    (``env_name(field)``, which wins when both are set), adding a warning saying so to
    ``notices``."""
    for old, field in DEPRECATED.items():
        if old not in values:
            continue
        value, new = values.pop(old), env_name(field)
        if new in values:
            notices.append(("event=deprecated_variable name=%s ignored_for=%s", (old, new)))
        else:
            notices.append(("event=deprecated_variable name=%s use=%s", (old, new)))
            values[new] = value


def log_notices(notices: list[Notice]) -> None:
    """Log the warnings :func:`~tasks.contract.settings.load_settings` kept, each once."""
    for template, args in notices:
        log.warning(template, *args)
