"""Which numeric precision a torch model runs in: the ``precision`` field, per machine.

``auto`` (the default) picks what the hardware runs fast:

- CPU with AMX-BF16 (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``): ``bf16``; oneDNN
  runs bf16 matrix products there natively (a 384x1536 linear layer measured 2.4x fp32
  on a Zen 4 with AVX512-BF16; AMX tiles go further).
- any other CPU (AVX2 only, AVX-512 without BF16, non-x86): ``fp32``; bf16 would be
  emulated there and run slower than fp32.
- CUDA with compute capability >= 7.0 (tensor cores): ``fp16``, which keeps 3 more
  mantissa bits than bf16 (an overflow shows in the fidelity probe, which then falls
  back to fp32); older GPUs: ``fp32``.

An explicit ``bf16`` / ``fp16`` is honoured only where the hardware runs it natively,
else it is a load error that names the missing CPU flags or GPU capability. Whatever is
picked must then pass the fidelity probe (``workers.models.fidelity``).

Detection reads ``/proc/cpuinfo`` (the same flags ``lscpu`` prints) and torch's CUDA
capability; both are injected as a :class:`Hardware` value, so tests pick the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.contract.logs import event_logger
from workers.errors import ModelLoadError

if TYPE_CHECKING:
    from tasks.contract.spec import ModelSpec

log = event_logger(__name__)

#: Precisions a torch wrapper can run in (besides ``auto``).
PRECISIONS = ("fp32", "bf16", "fp16")
#: CPU flags (``/proc/cpuinfo``) under which bf16 runs natively (oneDNN).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: CPU flags under which fp16 runs natively (AVX512-FP16: Sapphire Rapids and later).
FP16_CPU_FLAGS = ("amx_fp16", "avx512_fp16")
#: CUDA compute capability from which fp16 runs on tensor cores (Volta).
CUDA_FP16_CAPABILITY = (7, 0)
#: CUDA compute capability from which bf16 runs on tensor cores (Ampere).
CUDA_BF16_CAPABILITY = (8, 0)
CPUINFO = Path("/proc/cpuinfo")
#: Texts per forward pass by precision on a CPU, when the config sets no ``batch_size``.
#: bf16 measured fastest at 16 on a Zen 4 (AVX512-BF16), 2 threads, 256 real texts
#: interleaved: batch 8 / 16 / 32 / 64 = 1.79x / 2.31x / 1.86x / 1.15x fp32 at 32
#: (fp32: 16 and 32 equal, 64 0.81x). Larger bf16 batches lose: more padding and
#: attention work per batch, activations out of cache.
CPU_BATCH_SIZE = {"bf16": 16}


@dataclass(frozen=True)
class Hardware:
    """What the model will run on: a device and what it can do."""

    device: str  # "cpu" | "cuda"
    cpu_flags: frozenset[str] = frozenset()
    cuda_capability: tuple[int, int] | None = None

    def describe(self) -> str:
        """A short text for logs and errors: the flags that decide precision."""
        if self.device == "cuda":
            major, minor = self.cuda_capability or (0, 0)
            return f"cuda capability {major}.{minor}"
        shown = [f for f in (*BF16_CPU_FLAGS, *FP16_CPU_FLAGS) if f in self.cpu_flags]
        return "cpu " + (",".join(shown) or "without bf16/fp16 flags")


def read_cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The CPU feature flags of the first ``flags`` line of ``cpuinfo`` (default
    :data:`CPUINFO`); empty where unreadable, which means fp32."""
    cpuinfo = cpuinfo or CPUINFO
    try:
        with cpuinfo.open() as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError as exc:
        log.debug("event=cpu_flags_unreadable path=%s error=%r", cpuinfo, str(exc))
    return frozenset()


def detect_hardware(device: str) -> Hardware:
    """The :class:`Hardware` of ``device`` (a torch device string) on this machine."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index or 0
        return Hardware("cuda", cuda_capability=tuple(torch.cuda.get_device_capability(index)))
    return Hardware("cpu", cpu_flags=read_cpu_flags())


def native_precisions(hw: Hardware) -> tuple[str, ...]:
    """The precisions ``hw`` runs natively, fastest-preferred first, fp32 last."""
    if hw.device == "cuda":
        cap = hw.cuda_capability or (0, 0)
        found = [
            p
            for p, need in (("fp16", CUDA_FP16_CAPABILITY), ("bf16", CUDA_BF16_CAPABILITY))
            if cap >= need
        ]
    else:
        found = []
        if any(f in hw.cpu_flags for f in BF16_CPU_FLAGS):
            found.append("bf16")
        if any(f in hw.cpu_flags for f in FP16_CPU_FLAGS):
            found.append("fp16")
    return (*found, "fp32")


def choose_precision(name: str, requested: str, hw: Hardware) -> str:
    """The precision model ``name`` tries: ``auto`` -> the first native one; an explicit
    one if native, else :class:`ModelLoadError` saying what the hardware lacks."""
    native = native_precisions(hw)
    if requested == "auto":
        return native[0]
    if requested not in PRECISIONS:
        raise ModelLoadError(
            f"model {name!r}: unknown precision {requested!r}; use auto, {', '.join(PRECISIONS)}"
        )
    if requested not in native:
        need = (
            f"CPU flag {' or '.join(BF16_CPU_FLAGS if requested == 'bf16' else FP16_CPU_FLAGS)}"
            if hw.device == "cpu"
            else "CUDA capability "
            + ".".join(
                map(str, CUDA_BF16_CAPABILITY if requested == "bf16" else CUDA_FP16_CAPABILITY)
            )
        )
        raise ModelLoadError(
            f"model {name!r}: precision {requested!r} needs {need}, which this machine lacks "
            f"({hw.describe()}); use 'auto' or 'fp32'"
        )
    return requested


def batch_size_for(spec: ModelSpec, precision: str, device: str) -> int:
    """The configured ``batch_size`` if set, else the precision's measured best on a CPU."""
    if "batch_size" in spec.model_fields_set or device != "cpu":
        return spec.batch_size
    return CPU_BATCH_SIZE.get(precision, spec.batch_size)
