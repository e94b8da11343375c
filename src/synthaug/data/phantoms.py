"""Built-in phantom dataset: procedural brain-MRI-like axial slices with lesion classes and masks.

Every image is drawn in one vectorised pass over a batch (torch, CPU): a head ellipse with
skull and scalp, textured brain tissue, ventricles, a smooth intensity bias field, Rician-like
noise and a random pose. Lesions follow the four classes of the Brain Tumor MRI dataset:

- ``notumor``     no lesion (but the same distractors as every class);
- ``glioma``     irregular heterogeneous mass with an oedema halo, inside one hemisphere;
- ``meningioma`` sharp round homogeneous mass pressed against the skull;
- ``pituitary``  small mass on the midline at the skull base;
- ``metastasis`` (optional rare class) two to four small ring-enhancing lesions.

Lesion contrast and size vary widely and every class carries small bright distractor spots,
so the task is learnable but not trivial. Images are deterministic per seed: batch ``k`` is
drawn from ``torch.Generator`` seeded with ``(seed, k)``, so the first images do not change
when ``n`` grows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from synthaug.data.imageset import ImageSet

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
RARE_CLASS = "metastasis"
_BATCH = 256


def class_names(rare_class: bool = False) -> tuple[str, ...]:
    return (*CLASSES, RARE_CLASS) if rare_class else CLASSES


def class_counts(n: int, weights: dict[str, float] | None, names: tuple[str, ...]) -> np.ndarray:
    """Images per class for ``n`` images; ``weights`` (class -> relative weight) makes imbalance."""
    w = np.ones(len(names))
    for name, value in (weights or {}).items():
        if name not in names:
            raise ValueError(f"imbalance names unknown phantom class {name!r}; classes are {list(names)}")
        if value <= 0:
            raise ValueError(f"imbalance weight for {name!r} must be > 0, got {value}")
        w[names.index(name)] = value
    counts = np.floor(n * w / w.sum()).astype(np.int64)
    counts[np.argsort(-w, kind="stable")[: n - counts.sum()]] += 1  # hand out the remainder
    return counts


def generate(
    n: int,
    size: int = 64,
    seed: int = 0,
    imbalance: dict[str, float] | None = None,
    rare_class: bool = False,
    test_fraction: float = 0.2,
    lesion_scale: float = 1.0,
    lesion_contrast: float = 1.0,
) -> ImageSet:
    """Draw ``n`` phantom slices of ``size``×``size`` with labels, masks and a train/test split.

    ``lesion_scale`` / ``lesion_contrast`` multiply every lesion's size and contrast (1: the
    default task; larger values make an easier one, e.g. for small images)."""
    if n < 1 or size < 16:
        raise ValueError(f"phantoms need n >= 1 and size >= 16, got n={n}, size={size}")
    names = class_names(rare_class)
    labels = np.repeat(np.arange(len(names)), class_counts(n, imbalance, names))
    labels = labels[np.random.default_rng(seed).permutation(n)]
    images = np.empty((n, size, size), np.uint8)
    masks = np.empty((n, size, size), bool)
    for k, start in enumerate(range(0, n, _BATCH)):
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)
        lab = torch.as_tensor(labels[start : start + _BATCH])
        img, msk = _draw_batch(lab, size, names, g, lesion_scale, lesion_contrast)
        images[start : start + len(lab)] = img.mul(255).round().to(torch.uint8).numpy()
        masks[start : start + len(lab)] = msk.numpy()
    splits = _split(labels, test_fraction, seed)
    ids = np.array([f"phantom_{i:06d}" for i in range(n)], dtype=object)
    return ImageSet(images, labels.astype(np.int64), ids, names, splits, masks)


def _split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    from synthaug.data.splits import stratified_split

    splits = np.full(len(labels), "train", dtype=object)
    if test_fraction > 0 and len(labels) > 1:
        _, test = stratified_split(labels, test_fraction, seed)
        splits[test] = "test"
    return splits


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    """(n, 1, 1) uniform draws, shaped to broadcast against (n, H, W) images."""
    return (lo + (hi - lo) * torch.rand(n, generator=g)).view(n, 1, 1)


def _smooth_noise(g: torch.Generator, n: int, size: int, cells: int) -> torch.Tensor:
    """(n, size, size) smooth noise in about [-1, 1] made by upsampling a cells×cells grid."""
    coarse = torch.randn(n, 1, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0].clamp(-2.5, 2.5) / 2.5


def _draw_batch(
    labels: torch.Tensor,
    size: int,
    names: tuple[str, ...],
    g: torch.Generator,
    lesion_scale: float = 1.0,
    lesion_contrast: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a batch: returns images (n, S, S) float in [0, 1] and masks (n, S, S) bool."""
    n = len(labels)
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")  # (S, S); y grows downwards
    # Pose: rotate, scale and shift the head coordinates per image.
    th = _u(g, n, -0.3, 0.3)
    sc = _u(g, n, 0.9, 1.1)
    x = (torch.cos(th) * xx + torch.sin(th) * yy) * sc - _u(g, n, -0.07, 0.07)
    y = (-torch.sin(th) * xx + torch.cos(th) * yy) * sc - _u(g, n, -0.07, 0.07)
    ax, ay = _u(g, n, 0.72, 0.84), _u(g, n, 0.86, 0.95)  # head half-axes (taller than wide)
    r = torch.sqrt((x / ax) ** 2 + (y / ay) ** 2)  # 1.0 on the outer head contour

    brain = 0.42 + 0.08 * _smooth_noise(g, n, size, 12) + 0.05 * _smooth_noise(g, n, size, 24)
    # Cortical folding: a rippled band of brighter grey matter near the brain surface.
    ripple = torch.sin(r * _u(g, n, 35, 50) + 3 * _smooth_noise(g, n, size, 8))
    brain = brain + 0.06 * ripple * torch.sigmoid((r - 0.62) * 30)
    img = torch.where(r < 0.84, brain, torch.zeros_like(r))
    img = torch.where((r >= 0.84) & (r < 0.9), torch.full_like(r, 0.08), img)  # skull (dark bone)
    img = torch.where((r >= 0.9) & (r < 1.0), 0.75 + 0.1 * _smooth_noise(g, n, size, 16), img)  # scalp fat
    img = _ventricles(img, x, y, g)
    img = _distractors(img, x, y, r, g)

    mask = torch.zeros(n, size, size, dtype=torch.bool)
    for c, name in enumerate(names):
        sel = torch.nonzero(labels == c).flatten()
        if name == "notumor" or len(sel) == 0:
            continue
        base = img[sel]
        # Lesions are drawn in coordinates shrunk by lesion_scale (a larger lesion about the same
        # centre offset) and their added intensity is scaled by lesion_contrast.
        sub_img, sub_mask = _LESIONS[name](base, x[sel], y[sel], r[sel], g, lesion_scale)
        if lesion_contrast != 1.0:
            sub_img = base + lesion_contrast * (sub_img - base)
        img[sel], mask[sel] = sub_img, sub_mask & (r[sel] < 0.86)

    bias = 1.0 + 0.18 * _smooth_noise(g, n, size, 3)  # receive-coil bias field
    img = img * bias
    sigma = _u(g, n, 0.015, 0.06)
    re, im = img + sigma * torch.randn(img.shape, generator=g), sigma * torch.randn(img.shape, generator=g)
    img = torch.sqrt(re**2 + im**2)  # magnitude image: Rician noise as in real MRI
    return img.clamp(0, 1), mask


