"""Which configured models a worker serves: ``--models`` / ``EMBEDFLEET_WORKER_MODELS``."""

from __future__ import annotations

from tasks.contract.spec import ModelConfig

#: Env var naming the models a worker serves: ``all`` or a comma-separated list.
SELECTION_ENV = "EMBEDFLEET_WORKER_MODELS"


def selected_models(selection: str) -> list[str] | None:
    """``--models`` / ``EMBEDFLEET_WORKER_MODELS``: None for ``all``, else the names."""
    if selection.strip() == "all":
        return None
    return [m.strip() for m in selection.split(",") if m.strip()]


def served_models(config: ModelConfig, selection: str = "all") -> list[str]:
    """Models a worker consumes under ``config``: all, or the ``selection`` ones."""
    wanted = selected_models(selection)
    return sorted(config) if wanted is None else sorted(m for m in config if m in wanted)
