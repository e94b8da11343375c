"""Decode, inspect and preprocess a source in one pass, cached per source and size.

One worker call per image yields what the audit needs (mode, size, read error, exact pixel
hash, perceptual hash) and what training needs (the one-channel ``size``×``size`` uint8
image). The result is cached as a ``.npz`` keyed by the source listing and the preprocessing
settings, so a second run neither decodes JPEGs again nor re-hashes them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from synthaug.data.imageset import ImageSet
from synthaug.data.sources import RawItem, RawSource
from synthaug.io import atomic_path

log = logging.getLogger(__name__)
CACHE_VERSION = "1"
HIGH_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class Scan:
    """Per-image facts from one decoding pass. Rows align with the source listing."""

    ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64
    splits: np.ndarray  # (N,) str: train / test / "" when the source has no split
    modes: np.ndarray  # (N,) str, PIL mode before conversion ("" when unreadable)
    widths: np.ndarray  # (N,) int
    heights: np.ndarray  # (N,) int
    errors: np.ndarray  # (N,) str, "" when readable
    exact: np.ndarray  # (N,) str, sha1 of the grayscale pixels at native size
    phash: np.ndarray  # (N,) uint64, 64-bit DCT perceptual hash
    pixels: np.ndarray  # (N, S, S) uint8, preprocessed (zeros when unreadable)
    masks: np.ndarray | None  # (N, S, S) bool or None
    class_names: tuple[str, ...]

    @property
    def ok(self) -> np.ndarray:
        return self.errors == ""


def to_gray(im: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W) uint8. 16-bit / float images are min-max scaled per image.

    8-bit images keep their intensities (they are already windowed for display); deeper
    images carry scanner units whose range differs per file, so they are scaled to 0..255.
    """
    if im.mode in HIGH_BIT_MODES:
        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        # Transparent pixels become black rather than whatever colour they hid.
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    return np.asarray(im.convert("L"), dtype=np.uint8)


