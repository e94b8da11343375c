"""Bring your own synthetic images: a ``folder`` generator takes them from ``DIR/<class>/*`` (any
image format the data layer reads) instead of drawing them, so images made elsewhere (an API,
medigan, MONAI's models, another lab's generator) go through the same banks, quality and
memorization checks, policies and statistics as every trained generator.

Nothing is trained. The "fit" indexes the folder and records a fingerprint of its content in the
checkpoint, so a folder that changes under a study is noticed instead of silently giving another
bank. A bank takes image k of class c at position k of a seeded permutation of that class's files
(without replacement); asking for more images than a class has, a class folder that is missing,
or an unreadable file stops with the folder, the class and the counts named, never with fewer
images than requested. Images of another size are converted to one channel and resized to the
dataset's size as real images are.

``DIR/manifest.csv`` (columns ``path``: the image, relative to DIR; ``source``: the real image it
was made from, as the dataset's id such as ``Training/glioma/x.jpg`` or just its file name) makes
the folder serve the ``variation`` policy: variation r of a source of the cell's training images
is the r-th of that source's images (seeded order); images made from images that are not in the
cell's training images are not used (logged); a source with too few images stops the bank.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from synthaug.config.external import FolderConfig
from synthaug.config.generators import GeneratorConfig
from synthaug.data.imageset import ImageSet
from synthaug.data.load import to_gray, to_square
from synthaug.data.sources import IMAGE_EXTS
from synthaug.generators.base import Generator, GeneratorT, RngLike, SampleOptions, derive_seed, start_fit
from synthaug.generators.training import Trainer
from synthaug.rundir import GENERATOR

log = logging.getLogger(__name__)
INDEX = "index"
MANIFEST_CSV = "manifest.csv"


class FolderIndex(nn.Module):
    """The folder's content fingerprint (16 bytes), stored with the checkpoint like a network's weights."""

    fingerprint: Tensor

    def __init__(self, fingerprint: bytes = bytes(16)):
        super().__init__()
        self.register_buffer("fingerprint", torch.tensor(list(fingerprint[:16].ljust(16, b"\0")), dtype=torch.uint8))


def scan_folder(root: Path, class_names: Sequence[str]) -> dict[str, list[Path]]:
    """Image files per class name, sorted; a class without a folder or images gets an empty list."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"folder generator: '{root}' is not a folder (folder.path); it must hold one sub-folder per class "
            f"({', '.join(class_names)})"
        )
    files: dict[str, list[Path]] = {}
    for name in class_names:
        d = root / name
        found = d.iterdir() if d.is_dir() else iter(())
        files[name] = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    unknown = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in class_names)
    if unknown:
        log.warning("folder generator: %s has sub-folders that are not classes of the data, ignored: %s", root, unknown)
    return files


def content_fingerprint(files: dict[str, list[Path]], root: Path | None = None) -> bytes:
    h = hashlib.sha256()
    if root is not None and (root / MANIFEST_CSV).exists():
        h.update((root / MANIFEST_CSV).read_bytes())
    for name in sorted(files):
        for p in files[name]:
            h.update(f"{name}/{p.name}\0".encode())
            h.update(p.read_bytes())
    return h.digest()[:16]


def read_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return to_square(to_gray(im), size)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ValueError(f"folder generator: cannot read '{path}' ({exc}); remove or replace the file") from exc


def read_manifest(root: Path, files: dict[str, list[Path]]) -> dict[Path, str]:
    """Image -> the real image it was made from, from ``root/manifest.csv`` ({} without one)."""
    path = root / MANIFEST_CSV
    if not path.exists():
        return {}
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"folder generator: cannot read {path} ({exc})") from exc
    if missing := [c for c in ("path", "source") if c not in table.columns]:
        raise ValueError(f"folder generator: {path} lacks column(s) {missing}; it needs path and source")
    known = {p.resolve(): p for ps in files.values() for p in ps}
    made_from: dict[Path, str] = {}
    for i, (rel, src) in enumerate(zip(table["path"], table["source"], strict=True), start=2):
        image = known.get((root / rel).resolve())
        if image is None:
            raise ValueError(
                f"folder generator: {path} line {i} names '{rel}', which is not an image in a class folder of {root}"
            )
        if src.strip():
            made_from[image] = src.strip()
    return made_from


def _unique_names(ids: set[str]) -> dict[str, str]:
    """File name -> id, for the file names that only one id has (a manifest may name sources by file name)."""
    count: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        count[Path(i).name].append(i)
    return {n: v[0] for n, v in count.items() if len(v) == 1}


