"""Which floating-point precision a model computes in: ``"auto"`` is bf16 only where the device computes bf16
natively, fp32 elsewhere. The one place that decides (``choose``); sampling, lm-eval and training all ask it.

Why not bf16 everywhere: on a CPU without bf16 instructions PyTorch falls back to slow paths — measured on an AMD
EPYC with AVX2 only, a 1024² matmul ran at 0.9 GFLOP/s in bf16 against 47 in fp32, and SmolLM2-135M generated
3.2× slower (README, Precision). Where bf16 is native (CUDA from Ampere on; x86 CPUs with AVX512-BF16 or AMX) it is
faster and halves the weights' memory.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

#: the spellings a recipe may use, each to its torch dtype name (train.precision says "fp32"/"bf16")
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class Hardware:
    """A compute device as far as precision is concerned."""

    device: str  # "cpu" or "cuda"
    #: ``torch.backends.cpu.get_cpu_capability()`` ("AVX2", "AVX512", …) or the CUDA compute capability ("sm_90")
    capability: str
    native_bf16: bool

    def describe(self) -> str:
        return f"{self.device} {self.capability}, {'native' if self.native_bf16 else 'no native'} bf16"


def choose(requested: str, hardware: Hardware) -> str:
    """The torch dtype name a model runs in: ``requested`` itself ("float32", "bfloat16", "float16", or their short
    forms "fp32", "bf16", "fp16") — an explicit choice is always honoured —, or for "auto": "bfloat16" when
    ``hardware`` computes bf16 natively, else "float32"."""
    if requested == "auto":
        return "bfloat16" if hardware.native_bf16 else "float32"
    name = DTYPE_NAMES.get(requested, requested)
    if name not in DTYPE_NAMES.values():
        known = ", ".join([*DTYPE_NAMES.values(), *DTYPE_NAMES])
        raise ValueError(f"unknown precision {requested!r}: auto, {known}")
    return name


@functools.cache
def detect(device: str = "cpu") -> Hardware:
    """This machine's ``device`` ("cpu", "cuda" or "cuda:N")."""
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        # emulated bf16 (pre-Ampere GPUs) is slower than fp32: only the native kind counts
        return Hardware("cuda", f"sm_{major}{minor}", torch.cuda.is_bf16_supported(including_emulation=False))
    return Hardware("cpu", torch.backends.cpu.get_cpu_capability(), _cpu_native_bf16())


def _cpu_native_bf16() -> bool:
    """x86: the AVX512-BF16 or AMX instructions. oneDNN's own check (``_is_mkldnn_bf16_supported``) also says yes
    on any AVX-512 core, where it emulates bf16 with fp32 arithmetic and conversions — supported, not native. Other
    architectures (Arm with BF16 extensions): oneDNN's check, which reads the instructions there."""
    import torch

    if platform.machine().lower() in ("x86_64", "amd64") and hasattr(torch.cpu, "_is_avx512_bf16_supported"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def compute_device() -> str:
    """Where a step computes when it can choose: "cuda" when this machine has a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve(requested: str, device: str = "cpu") -> str:
    """``choose`` on this machine's ``device``."""
    return choose(requested, detect(device))
