"""Turn a ``model_path`` into a local folder or file: local path, S3, package, or Hub id."""

from __future__ import annotations

from pathlib import Path

from workers.errors import ModelLoadError
from workers.sources.hub import hub_model_dir
from workers.sources.packaged import packaged_model_dir


def resolve_model_dir(
    model_path: str, base_dir: Path | None = None, region: str | None = None
) -> Path:
    """Local folder (or file) holding the model that ``model_path`` names.

    Order: ``s3://bucket/key`` (fetched into the download folder, see
    ``workers.sources.s3``); an existing local path (relative ones against ``base_dir``,
    the config's folder, then the working directory); a package that ships the hub id;
    the Hub (its cache, then the network unless ``HF_HUB_OFFLINE``).
    """
    if model_path.startswith("s3://"):
        from workers.sources.s3 import fetch_s3

        return fetch_s3(model_path, region)
    candidates = [Path(model_path).expanduser()]
    if base_dir is not None and not candidates[0].is_absolute():
        candidates.insert(0, base_dir / model_path)
    for path in candidates:
        if path.exists():
            return path.resolve()
    if looks_local(model_path):
        raise ModelLoadError(f"model path {model_path!r} does not exist")
    packaged = packaged_model_dir(model_path)
    if packaged is not None:
        return packaged
    return hub_model_dir(model_path)


def looks_local(model_path: str) -> bool:
    return model_path.startswith(("/", "./", "../", "~")) or model_path.count("/") > 1
