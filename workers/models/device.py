"""The device a local wrapper runs on, from the config's ``device`` field."""

from __future__ import annotations

from workers.errors import ModelLoadError


def pick_torch_device(requested: str) -> str:
    """``cpu`` | ``cuda`` | ``auto`` (cuda when torch sees a GPU) -> a torch device string."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but torch sees no CUDA device")
    return requested
