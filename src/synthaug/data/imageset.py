"""The in-memory dataset every stage works on: preprocessed one-channel uint8 images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class ImageSet:
    """Images of one resolution with integer labels and stable ids.

    images: (N, H, W) uint8, one channel.  labels: (N,) int64 in [0, len(class_names)).
    ids: (N,) str, unique and stable across runs (relative path or generated id).
    masks: optional (N, H, W) bool lesion masks (phantom data).
    splits: (N,) str, the split each image came from ("train" / "test").
    groups: optional (N,) int64 unit of splitting (patient or duplicate group); splits keep units whole.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    class_names: tuple[str, ...]
    splits: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    masks: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W) uint8, got {self.images.shape} {self.images.dtype}")
        if len(self.labels) != n or len(self.ids) != n:
            raise ValueError(f"images ({n}), labels ({len(self.labels)}) and ids ({len(self.ids)}) differ in length")
        if len(self.splits) == 0:
            object.__setattr__(self, "splits", np.full(n, "train", dtype=object))
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"labels must lie in [0, {len(self.class_names)}) for classes {list(self.class_names)}; "
                f"found {int(self.labels.min())}..{int(self.labels.max())}"
            )
        if self.masks is not None and self.masks.shape != self.images.shape:
            raise ValueError(f"masks {self.masks.shape} do not match images {self.images.shape}")
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"groups ({len(self.groups)}) and images ({n}) differ in length")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, index: np.ndarray | list[int]) -> ImageSet:
        idx = np.asarray(index, dtype=np.int64)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            ids=self.ids[idx],
            class_names=self.class_names,
            splits=self.splits[idx],
            masks=None if self.masks is None else self.masks[idx],
            groups=None if self.groups is None else self.groups[idx],
        )

    def split(self, name: str) -> ImageSet:
        return self.subset(np.flatnonzero(self.splits == name))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    @staticmethod
    def concat(parts: list[ImageSet]) -> ImageSet:
        if not parts:
            raise ValueError("nothing to concatenate")
        names = parts[0].class_names
        if any(p.class_names != names for p in parts):
            raise ValueError("cannot concatenate image sets with different classes")
        masks = None
        if all(p.masks is not None for p in parts):
            masks = np.concatenate([p.masks for p in parts])  # type: ignore[misc]
        return ImageSet(
            images=np.concatenate([p.images for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            ids=np.concatenate([p.ids for p in parts]),
            class_names=names,
            splits=np.concatenate([p.splits for p in parts]),
            masks=masks,
        )


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [-1, 1]; the one intensity scaling every model uses."""
    t = torch.as_tensor(images)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    return t.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 1, H, W) in [-1, 1] -> uint8 (N, H, W); inverse of :func:`to_float` (clipped)."""
    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y[:, 0].cpu().numpy()
