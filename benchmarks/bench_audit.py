"""Audit wall time on the Brain Tumor MRI dataset vs a plain sequential decode of the same files.

    python benchmarks/bench_audit.py [--data ../shared/data/brain-tumor-mri]

The reference (PIL open + load of every file, one process) is measured in the same run; the
audit does that and more (grayscale, resize, two hashes, all-pairs duplicate search).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from synthaug.config import DataConfig
from synthaug.data.prepare import prepare_data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).parents[1] / ".." / "shared" / "data" / "brain-tumor-mri"))
    args = ap.parse_args()
    root = Path(args.data)
    if not root.exists():
        sys.exit(f"skipped: {root} not found (the benchmark needs the Brain Tumor MRI dataset)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    t = time.perf_counter()
    for p in files:
        with Image.open(p) as im:
            im.load()
    ref = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        report = prepare_data(DataConfig(source=str(root), size=64, cache_dir=cache)).audit
        cold = time.perf_counter() - t
        t = time.perf_counter()
        prepare_data(DataConfig(source=str(root), size=64, cache_dir=cache))
        warm = time.perf_counter() - t
    print(f"{len(files)} files, {os.cpu_count()} CPUs")
    print(f"plain sequential decode (reference): {ref:.1f} s")
    print(f"audit, cold cache: {cold:.1f} s ({cold / ref:.2f}x reference); warm cache: {warm:.1f} s")
    ex, near = report["exact_duplicates"], report["near_duplicates"]
    print(f"exact groups {ex['groups']} ({ex['images']} images, {ex['cross_split_groups']} cross train/test)")
    print(f"near groups {near['groups']} ({near['images']} images, {near['cross_split_groups']} cross train/test)")
    print(f"test images removed by the leakage filter: {report['leakage_filter']['removed_test_images']}")


if __name__ == "__main__":
    main()
