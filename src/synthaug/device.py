"""Device choice: CUDA automatically when present, CPU otherwise; bf16 on the CPU only where it is native."""

from __future__ import annotations

import functools
import platform
import sys

import torch

from synthaug.config.load import ConfigError


def pick_device(preference: str = "auto") -> torch.device:
    """Return the torch device for ``preference`` ("auto", "cpu", "cuda", "cuda:1", ...).

    "auto" picks CUDA when available. Asking for CUDA on a machine without it is an error
    with a hint, never a silent fallback (a silent fallback would make a GPU study run for days).
    """
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(preference)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={preference!r} was asked for but CUDA is not available; use device=auto or cpu")
    return dev


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 matrix work in hardware (AVX512-BF16 or AMX), by oneDNN's own check."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def require_native_cpu_bf16(setting: str) -> None:
    """Refuse bf16 autocast on a CPU that only emulates bf16.

    There bf16 is not faster but many times slower than fp32 (the ldm's training steps 16.5-22x on an
    AVX2 core, docs/BENCHMARKS.md), and speed is the option's only purpose: a study that asked for it
    would run for days. The message names ``setting`` and the fix.
    """
    if not cpu_has_native_bf16():
        raise ConfigError(
            f"{setting}: true asks for bf16 autocast on the CPU, but this CPU "
            f"({torch.backends.cpu.get_cpu_capability()}) has no native bf16 (AVX512-BF16 or AMX), where bf16 "
            f"runs many times slower than fp32; set {setting}: false"
        )


def environment() -> dict[str, str]:
    """Versions and machine that made a run's artifacts (RUN_DIR/environment.yaml; the report prints them).

    The CPU's vector capability and native bf16 are recorded because runs on two kinds of CPU need not
    agree cell by cell: one seed's none cell gave 0.834 test accuracy on an AVX2 machine and 0.841 on
    an AVX-512 one (docs/RESULTS.md; the cause not checked), so a run directory says which kind made it.
    """
    import numpy
    import torchvision

    import synthaug

    return {
        "synthaug": synthaug.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda or "none",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_native": str(cpu_has_native_bf16()).lower(),
    }
