"""Running a torch encoder in bf16 / fp16: its linear layers only.

Measured side by side on all-MiniLM-L6-v2 (bench/precision.py, docs/PERFORMANCE.md),
three ways to run bf16 on a CPU with AVX512-BF16:

- ``torch.autocast("cpu", dtype=torch.bfloat16)``: matmuls in bf16, LayerNorm and the
  residual stream in fp32; casts every weight again at each call and converts
  activations back and forth around each op;
- ``model.to(torch.bfloat16)``: everything in bf16, the residual stream and LayerNorm
  included, so the vectors drift most (min cosine 0.99993 on real texts);
- **this module**: each ``nn.Linear`` holds its weights in bf16 once and returns bf16;
  attention runs on those bf16 projections; the residual adds promote back to fp32, so
  LayerNorm, the residual stream, embeddings and pooling stay fp32. Autocast's fidelity
  (min cosine 0.99998) at more than autocast's speed.

:func:`lower_linears` swaps the layers in place and returns the function that puts the
fp32 layers back (the fidelity probe's fallback); once that function is dropped, the
fp32 weights of the swapped layers are freed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import numpy as np

    from tasks.contract.spec import ModelSpec
    from workers.models.fidelity import PrecisionRecord

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class LowPrecisionLinear(nn.Module):
    """An ``nn.Linear`` computed in ``dtype``: input cast to it, output left in it."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().to(dtype), requires_grad=False)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(dtype), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.dtype), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.dtype}"


def lower_linears(module: nn.Module, precision: str) -> Callable[[], None]:
    """Replace every ``nn.Linear`` under ``module`` by a :class:`LowPrecisionLinear`."""
    dtype = DTYPES[precision]
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    if dtype is not torch.float32:
        for parent in list(module.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, child_name, LowPrecisionLinear(child, dtype))
                    swapped.append((parent, child_name, child))

    def restore() -> None:
        for parent, child_name, child in swapped:
            setattr(parent, child_name, child)

    return restore


def own_storage(module: nn.Module) -> int:
    """Copy every tensor of ``module`` not yet lowered into memory of its own; returns
    how many were copied.

    Weights load memory-mapped from the safetensors file: lowering reads every linear
    weight, so the whole file's pages become resident, and they stay mapped (and
    counted in RSS) while any tensor still points into the file, although the fp32
    linear weights themselves are gone. Owning the rest (embeddings, LayerNorm) lets
    the mapping go: the model then holds its bf16 linears plus its fp32 rest, and RSS
    says so (issue 17's measured RAM)."""
    copied = 0
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, LowPrecisionLinear):
                continue
            for param in list(sub.parameters(recurse=False)):
                param.data = param.data.clone()
                copied += 1
            for name, buf in list(sub.named_buffers(recurse=False)):
                setattr(sub, name, buf.clone())
                copied += 1
    return copied


def let_the_weights_file_go(module: nn.Module) -> None:
    """After a lowering the probe kept: :func:`own_storage`, then give the probe's
    freed heap back, so the model's RSS is what it now holds."""
    from workers.memory.readings import release_memory

    own_storage(module)
    release_memory()


def settle_torch_precision(
    name: str,
    spec: ModelSpec,
    device: str,
    module: nn.Module,
    encode: Callable[[list[str]], np.ndarray],
    lower: Callable[[str], Callable[[], None]],
) -> tuple[PrecisionRecord, int]:
    """A torch wrapper's precision at load: the probe's verdict
    (``workers.models.fidelity``) and the batch size for it; after a lowering the probe
    kept, the weights file is let go (:func:`let_the_weights_file_go`)."""
    from workers.models.fidelity import settle_precision
    from workers.models.precision import batch_size_for, detect_hardware

    record = settle_precision(name, spec.precision, detect_hardware(device), encode, lower)
    if record.precision != "fp32":
        let_the_weights_file_go(module)
    return record, batch_size_for(spec, record.precision, device)
