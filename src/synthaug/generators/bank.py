"""Synthetic image bank: ``<out_dir>/<class_name>/<id>.png`` plus ``manifest.parquet`` (one row
per image) and ``bank.json`` (what made it). Batched, seeded per image, resumable.

Image k of class c is drawn with its own generator seeded from (seed, c, k), so an interrupted
bank that is resumed (with any batch size) holds the same images as one made in one go.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from synthaug.data.imageset import ImageSet
from synthaug.generators.base import Generator, derive_seed
from synthaug.generators.variation import make_variations, pick_sources
from synthaug.io import atomic_path, read_json, remove_orphans, write_json
from synthaug.rundir import MANIFEST

log = logging.getLogger(__name__)
COLUMNS = [
    "id",
    "path",
    "class_id",
    "class_name",
    "seed",
    "sampler",
    "steps",
    "guidance",
    "strength",
    "source_id",
    "checkpoint_hash",
    "family",
]
PROVENANCE = ["model", "model_revision", "pipeline", "prompt"]  # pretrained pipelines (Generator.provenance)
COLUMNS += PROVENANCE


def image_id(family: str, seed: int, class_id: int, k: int) -> str:
    return f"{family}-s{seed}-c{class_id}-{k:06d}"


def _bank_meta(
    generator: Generator, family: str, seed: int, names: Sequence[str], opts: Any, strength: float | None
) -> dict[str, Any]:
    if generator.checkpoint_hash is None:
        raise ValueError("the generator has no checkpoint hash; save() or load_generator() it before writing a bank")
    return {
        "family": family,
        "seed": seed,
        "sampler": opts.sampler,
        "steps": opts.steps,
        "guidance": opts.guidance,
        "strength": strength,
        "checkpoint_hash": generator.checkpoint_hash,
        "class_names": list(names),
    }


def write_bank(
    generator: Generator,
    out_dir: str | Path,
    counts: dict[int, int],
    seed: int,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    batch_size: int = 64,
    class_names: Sequence[str] | None = None,
    sources: ImageSet | None = None,
    strength: float = 0.5,
) -> pd.DataFrame:
    """Write ``counts[c]`` images of each class c (continuing an interrupted bank); return the manifest.

    With ``sources`` (real training images) the images are variations of them at ``strength`` and
    record their ``source_id``; the bank's family is then ``variation``.
    """
    out_dir, names = Path(out_dir), tuple(class_names or generator.class_names)
    opts = generator.options(sampler, steps, guidance)
    family = "variation" if sources is not None else generator.family
    used = sources is not None and generator.uses_strength()
    meta = _bank_meta(generator, family, seed, names, opts, strength if used else None)
    if (out_dir / "bank.json").exists() and read_json(out_dir / "bank.json") != meta:
        raise ValueError(
            f"{out_dir} holds a bank made with other settings ({read_json(out_dir / 'bank.json')}); "
            "choose another directory or remove it"
        )
    write_json(out_dir / "bank.json", meta)
    remove_orphans(out_dir)  # images half-written by a killed attempt (this bank's task alone writes here)
    rows = pd.read_parquet(out_dir / MANIFEST).to_dict("records") if (out_dir / MANIFEST).exists() else []
    done = {r["id"] for r in rows}
    todo = {c: [k for k in range(n) if image_id(family, seed, c, k) not in done] for c, n in sorted(counts.items())}
    for c in todo:
        if not 0 <= c < len(names):
            raise ValueError(f"class id {c} outside 0..{len(names) - 1} ({names})")
    with tqdm(total=sum(map(len, todo.values())), disable=not sys.stderr.isatty(), desc=f"bank {family}") as bar:
        for c, ks in todo.items():
            for i in range(0, len(ks), batch_size):
                batch = np.asarray(ks[i : i + batch_size])
                rows += _write_batch(generator, out_dir, c, batch, seed, meta, sources, strength)
                with atomic_path(out_dir / MANIFEST) as tmp:
                    _frame(rows).to_parquet(tmp, index=False)
                bar.update(len(batch))
    log.info("bank %s: %d images in %s", family, len(rows), out_dir)
    return _frame(rows)


def _write_batch(
    generator: Generator,
    out_dir: Path,
    c: int,
    ks: np.ndarray,
    seed: int,
    meta: dict[str, Any],
    sources: ImageSet | None,
    strength: float,
) -> list[dict[str, Any]]:
    rngs = [torch.Generator().manual_seed(derive_seed(seed, c, int(k))) for k in ks]
    opts = (meta["sampler"], meta["steps"], meta["guidance"])
    take = getattr(generator, "take", None)  # a generator that takes images instead of drawing them (folder)
    if sources is None and take is not None:
        images = take(c, ks, seed)
        source_ids: list[str | None] = [None] * len(ks)
    elif sources is None:
        images = generator.sample(c, len(ks), rngs, *opts)
        source_ids = [None] * len(ks)
    else:
        idx = pick_sources(sources, c, ks, seed)
        source_ids = [str(s) for s in sources.ids[idx]]
        take_variations = getattr(generator, "take_variations", None)  # made elsewhere, sources in a manifest
        if take_variations is not None:
            members = [str(i) for i in sources.ids[sources.labels == c]]
            images = take_variations(c, source_ids, np.asarray(ks) // len(members), seed, members)
        else:
            images = make_variations(generator, sources.images[idx], c, strength, rngs, *opts)
    name = meta["class_names"][c]
    made_by = {k: generator.provenance(c).get(k) for k in PROVENANCE}
    rows = []
    for img, k, src in zip(images, ks, source_ids, strict=True):
        iid = image_id(meta["family"], seed, c, int(k))
        rel = f"{name}/{iid}.png"
        with atomic_path(out_dir / rel) as tmp:
            Image.fromarray(img).save(tmp)
        rows.append(
            {
                "id": iid,
                "path": rel,
                "class_id": c,
                "class_name": name,
                "seed": seed,
                "sampler": meta["sampler"],
                "steps": meta["steps"],
                "guidance": meta["guidance"],
                "strength": meta["strength"],
                "source_id": src,
                "checkpoint_hash": meta["checkpoint_hash"],
                "family": meta["family"],
                **made_by,
            }
        )
    return rows


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("sampler", "source_id", "checkpoint_hash", "family", "id", "path", "class_name", *PROVENANCE):
        df[col] = df[col].astype(object)
    for col in ("steps", "guidance", "strength"):
        df[col] = df[col].astype("float64" if col != "steps" else "Int64")
    return df


def load_bank(out_dir: str | Path) -> tuple[ImageSet, pd.DataFrame]:
    """The bank as an :class:`ImageSet` (split "train", ids from the manifest) and its manifest."""
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).exists():
        raise FileNotFoundError(f"no synthetic bank at {out_dir} (missing {MANIFEST}); run the sample stage first")
    manifest = pd.read_parquet(out_dir / MANIFEST)
    names = tuple(read_json(out_dir / "bank.json")["class_names"])
    images = [np.asarray(Image.open(out_dir / p).convert("L")) for p in manifest["path"]]
    data = ImageSet(
        images=np.stack(images) if images else np.zeros((0, 1, 1), np.uint8),
        labels=manifest["class_id"].to_numpy(np.int64),
        ids=manifest["id"].to_numpy(object),
        class_names=names,
    )
    return data, manifest
