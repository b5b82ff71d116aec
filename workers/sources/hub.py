"""Hugging Face Hub ids, resolved through the hub client and its cache.

With ``HF_HUB_OFFLINE=1`` (or no network) a cached model loads; an uncached one fails
with an error that says how to provide it.
"""

from __future__ import annotations

from pathlib import Path

from workers.errors import ModelLoadError


def hub_model_dir(hub_id: str, revision: str | None = None) -> Path:
    """Local snapshot folder of ``hub_id``: from the cache, else downloaded if allowed."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = constants.HF_HUB_OFFLINE  # the hub client's own reading of HF_HUB_OFFLINE
    try:
        return Path(snapshot_download(hub_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        if offline:
            raise ModelLoadError(not_cached(hub_id)) from None
    except Exception as exc:  # a malformed cache entry or id
        raise ModelLoadError(f"Hugging Face Hub id {hub_id!r}: {exc}") from exc
    try:
        return Path(snapshot_download(hub_id, revision=revision))
    except Exception as exc:
        raise ModelLoadError(f"{not_cached(hub_id)} (download failed: {exc})") from exc


def not_cached(hub_id: str) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return (
        f"model {hub_id!r} is not in the Hugging Face cache ({HF_HUB_CACHE}) and the Hub "
        f"cannot be reached; run `hf download {hub_id}` where there is network and copy that "
        "cache here (or point HF_HUB_CACHE at it), or set model_path to a local folder"
    )