def to_square(gray: np.ndarray, size: int, resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """Zero-pad to a centred square (keeps the aspect ratio), then resize to ``size``×``size``."""
    h, w = gray.shape
    side = max(h, w)
    if h != w:
        canvas = np.zeros((side, side), gray.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top : top + h, left : left + w] = gray
        gray = canvas
    if side == size:
        return gray
    return np.asarray(Image.fromarray(gray).resize((size, size), resample), dtype=np.uint8)


def phash_int(gray: np.ndarray) -> int:
    bits = imagehash.phash(Image.fromarray(gray)).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def _scan_one(args: tuple[RawItem, int]) -> tuple[str, int, int, str, str, int, np.ndarray, np.ndarray | None]:
    item, size = args
    mask = None
    try:
        im = item.open()
        mode, (w, h) = im.mode, im.size
        gray = to_gray(im)
        if item.mask_path is not None:
            try:
                with Image.open(item.mask_path) as m:
                    mask = to_square(np.asarray(m.convert("L")), size, Image.Resampling.NEAREST) > 127
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                raise ValueError(f"its lesion mask {item.mask_path} is unreadable ({reason})") from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return "", 0, 0, f"{type(exc).__name__}: {exc}", "", 0, np.zeros((size, size), np.uint8), None
    exact = hashlib.sha1(np.ascontiguousarray(gray).tobytes() + str(gray.shape).encode()).hexdigest()
    return mode, w, h, "", exact, phash_int(gray), to_square(gray, size), mask


def _cache_key(source: RawSource, size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{source.description}|{source.class_names}".encode())
    for it in source.items:
        h.update(f"{it.id}|{it.label}|{it.split}".encode())
        if it.path is not None:
            st = it.path.stat()
            h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
        if it.data is not None:
            h.update(hashlib.sha1(it.data).digest())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    return Path(os.environ.get("SYNTHAUG_CACHE", Path.home() / ".cache" / "synthaug"))


def scan_source(source: RawSource, size: int, cache_dir: Path | None = None, workers: int | None = None) -> Scan:
    """Decode every item once (in parallel), or read the cached result of an identical earlier scan."""
    cache_dir = cache_dir or default_cache_dir()
    cache = cache_dir / f"scan-{_cache_key(source, size)}.npz"
    if cache.exists():
        log.info("reading cached scan %s", cache)
        return _load_scan(cache, source.class_names)
    n = len(source.items)
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(it, size) for it in source.items]
    if workers > 1 and n > 200:
        with ProcessPoolExecutor(workers) as pool:
            results = list(
                tqdm(pool.map(_scan_one, jobs, chunksize=64), total=n, desc="decode", unit="img", disable=None)
            )
    else:
        results = [_scan_one(j) for j in tqdm(jobs, desc="decode", unit="img", disable=None)]
    has_masks = any(r[7] is not None for r in results)
    scan = Scan(
        ids=np.array([it.id for it in source.items], dtype=object),
        labels=np.array([it.label for it in source.items], dtype=np.int64),
        splits=np.array([it.split or "" for it in source.items], dtype=object),
        modes=np.array([r[0] for r in results], dtype=object),
        widths=np.array([r[1] for r in results], dtype=np.int64),
        heights=np.array([r[2] for r in results], dtype=np.int64),
        errors=np.array([r[3] for r in results], dtype=object),
        exact=np.array([r[4] for r in results], dtype=object),
        phash=np.array([r[5] for r in results], dtype=np.uint64),
        pixels=np.stack([r[6] for r in results]) if results else np.zeros((0, size, size), np.uint8),
        masks=np.stack([r[7] if r[7] is not None else np.zeros((size, size), bool) for r in results])
        if has_masks
        else None,
        class_names=source.class_names,
    )
    _save_scan(cache, scan)
    return scan


def scan_imageset(data: ImageSet) -> Scan:
    """The same facts for data that exists only in memory (phantoms): nothing to decode."""
    exact = np.array(
        [hashlib.sha1(im.tobytes() + str(im.shape).encode()).hexdigest() for im in data.images], dtype=object
    )
    n = len(data)
    return Scan(
        ids=data.ids,
        labels=data.labels,
        splits=data.splits,
        modes=np.full(n, "L", dtype=object),
        widths=np.full(n, data.size),
        heights=np.full(n, data.size),
        errors=np.full(n, "", dtype=object),
        exact=exact,
        phash=np.array([phash_int(im) for im in data.images], dtype=np.uint64),
        pixels=data.images,
        masks=data.masks,
        class_names=data.class_names,
    )


_FIELDS = ("ids", "labels", "splits", "modes", "widths", "heights", "errors", "exact", "phash", "pixels")


def _save_scan(path: Path, scan: Scan) -> None:
    arrays = {k: getattr(scan, k) for k in _FIELDS}
    arrays = {k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()}
    if scan.masks is not None:
        arrays["masks"] = scan.masks
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
    except OSError as exc:  # a read-only cache folder must not stop the study
        log.warning("could not write scan cache %s (%s); continuing without it", path, exc)


def _load_scan(path: Path, class_names: tuple[str, ...]) -> Scan:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    fields = {k: arrays[k].astype(object) if arrays[k].dtype.kind == "U" else arrays[k] for k in _FIELDS}
    return Scan(**fields, masks=arrays.get("masks"), class_names=class_names)


def scan_to_imageset(scan: Scan, keep: np.ndarray | None = None, groups: np.ndarray | None = None) -> ImageSet:
    """Readable images (and optionally only rows in ``keep``) as an :class:`ImageSet`; ``groups``: unit per row."""
    mask = scan.ok if keep is None else scan.ok & keep
    idx = np.flatnonzero(mask)
    splits = np.where(scan.splits[idx] == "", "train", scan.splits[idx]).astype(object)
    return ImageSet(
        images=scan.pixels[idx],
        labels=scan.labels[idx],
        ids=scan.ids[idx],
        class_names=scan.class_names,
        splits=splits,
        masks=None if scan.masks is None else scan.masks[idx],
        groups=None if groups is None else groups[idx],
    )
