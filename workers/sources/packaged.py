"""Models shipped as Python packages: the worker side's name for
:mod:`tasks.contract.packaged` (the gateway reads their tokenizers too)."""

from __future__ import annotations

from tasks.contract.packaged import PACKAGED_MODELS, packaged_model_dir

__all__ = ["PACKAGED_MODELS", "packaged_model_dir"]
