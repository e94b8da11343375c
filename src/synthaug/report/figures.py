"""Report figures: matplotlib (Agg) rendered to PNG data URIs, so the HTML stays one file."""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def png_to_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_grid(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...] | list[str], per_class: int = 8
) -> bytes:
    """PNG bytes of a grid: one row per class, ``per_class`` images (N, H, W) uint8 each, 1 px gutters."""
    size = images.shape[-1]
    rows = []
    for c in range(len(class_names)):
        idx = np.flatnonzero(labels == c)[:per_class]
        row = np.full((size, per_class * (size + 1)), 255, np.uint8)
        for k, i in enumerate(idx):
            row[:, k * (size + 1) : k * (size + 1) + size] = images[i]
        rows.append(np.vstack([row, np.full((1, row.shape[1]), 255, np.uint8)]))
    buf = io.BytesIO()
    Image.fromarray(np.vstack(rows)).save(buf, format="PNG")
    return buf.getvalue()


def class_counts_figure(counts: dict[str, dict[str, int]]) -> str:
    """Grouped bars: images per class for each split."""
    splits = list(counts)
    classes = list(next(iter(counts.values())))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(classes), 2.8))
    width = 0.8 / max(1, len(splits))
    for k, split in enumerate(splits):
        x = np.arange(len(classes)) + k * width
        ax.bar(x, [counts[split][c] for c in classes], width, label=split)
    ax.set_xticks(np.arange(len(classes)) + width * (len(splits) - 1) / 2, classes, rotation=20)
    ax.set_ylabel("images")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return to_data_uri(fig)


def labelled_grid(png: bytes, class_names: tuple[str, ...] | list[str], min_px: int = 64) -> bytes:
    """A grid of :func:`image_grid` enlarged (nearest neighbour) to at least ``min_px`` per image,
    with each row's class name on its left."""
    grid = Image.open(io.BytesIO(png)).convert("L")
    cell = grid.height // max(1, len(class_names))  # image size + 1 px gutter
    factor = max(1, math.ceil(min_px / max(1, cell - 1)))
    grid = grid.resize((grid.width * factor, grid.height * factor), Image.Resampling.NEAREST)
    font = ImageFont.load_default(size=14)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    label_w = 12 + max((int(probe.textlength(str(c), font=font)) for c in class_names), default=0)
    canvas = Image.new("L", (label_w + grid.width, grid.height), 255)
    canvas.paste(grid, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(class_names):
        draw.text((4, (i + 0.5) * cell * factor), str(name), fill=0, font=font, anchor="lm")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