def _ellipse(
    x: torch.Tensor,
    y: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    rx: float | torch.Tensor,
    ry: float | torch.Tensor,
) -> torch.Tensor:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def _ventricles(img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = len(img)
    w = _u(g, n, 0.7, 1.4)  # ventricle size varies with age and slice level
    off = _u(g, n, -0.05, 0.05)
    for side in (-1.0, 1.0):
        d = _ellipse(x, y, side * 0.1 * w, off - 0.05, 0.07 * w.sqrt(), 0.22 * w.sqrt())
        img = torch.where(d < 1, 0.12 + 0.05 * torch.tanh(4 * (d - 1)).neg(), img)
    return img


def _distractors(
    img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """Small bright spots (vessels, calcifications) in every class, so spots alone do not reveal a lesion."""
    n = len(img)
    for _ in range(3):
        ang = _u(g, n, 0, 2 * math.pi)
        rad = _u(g, n, 0.0, 0.6)
        cx, cy = rad * torch.cos(ang) * 0.7, rad * torch.sin(ang) * 0.8
        s = _u(g, n, 0.015, 0.045)
        present = (torch.rand(n, generator=g) < 0.6).view(n, 1, 1)
        spot = torch.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2)))
        img = img + present * _u(g, n, 0.1, 0.35) * spot * (r < 0.84)
    return img


