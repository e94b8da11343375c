"""Where labelled images come from: image folders, parquet files, Hugging Face datasets, phantoms.

A source is listed into :class:`RawItem` records (id, label, split, how to read the bytes);
decoding and preprocessing happen later, in :mod:`synthaug.data.load`, in one pass that also
feeds the audit. Listing never decodes, so it is cheap and its errors are about layout.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"})
TRAIN_DIRS = ("training", "train")
TEST_DIRS = ("testing", "test")
IMAGE_COLUMNS = ("image", "img", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "class", "target")


class SourceError(ValueError):
    """A data source that cannot be used as given; the message names the path and the fix."""


@dataclass(frozen=True)
class RawItem:
    """One labelled image before decoding. ``path`` for files, ``data`` for bytes from parquet."""

    id: str
    label: int
    split: str | None  # "train" / "test" / None when the source has no split
    path: Path | None = None
    data: bytes | None = None
    mask_path: Path | None = None
    group: str | None = None  # patient / group id from the source (data.groups.column)

    def open(self) -> Image.Image:
        """Open (and fully load) the image; raises OSError / ValueError for unreadable data."""
        src = io.BytesIO(self.data) if self.data is not None else self.path
        with Image.open(src) as im:  # type: ignore[arg-type]
            im.load()
            return im.copy()


@dataclass(frozen=True)
class RawSource:
    items: list[RawItem]
    class_names: tuple[str, ...]
    description: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) for non-image files

    @property
    def has_test_split(self) -> bool:
        return any(it.split == "test" for it in self.items)


def list_source(spec: str | Path, class_names: list[str] | None = None, group_column: str | None = None) -> RawSource:
    """List a folder, a parquet file / folder of parquet files, or ``hf:<dataset id>``."""
    text = str(spec)
    if text.startswith("hf:"):
        if group_column:
            raise SourceError("data.groups.column is read from parquet files; for hf: sources use data.groups.csv")
        return list_hf(text[3:], class_names)
    path = Path(text).expanduser()
    if not path.exists():
        raise SourceError(
            f"data path '{path}' does not exist. Pass an image folder (<class>/*.png or Training/<class>/...), "
            "a parquet file, 'hf:<dataset id>', or 'phantom' for the built-in data."
        )
    if path.is_file():
        if path.suffix.lower() != ".parquet":
            raise SourceError(
                f"data file '{path}' is not a .parquet file; pass a folder of class folders or a parquet file"
            )
        return list_parquet([path], class_names, group_column)
    parquets = sorted(path.rglob("*.parquet"))
    if parquets and not _has_image_files(path):
        return list_parquet(parquets, class_names, group_column)
    if group_column:
        raise SourceError(
            f"data.groups.column {group_column!r} needs a parquet source; '{path}' is an image folder: "
            "use data.groups.regex (a pattern over the file paths) or data.groups.csv instead"
        )
    return list_folder(path)


def _has_image_files(root: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTS for p in root.rglob("*") if p.is_file())


def _split_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        low = child.name.lower()
        if low in TRAIN_DIRS:
            found.setdefault("train", child)
        elif low in TEST_DIRS:
            found.setdefault("test", child)
    return found


def list_folder(root: Path) -> RawSource:
    """``root/Training|Train|train/<class>/*`` (+ ``Testing|Test|test``) or flat ``root/<class>/*``."""
    if not any(root.iterdir()):
        raise SourceError(f"data folder '{root}' is empty; it should hold one folder of images per class")
    splits = _split_dirs(root)
    if splits and "train" not in splits:
        raise SourceError(f"'{root}' has a test folder ({splits['test'].name}) but no Training/Train/train folder")
    roots: dict[str | None, Path] = {k: v for k, v in splits.items()} if splits else {None: root}
    class_dirs: dict[str | None, list[Path]] = {}
    for split, split_root in roots.items():
        dirs = sorted(p for p in split_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if split_root == root:
            dirs = [d for d in dirs if d.name != "masks"]
        if not dirs:
            raise SourceError(f"'{split_root}' has no class folders; expected {split_root}/<class name>/<image files>")
        class_dirs[split] = dirs
    names = tuple(sorted({d.name for dirs in class_dirs.values() for d in dirs}))
    items: list[RawItem] = []
    skipped: list[tuple[str, str]] = []
    for split, dirs in class_dirs.items():
        for d in dirs:
            files = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
            images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
            skipped += [(str(p), "not an image file (extension)") for p in files if p.suffix.lower() not in IMAGE_EXTS]
            if not images:
                raise SourceError(
                    f"class folder '{d}' contains no image files ({', '.join(sorted(IMAGE_EXTS))}); "
                    "add images or remove the folder"
                )
            for p in images:
                rel = p.relative_to(root)
                mask = root / "masks" / rel.with_suffix(".png")
                items.append(
                    RawItem(
                        rel.as_posix(), names.index(d.name), split, path=p, mask_path=mask if mask.exists() else None
                    )
                )
    if skipped:
        log.warning("skipped %d non-image files, e.g. %s", len(skipped), skipped[0][0])
    return RawSource(items, names, f"image folder {root}", skipped)


def _find_column(columns: list[str], candidates: tuple[str, ...], what: str, path: Path) -> str:
    for c in candidates:
        if c in columns:
            return c
    raise SourceError(
        f"parquet file '{path}' has no {what} column (looked for {', '.join(candidates)}; "
        f"found {', '.join(columns)}). Expected the Hugging Face layout: an 'image' column "
        "({'bytes': ...} or raw bytes) and an integer 'label' column."
    )


def _hf_label_names(schema_metadata: dict[bytes, bytes] | None, label_col: str) -> list[str] | None:
    """Class names stored by Hugging Face ``datasets`` in the parquet schema metadata (ClassLabel)."""
    if not schema_metadata or b"huggingface" not in schema_metadata:
        return None
    try:
        info = json.loads(schema_metadata[b"huggingface"])
        feature = info["info"]["features"][label_col]
        return list(feature["names"]) if "names" in feature else None
    except (KeyError, TypeError, ValueError):
        return None


def _split_from_name(path: Path) -> str | None:
    low = path.stem.lower()
    return "test" if "test" in low else "train" if "train" in low else None


def list_parquet(paths: list[Path], class_names: list[str] | None = None, group_column: str | None = None) -> RawSource:
    """Parquet file(s) with image bytes and an integer label (the Alzheimer MRI layout)."""
    import pyarrow.parquet as pq

    items: list[RawItem] = []
    names: list[str] | None = list(class_names) if class_names else None
    for path in paths:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise SourceError(f"cannot read parquet file '{path}': {exc}") from exc
        cols = table.column_names
        img_col = _find_column(cols, IMAGE_COLUMNS, "image", path)
        lab_col = _find_column(cols, LABEL_COLUMNS, "label", path)
        names = names or _hf_label_names(table.schema.metadata, lab_col)
        split = _split_from_name(path)
        images, labels = table.column(img_col).to_pylist(), table.column(lab_col).to_pylist()
        if group_column is not None and group_column not in cols:
            raise SourceError(f"parquet file '{path}' has no column {group_column!r} (data.groups.column): {cols}")
        groups = table.column(group_column).to_pylist() if group_column else [None] * len(images)
        for row, (img, lab, grp) in enumerate(zip(images, labels, groups, strict=True)):
            data = img.get("bytes") if isinstance(img, dict) else img
            if not isinstance(data, (bytes, bytearray)):
                raise SourceError(f"parquet file '{path}' row {row}: column '{img_col}' holds no image bytes")
            if not isinstance(lab, int) or isinstance(lab, bool) or lab < 0:
                raise SourceError(f"parquet file '{path}' row {row}: label {lab!r} is not a non-negative integer")
            group = None if grp is None or (isinstance(grp, float) and grp != grp) or str(grp) == "" else str(grp)
            items.append(RawItem(f"{path.name}#{row}", lab, split, data=bytes(data), group=group))
    if not items:
        raise SourceError(f"parquet input {[str(p) for p in paths]} holds no rows")
    n_labels = max(it.label for it in items) + 1
    if names is None:
        names = [f"class_{i}" for i in range(n_labels)]
    elif n_labels > len(names):
        bad = next(it for it in items if it.label >= len(names))
        raise SourceError(
            f"label {bad.label} in '{bad.id}' is out of range for the {len(names)} class names {names}; "
            "fix the labels or pass the full list in data.class_names"
        )
    return RawSource(items, tuple(names), f"parquet {', '.join(str(p) for p in paths)}")


def list_hf(dataset_id: str, class_names: list[str] | None = None) -> RawSource:  # pragma: no cover - needs internet
    """A Hugging Face dataset id (e.g. ``Falah/Alzheimer_MRI``), read through ``datasets``.

    Images are kept as encoded bytes (``decode=False``) so they flow through the same decoding
    and audit as parquet files.
    """
    try:
        import datasets
    except ImportError as exc:
        raise SourceError("reading 'hf:' sources needs the optional extra: pip install 'synthaug[hf]'") from exc
    dsd = datasets.load_dataset(dataset_id)
    items: list[RawItem] = []
    names = list(class_names) if class_names else None
    for split_name, ds in dsd.items():
        img_col = _find_column(ds.column_names, IMAGE_COLUMNS, "image", Path(dataset_id))
        lab_col = _find_column(ds.column_names, LABEL_COLUMNS, "label", Path(dataset_id))
        feat = ds.features[lab_col]
        names = names or list(getattr(feat, "names", []) or []) or None
        ds = ds.cast_column(img_col, datasets.Image(decode=False))
        split = "test" if "test" in split_name.lower() else "train"
        for row, ex in enumerate(ds):
            items.append(RawItem(f"{split_name}#{row}", int(ex[lab_col]), split, data=ex[img_col]["bytes"]))
    n_labels = max(it.label for it in items) + 1
    names = names or [f"class_{i}" for i in range(n_labels)]
    return RawSource(items, tuple(names), f"Hugging Face dataset {dataset_id}")
