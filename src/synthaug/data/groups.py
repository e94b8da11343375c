"""The unit of splitting: which images must stay on one side of every split.

A unit is a connected component of "same patient" (from ``data.groups``: a parquet column, a
CSV ``file,group`` or a regular expression over the file path) and "near-duplicate" (from the
audit) links. Scans of one patient are often dozens of near-identical slices; splitting them
image by image puts the same anatomy in training and validation, which rewards memorisation.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from synthaug.config.data import GroupsConfig
from synthaug.data.sources import RawSource, SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Units:
    """Unit of every image (0..U-1) and what the units are, in words (``splits.json`` and the report)."""

    ids: np.ndarray  # (N,) int64
    description: str
    warnings: tuple[str, ...] = ()


def user_groups(cfg: GroupsConfig, ids: np.ndarray, source: RawSource | None) -> np.ndarray | None:
    """The group name of every image from ``data.groups`` (object array), or None when none is configured.

    Raises ``SourceError`` naming the setting when a group is missing for some images, or when
    the groups cannot split anything (every image in one group).
    """
    if not cfg.given:
        return None
    if cfg.column:
        if source is None:
            raise SourceError("data.groups.column needs a parquet source; use data.groups.regex or csv here")
        names = np.array([it.group for it in source.items], dtype=object)
        setting = f"data.groups.column {cfg.column!r}"
    elif cfg.csv:
        names, setting = _from_csv(Path(cfg.csv), ids), f"data.groups.csv {cfg.csv!r}"
    else:
        assert cfg.regex
        pattern = re.compile(cfg.regex)
        names = np.array([_match(pattern, str(i)) for i in ids], dtype=object)
        setting = f"data.groups.regex {cfg.regex!r}"
    missing = np.array([n is None for n in names])
    if missing.any():
        examples = ", ".join(map(str, ids[missing][:3]))
        raise SourceError(
            f"{setting}: {missing.sum()} of {len(ids)} images have no group (e.g. {examples}); every image needs "
            "one: fix the source, or leave data.groups unset to split by near-duplicate groups"
        )
    if len(ids) > 1 and len(set(names.tolist())) == 1:
        raise SourceError(
            f"{setting} puts all {len(ids)} images in one group ({names[0]!r}), so no split is possible; "
            "check the column or pattern (a regex's first capture group is the group)"
        )
    return names


def _match(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    if m is None:
        return None
    value = m.group(1) if pattern.groups else m.group(0)
    return value or None


def _from_csv(path: Path, ids: np.ndarray) -> np.ndarray:
    if not path.is_file():
        raise SourceError(f"data.groups.csv: no file at '{path}'; it should have the columns file,group")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "group"} <= set(rows[0]):
        raise SourceError(f"data.groups.csv '{path}' must have a header with the columns file,group")
    by_key = {r["file"].strip(): r["group"].strip() or None for r in rows}
    by_name = {Path(k).name: v for k, v in by_key.items()}
    return np.array([by_key.get(str(i), by_name.get(Path(str(i)).name)) for i in ids], dtype=object)


def units(labels: np.ndarray, duplicates: np.ndarray, names: np.ndarray | None, class_names: tuple[str, ...]) -> Units:
    """Join ``data.groups`` (``names``, or None) and duplicate groups (``duplicates``, -1 for none) into units."""
    n = len(labels)
    links: list[np.ndarray] = []
    for codes in (_codes(names) if names is not None else None, duplicates):
        if codes is None:
            continue
        member = codes >= 0
        _, first = np.unique(codes[member], return_index=True)
        head = np.full(codes.max() + 1 if member.any() else 0, -1)
        head[codes[member][first]] = np.flatnonzero(member)[first]
        links.append(np.stack([np.flatnonzero(member), head[codes[member]]]))  # image -> its group's first image
    edges = np.concatenate(links, axis=1) if links else np.zeros((2, 0), int)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(n, n))
    _, unit = connected_components(graph, directed=False)
    what = "near-duplicate groups"
    if names is not None:
        what = f"patient / scan groups from data.groups ({len(set(names.tolist()))} groups) joined with " + what
    return Units(unit.astype(np.int64), what, tuple(_conflicts(unit, labels, class_names)))


def _codes(names: np.ndarray) -> np.ndarray:
    _, codes = np.unique(names.astype(str), return_inverse=True)
    return codes.astype(np.int64)


def _conflicts(unit: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> list[str]:
    """Warnings for units whose images carry different labels, and for classes with too few units."""
    out = []
    pairs = np.unique(np.stack([unit, labels]), axis=1)  # (2, distinct (unit, label))
    units_of, n_labels = np.unique(pairs[0], return_counts=True)
    mixed = units_of[n_labels > 1]
    if len(mixed):
        u = mixed[0]
        counts = {class_names[c]: int(((unit == u) & (labels == c)).sum()) for c in np.unique(labels[unit == u])}
        out.append(
            f"{len(mixed)} group(s) hold images of more than one class (e.g. {counts}); each stays whole and is "
            "stratified by its majority class"
        )
    for c, name in enumerate(class_names):
        n_units = len(np.unique(unit[labels == c]))
        if 0 < n_units < 3:
            out.append(
                f"class '{name}' has only {n_units} group(s): a grouped split cannot put it in training, "
                "validation and test alike"
            )
    for w in out:
        log.warning("data.groups: %s", w)
    return out
