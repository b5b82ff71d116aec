"""Turn a ``model_path`` into a local folder: local path, packaged model, or Hub id."""

from __future__ import annotations

from pathlib import Path

from workers.errors import ModelLoadError
from workers.sources.hub import hub_model_dir
from workers.sources.packaged import packaged_model_dir


def resolve_model_dir(model_path: str, base_dir: Path | None = None) -> Path:
    """Local folder (or file) holding the model that ``model_path`` names.

    Order: an existing local path (relative ones against ``base_dir``, the config's
    folder, then the working directory); a package that ships the hub id; the Hub.
    """
    if model_path.startswith("s3://"):
        raise ModelLoadError(f"{model_path}: S3 paths need the 's3' model type")
    candidates = [Path(model_path).expanduser()]
    if base_dir is not None and not candidates[0].is_absolute():
        candidates.insert(0, base_dir / model_path)
    for path in candidates:
        if path.exists():
            return path.resolve()
    if _looks_local(model_path):
        raise ModelLoadError(f"model path {model_path!r} does not exist")
    packaged = packaged_model_dir(model_path)
    if packaged is not None:
        return packaged
    return hub_model_dir(model_path)


def _looks_local(model_path: str) -> bool:
    return model_path.startswith(("/", "./", "../", "~")) or model_path.count("/") > 1
