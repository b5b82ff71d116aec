"""The device a local wrapper runs on, from the config's ``device`` field."""

from __future__ import annotations

from workers.errors import ModelLoadError


def pick_torch_device(requested: str, cuda_available: bool | None = None) -> str:
    """``cpu`` | ``cuda`` | ``auto`` (cuda when torch sees a GPU) -> a torch device string.

    ``cuda_available`` defaults to what torch sees (tests pass either answer)."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested == "cuda" and not cuda_available:
        raise ModelLoadError("device 'cuda' was asked for but torch sees no CUDA device")
    return requested
