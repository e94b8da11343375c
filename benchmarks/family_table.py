"""The generator families side by side: one row per synthetic bank of a run, per cell (real fraction,
seed) — training and sampling cost from ``RUN/executor/tasks.jsonl`` (core-minutes = task seconds x
torch threads) next to the quality stage's figures from ``RUN/quality.json`` (the cell's judge
features): FID vs the real test images with the real-vs-real yardstick, FID vs the real training
images, precision / recall vs test, within-class MS-SSIM against the real images', TSTR accuracy
against TRTR, and the memorization flags.

    python benchmarks/family_table.py runs/bt-families [--threads 1] [--grid docs/img/families.png --cell f1_s0]

``configs/brain-tumor-families.yaml`` gives every family the same training core-minutes on the same
images; this prints the table docs/RESULTS.md shows for it (Markdown).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from study_stages import read_tasks  # benchmarks/study_stages.py, beside this script


def _cell(task: str) -> tuple[str, str]:
    """'ldm f0.1_s0' / 'ldm f0.1 s0' -> ('ldm', 'f0.1_s0')."""
    m = re.fullmatch(r"(.+?) (f[\d.]+)[ _](s\d+)", task)
    return (m.group(1), f"{m.group(2)}_{m.group(3)}") if m else (task, "")


def task_minutes(run: Path, kind: str, threads: int) -> dict[tuple[str, str], float]:
    """Core-minutes per (generator or bank name, cell) of one kind of task."""
    tasks = read_tasks(run, threads)
    tasks = tasks[tasks["kind"] == kind]
    return {_cell(t): float(m) for t, m in zip(tasks["task"], tasks["core_min"], strict=True)}


def rows(run: Path, threads: int) -> list[dict[str, Any]]:
    q = json.loads((run / "quality.json").read_text())
    fit, draw = task_minutes(run, "generator", threads), task_minutes(run, "bank", threads)
    out = []
    for b in q["banks"]:
        cell = q["cells"][b["cell"]]
        yard = cell["real_train_vs_real_test"]["encoder"]["overall"]
        enc = b["quality"]["encoder"]
        test, train = enc["vs_test"]["overall"], enc["vs_train"]["overall"]
        trtr = cell["judge"]["test"]["accuracy"]
        tstr = ((b.get("tstr") or {}).get("test") or {}).get("accuracy")
        out.append({
            "cell": b["cell"], "bank": b["bank"], "n_train": cell["judge"]["n_train"],
            "fit_core_min": fit.get((b["bank"], b["cell"])), "bank_core_min": draw.get((b["bank"], b["cell"])),
            "n_images": b["n_images"], "fid_test": test["fid"], "fid_yardstick": yard["fid"],
            "fid_train": train["fid"], "precision": test["precision"], "recall": test["recall"],
            "ms_ssim": test["diversity_synthetic"], "ms_ssim_real": train["diversity_real"],
            "tstr": tstr, "trtr": trtr, "flagged": b["memorization"]["flagged_share"],
            "exact_copies": b["memorization"]["exact_copies"],
        })  # fmt: skip
    return out


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


def markdown(table: list[dict[str, Any]]) -> str:
    lines = []
    for cell in sorted({r["cell"] for r in table}, key=lambda c: -float(c[1:].split("_")[0])):
        group = [r for r in table if r["cell"] == cell]
        first = group[0]
        lines += [
            f"Cell {cell}: {first['n_train']} real training images; TRTR accuracy {first['trtr']:.3f}; "
            f"real-vs-real FID yardstick {first['fid_yardstick']:.1f}; within-class MS-SSIM of the "
            f"real training images {first['ms_ssim_real']:.3f}.",
            "",
            "| bank | training core-min | bank core-min | FID vs test (× yardstick) | FID vs train | precision | "
            "recall | MS-SSIM (× real) | TSTR accuracy (× TRTR) | memorization flags |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in group:
            tstr = "–" if r["tstr"] is None else f"{r['tstr']:.3f} ({r['tstr'] / r['trtr']:.2f}×)"
            lines.append(
                f"| {r['bank']} | {_f(r['fit_core_min'], '.1f')} | {_f(r['bank_core_min'], '.1f')} | "
                f"{r['fid_test']:.1f} ({r['fid_test'] / r['fid_yardstick']:.2f}×) | {r['fid_train']:.1f} | "
                f"{r['precision']:.2f} | {r['recall']:.2f} | "
                f"{r['ms_ssim']:.3f} ({r['ms_ssim'] / r['ms_ssim_real']:.2f}×) | "
                f"{tstr} | {100 * r['flagged']:.1f}%, {r['exact_copies']} exact |"
            )
        lines.append("")
    return "\n".join(lines)


def write_grid(run: Path, cell: str, out: Path, per_class: int = 4) -> None:
    """One PNG: a panel per bank of ``cell`` (rows = classes, the first ``per_class`` images of each), the
    bank's name above it."""
    from PIL import Image, ImageDraw

    banks = sorted(p.parent for p in (run / "banks").glob(f"*/{cell}/manifest.parquet"))
    if not banks:
        raise SystemExit(f"{run}: no bank of cell {cell!r} (banks/NAME/{cell}/manifest.parquet)")
    panels = []
    for bank in banks:
        m = pd.read_parquet(bank / "manifest.parquet")
        rows = [[Image.open(bank / p).convert("L") for p in g["path"][:per_class]] for _, g in m.groupby("class_id")]
        side = rows[0][0].width
        panel = Image.new("L", (per_class * (side + 2), 14 + len(rows) * (side + 2)), 255)
        ImageDraw.Draw(panel).text((2, 1), bank.parent.name, fill=0)
        for r, images in enumerate(rows):
            for c, im in enumerate(images):
                panel.paste(im, (c * (side + 2), 14 + r * (side + 2)))
        panels.append(panel)
    grid = Image.new("L", (sum(p.width + 8 for p in panels), max(p.height for p in panels)), 255)
    x = 0
    for p in panels:
        grid.paste(p, (x, 0))
        x += p.width + 8
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of tasks logged without their count")
    ap.add_argument("--grid", type=Path, help="also write a PNG of each bank's first images per class (rows)")
    ap.add_argument("--cell", default="f1_s0", help="the cell whose banks --grid draws")
    args = ap.parse_args()
    if args.grid:
        write_grid(args.run, args.cell, args.grid)
    if not (args.run / "quality.json").exists():
        raise SystemExit(f"{args.run}: no quality.json yet; run the study's quality stage first")
    print(markdown(rows(args.run, args.threads)))


if __name__ == "__main__":
    main()
