"""Device choice: CUDA automatically when present, CPU otherwise."""

from __future__ import annotations

import torch


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