def _glioma(
    img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, g: torch.Generator, scale: float = 1.0
):
    n = len(img)
    side = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).view(n, 1, 1)
    cx, cy = side * _u(g, n, 0.18, 0.42), _u(g, n, -0.4, 0.3)
    phi = torch.atan2(y - cy, x - cx)
    rad = _u(g, n, 0.09, 0.22) * scale
    shape = torch.ones_like(phi)
    for k in (2, 3, 5):  # irregular border: random angular harmonics
        shape = shape + _u(g, n, 0.0, 0.22) * torch.cos(k * phi + _u(g, n, 0, 2 * math.pi))
    rho = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) / (rad * shape)
    contrast = _u(g, n, 0.08, 0.35)
    halo = torch.clamp(1.8 - rho, 0, 0.8) / 0.8 * (rho >= 1)  # oedema fades out to 1.8 radii
    core = rho < 1
    hetero = 0.12 * torch.randn(img.shape, generator=g).clamp(-2, 2) + 0.1 * _smooth_noise(g, n, img.shape[-1], 10)
    necrosis = (rho < _u(g, n, 0.0, 0.5)) & (torch.rand(n, generator=g) < 0.5).view(n, 1, 1)
    img = img + 0.5 * contrast * halo * (r < 0.84)
    img = torch.where(core, img + contrast + hetero * contrast * 2, img)
    img = torch.where(necrosis, img - 1.5 * contrast, img)
    return img, core


def _meningioma(
    img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, g: torch.Generator, scale: float = 1.0
):
    n = len(img)
    ang = _u(g, n, 0, 2 * math.pi)
    rad = _u(g, n, 0.06, 0.16) * scale
    dist = 0.76 - rad * 0.6  # the mass touches the inner skull surface
    cx, cy = dist * torch.cos(ang) * 0.8, dist * torch.sin(ang) * 0.9
    d = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) / rad
    core = d < 1
    contrast = _u(g, n, 0.1, 0.4)
    img = torch.where(core, img + contrast * (1 - 0.15 * d**2), img)
    return img, core


def _pituitary(
    img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, g: torch.Generator, scale: float = 1.0
):
    n = len(img)
    cx, cy = _u(g, n, -0.04, 0.04), _u(g, n, 0.45, 0.62)
    d = _ellipse(x, y, cx, cy, 1.0, 1.0).sqrt() / (_u(g, n, 0.04, 0.11) * scale)
    core = d < 1
    img = torch.where(core, img + _u(g, n, 0.12, 0.4) * (1 - 0.3 * d), img)
    return img, core


def _metastasis(
    img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, g: torch.Generator, scale: float = 1.0
):
    n = len(img)
    mask = torch.zeros(img.shape, dtype=torch.bool)
    for i in range(4):
        ang, rad = _u(g, n, 0, 2 * math.pi), _u(g, n, 0.1, 0.6)
        cx, cy = rad * torch.cos(ang) * 0.75, rad * torch.sin(ang) * 0.85
        d = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) / (_u(g, n, 0.03, 0.06) * scale)
        present = (torch.rand(n, generator=g) < (1.0 if i < 2 else 0.5)).view(n, 1, 1)
        ring = (d < 1) & present
        img = torch.where(ring, img + _u(g, n, 0.15, 0.4) * torch.where(d > 0.55, 1.0, -0.3), img)
        mask |= ring
    return img, mask


_LESIONS = {"glioma": _glioma, "meningioma": _meningioma, "pituitary": _pituitary, RARE_CLASS: _metastasis}
