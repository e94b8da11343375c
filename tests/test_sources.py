"""Each source, and every kind of bad input, gives data or a clear error naming the file."""

import io
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthaug.config import DataConfig
from synthaug.data.load import scan_source
from synthaug.data.prepare import prepare_data
from synthaug.data.sources import SourceError, list_source

from .conftest import random_images, save_png


def _cfg(source: Path | str, **kw) -> DataConfig:
    return DataConfig(source=str(source), size=32, **kw)


def test_split_folder_with_masks(phantom_folder: Path) -> None:
    src = list_source(phantom_folder)
    assert src.class_names == ("glioma", "meningioma", "notumor", "pituitary") and src.has_test_split
    assert len(src.items) == 60 and all(it.mask_path is not None for it in src.items)
    data = prepare_data(_cfg(phantom_folder))
    assert len(data.train) + len(data.test) == 60 and data.train.masks is not None


def test_flat_folder_is_split_stratified_by_the_library(tmp_path: Path) -> None:
    imgs = random_images(40, 32, seed=0)
    for i, im in enumerate(imgs):
        save_png(tmp_path / ("a" if i < 20 else "b") / f"{i}.png", im)
    data = prepare_data(_cfg(tmp_path, test_fraction=0.25))
    assert data.test.class_counts().tolist() == [5, 5] and data.train.class_counts().tolist() == [15, 15]


def _parquet(path: Path, images: np.ndarray, labels: list, names: list[str] | None = None) -> Path:
    blobs = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        blobs.append({"bytes": buf.getvalue(), "path": None})
    table = pa.table({"image": blobs, "label": labels})
    if names:
        meta = {"info": {"features": {"label": {"names": names, "_type": "ClassLabel"}}}}
        table = table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()})
    pq.write_table(table, path)
    return path


def test_parquet_hf_layout_reads_label_names(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    imgs = random_images(12, 32, seed=1)
    names = ["Mild", "Moderate", "Non", "VeryMild"]
    _parquet(tmp_path / "data" / "train-0.parquet", imgs[:8], [0, 1, 2, 3] * 2, names)
    _parquet(tmp_path / "data" / "test-0.parquet", imgs[8:], [0, 1, 2, 3], names)
    src = list_source(tmp_path)
    assert src.class_names == tuple(names) and src.has_test_split
    data = prepare_data(_cfg(tmp_path))
    assert len(data.train) == 8 and len(data.test) == 4


def test_parquet_errors_name_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"pixels": [b"x"], "y": [0]}), path)
    with pytest.raises(SourceError, match=r"x.parquet.*no image column.*found pixels, y"):
        list_source(path)
    _parquet(path, random_images(2, 16, 0), [0, 5])
    with pytest.raises(SourceError, match=r"label 5 .*out of range.*2 class names"):
        list_source(path, ["a", "b"])
    _parquet(path, random_images(2, 16, 0), [0, -1])
    with pytest.raises(SourceError, match=r"row 1: label -1"):
        list_source(path)


def test_missing_empty_and_classless_inputs(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        list_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="is empty"):
        list_source(tmp_path / "empty")
    save_png(tmp_path / "ds" / "a" / "1.png", random_images(1, 16, 0)[0])
    (tmp_path / "ds" / "b").mkdir()
    (tmp_path / "ds" / "b" / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match=r"class folder '.*ds/b' contains no image files"):
        list_source(tmp_path / "ds")
    (tmp_path / "notparquet.csv").write_text("a,b")
    with pytest.raises(SourceError, match=r"not a \.parquet file"):
        list_source(tmp_path / "notparquet.csv")


def test_unreadable_and_non_image_files_are_skipped_with_a_list(tmp_path: Path, caplog) -> None:
    imgs = random_images(8, 32, seed=2)
    for i, im in enumerate(imgs):
        save_png(tmp_path / "Training" / ("a" if i % 2 else "b") / f"{i}.png", im)
    good = (tmp_path / "Training" / "a" / "1.png").read_bytes()
    (tmp_path / "Training" / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "Training" / "a" / "fake.jpg").write_text("not really a jpeg")
    (tmp_path / "Training" / "b" / "README.md").write_text("notes")
    with caplog.at_level(logging.WARNING):
        data = prepare_data(_cfg(tmp_path))
    unreadable = {u["id"] for u in data.audit["unreadable"]}
    assert unreadable == {"Training/a/truncated.png", "Training/a/fake.jpg"}
    assert [s["path"].endswith("README.md") for s in data.audit["skipped_files"]] == [True]
    assert "truncated.png" in caplog.text and "unreadable" in caplog.text
    assert len(data.train) + len(data.test) == 8


def test_mixed_modes_bit_depths_and_sizes(tmp_path: Path, caplog) -> None:
    base = random_images(1, 64, seed=3)[0]
    save_png(tmp_path / "a" / "gray.png", base)
    save_png(tmp_path / "a" / "rgb.png", np.stack([base] * 3, -1))
    deep = (base.astype(np.uint16) * 3 + 100).astype(np.uint16)  # 16-bit scanner units
    Image.fromarray(deep).save(tmp_path / "a" / "deep.png")
    save_png(tmp_path / "b" / "huge.png", np.asarray(Image.fromarray(base).resize((640, 300))))
    save_png(tmp_path / "b" / "tiny.png", np.asarray(Image.fromarray(base).resize((20, 20))))
    with caplog.at_level(logging.WARNING):
        scan = scan_source(list_source(tmp_path), 32)
        prepare_data(_cfg(tmp_path, test_fraction=0.5))
    assert scan.pixels.shape == (5, 32, 32) and scan.ok.all()
    assert set(scan.modes) >= {"L", "RGB"} and any(m.startswith("I") for m in scan.modes)
    deep_row = list(scan.ids).index("a/deep.png")
    assert scan.pixels[deep_row].max() >= 250  # min-max scaled into 8 bits (then resized)
    assert "several modes" in caplog.text and "differ widely" in caplog.text


def test_second_scan_reads_the_cache(phantom_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = list_source(phantom_folder)
    first = scan_source(src, 32)

    def boom(*_a, **_k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr("synthaug.data.load._scan_one", boom)
    second = scan_source(src, 32)
    assert np.array_equal(first.pixels, second.pixels) and list(first.ids) == list(second.ids)