class FolderGenerator(Generator):
    cfg: FolderConfig

    def __init__(self, cfg: GeneratorConfig, class_names: Sequence[str], data_size: int, nets: dict[str, nn.Module]):
        super().__init__(cfg, class_names, data_size, nets)
        self.root = Path(self.cfg.folder.path)
        self.files = scan_folder(self.root, self.class_names)
        self.made_from = read_manifest(self.root, self.files)
        self._sources: dict[tuple[int, int], dict[str, list[Path]]] = {}
        index = nets.get(INDEX)
        if isinstance(index, FolderIndex):
            recorded = bytes(index.fingerprint.tolist())
            if recorded != bytes(16) and recorded != content_fingerprint(self.files, self.root):
                raise ValueError(
                    f"the images in '{self.root}' changed since this study indexed them; a bank from them would "
                    "not be the one the study measured. Restore the folder, or use a new run directory"
                )

    @classmethod
    def build_net(cls, cfg: GeneratorConfig, num_classes: int | None) -> nn.Module:
        return FolderIndex()

    @classmethod
    def make_trainer(cls, cfg: GeneratorConfig, num_classes: int | None, device: torch.device) -> Trainer:
        raise NotImplementedError("a folder generator has nothing to train")

    def generate(self, net: nn.Module, labels: Tensor | None, n: int, rng: Any, opts: SampleOptions) -> Tensor:
        raise NotImplementedError("a folder generator takes images (take()), it does not draw them")

    def take(self, class_id: int, ks: Sequence[int] | np.ndarray, seed: int) -> np.ndarray:
        """Images k of class ``class_id`` (uint8, data size): position k of a seeded permutation of its files."""
        name = self.class_names[class_id]
        files = self.files[name]
        ks = np.asarray(ks, dtype=np.int64)
        need = int(ks.max()) + 1 if len(ks) else 0
        if need > len(files):
            where = self.root / name
            have = f"has {len(files)} images" if files else "has no images (missing or empty folder)"
            raise ValueError(
                f"folder generator: class '{name}' ({where}) {have}, but the policies ask for {need}: add images "
                "there or ask for fewer (per_class / y of the policies that use it)"
            )
        order = np.random.default_rng(derive_seed(seed, class_id)).permutation(len(files))
        return np.stack([read_image(files[order[k]], self.data_size) for k in ks])

    def uses_strength(self) -> bool:
        return False

    def take_variations(
        self, class_id: int, source_ids: Sequence[str], rounds: np.ndarray, seed: int, cell_ids: Sequence[str]
    ) -> np.ndarray:
        """Variation ``rounds[i]`` of real image ``source_ids[i]`` (class ``class_id``) from the manifest;
        ``cell_ids`` are all of the cell's training images of the class (the sources it may use)."""
        name = self.class_names[class_id]
        by_source = self._by_source(class_id, cell_ids)
        out = []
        for sid, r in zip(source_ids, np.asarray(rounds), strict=True):
            files = by_source.get(sid, [])
            if r >= len(files):
                raise ValueError(
                    f"folder generator: the variation policy needs {r + 1} image(s) made from '{sid}' "
                    f"(class '{name}'), {self.root / MANIFEST_CSV} lists {len(files)}; add them or lower the policy's y"
                )
            order = np.random.default_rng(derive_seed(seed, class_id, int(r))).permutation(len(files))
            out.append(read_image(files[order[r]], self.data_size))
        return np.stack(out)

    def _by_source(self, class_id: int, cell_ids: Sequence[str]) -> dict[str, list[Path]]:
        """The class's images per source among ``cell_ids`` (matched by id, or by a unique file name)."""
        key = (class_id, hash(tuple(sorted(cell_ids))))
        if key in self._sources:
            return self._sources[key]
        name = self.class_names[class_id]
        if not self.made_from:
            raise ValueError(
                f"folder generator: {self.root} has no {MANIFEST_CSV} naming the real image each synthetic image was "
                "made from (columns path, source), so it cannot serve the variation policy"
            )
        ids, names = set(cell_ids), _unique_names(set(cell_ids))
        by_source: dict[str, list[Path]] = defaultdict(list)
        unused = 0
        for p in self.files[name]:
            src = self.made_from.get(p)
            found = src if src in ids else names.get(Path(src).name) if src else None
            if found is None:
                unused += src is not None
            else:
                by_source[found].append(p)
        if unused:
            log.info(
                "folder generator: %d '%s' images were made from real images that are not among this cell's training "
                "images; not used",
                unused,
                name,
            )
        self._sources[key] = dict(by_source)
        return self._sources[key]

    @torch.no_grad()
    def sample(
        self,
        class_id: int,
        n: int,
        rng: RngLike,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> np.ndarray:
        seed = rng if isinstance(rng, int) else 0
        return self.take(class_id, np.arange(n), seed)

    @classmethod
    def fit(
        cls: type[GeneratorT],
        train_data: ImageSet,
        cfg: GeneratorConfig,
        run_dir: str | Path,
        seed: int = 0,
        resume: bool = False,
        unlabelled: ImageSet | None = None,
        start: Generator | None = None,
    ) -> GeneratorT:
        """Index the folder (nothing is trained): record its images per class and a content fingerprint."""
        assert isinstance(cfg, FolderConfig)
        files = scan_folder(Path(cfg.folder.path), train_data.class_names)
        counts = {name: len(f) for name, f in files.items()}
        cfg = start_fit(train_data, cfg, run_dir, seed, images_per_class=counts)
        run_dir = Path(run_dir)
        if empty := [n for n, k in counts.items() if k == 0]:
            log.warning("folder generator: no images for class(es) %s in %s", empty, cfg.folder.path)
        index = FolderIndex(content_fingerprint(files, Path(cfg.folder.path)))
        gen = cls(cfg, train_data.class_names, train_data.size, {INDEX: index})
        gen.save(run_dir / GENERATOR)
        log.info("folder generator: %s indexed, images per class %s", cfg.folder.path, counts)
        return gen
