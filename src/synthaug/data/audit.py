"""Dataset audit: counts, sizes and modes, unreadable files, duplicates and train/test leakage.

Two kinds of duplicate groups are reported:

- **exact**: identical grayscale pixels at native size (a copy, possibly re-saved in another
  container or colour mode);
- **near**: the same picture after resizing, re-encoding or a brightness/contrast change.
  A pair is near-duplicate when its 64-bit DCT perceptual hashes (imagehash.phash) differ in
  at most ``phash_max_distance`` bits (default 8) **and** the intensity-invariant Pearson
  correlation of 32×32 block means of the preprocessed pixels is at least ``min_correlation``
  (default 0.99; block means smooth away noise and JPEG artefacts that a copy does not share).

Why two tests: on brain MRI the perceptual hash alone is far too coarse. On the Brain Tumor
MRI dataset (7,020 images, 64 px) 3,563 images have another image within Hamming distance 4,
most of them distinct slices of the same kind of scan; only the pixel-correlation check
separates true copies (same slice, other windowing) from neighbouring anatomy. Groups are
connected components over duplicate pairs (scipy), so a chain of copies is one group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from synthaug.data.load import Scan
from synthaug.data.sources import RawSource

_CHUNK = 2048
CORRELATION_SIDE = 32  # correlation is measured on 32x32 block means of the preprocessed images


@dataclass(frozen=True)
class DuplicateGroups:
    """Group id per image (-1 when the image has no duplicate) for exact and near duplicates."""

    exact: np.ndarray  # (N,) int
    near: np.ndarray  # (N,) int


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Group ids from an edge list; singletons get -1."""
    if len(i) == 0:
        return np.full(n, -1, np.int64)
    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    return np.where(sizes[comp] > 1, comp, -1).astype(np.int64)


def exact_pairs(scan: Scan) -> tuple[np.ndarray, np.ndarray]:
    ok = np.flatnonzero(scan.ok)
    first: dict[str, int] = {}
    i: list[int] = []
    j: list[int] = []
    for k in ok:
        h = scan.exact[k]
        if h in first:
            i.append(first[h])
            j.append(int(k))
        else:
            first[h] = int(k)
    return np.asarray(i, np.int64), np.asarray(j, np.int64)


def _thumbnails(pixels: np.ndarray, side: int = CORRELATION_SIDE) -> np.ndarray:
    """(N, S, S) uint8 -> (N, side, side) float32 block means; smooths away noise and JPEG artefacts."""
    n, s, _ = pixels.shape
    if s <= side or s % side:
        return pixels.astype(np.float32)
    k = s // side
    return pixels.reshape(n, side, k, side, k).mean(axis=(2, 4), dtype=np.float32)


def unit_rows(pixels: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 -> (N, D) float32 centred unit rows of block means: a dot product is Pearson r."""
    x = _thumbnails(pixels).reshape(len(pixels), -1)
    x -= x.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-6
    return x


def near_pairs(scan: Scan, phash_max_distance: int, min_correlation: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs passing both the perceptual-hash and the pixel-correlation test (chunked, vectorised)."""
    ok = np.flatnonzero(scan.ok)
    hashes = scan.phash[ok]
    x = unit_rows(scan.pixels[ok])
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    for start in range(0, len(ok), _CHUNK):
        block = hashes[start : start + _CHUNK]
        dist = np.bitwise_count(block[:, None] ^ hashes[None, :])  # (chunk, N) Hamming distances
        a, b = np.nonzero(dist <= phash_max_distance)
        a = a + start
        keep = b > a  # each unordered pair once, no self pairs
        a, b = a[keep], b[keep]
        corr = np.einsum("kd,kd->k", x[a], x[b])
        good = corr >= min_correlation
        out_i.append(ok[a[good]])
        out_j.append(ok[b[good]])
    return np.concatenate(out_i), np.concatenate(out_j)


def find_duplicates(scan: Scan, phash_max_distance: int = 8, min_correlation: float = 0.99) -> DuplicateGroups:
    n = len(scan.ids)
    ei, ej = exact_pairs(scan)
    ni, nj = near_pairs(scan, phash_max_distance, min_correlation)
    # Near groups include the exact pairs: a copy is also a near copy.
    return DuplicateGroups(_components(n, ei, ej), _components(n, np.concatenate([ei, ni]), np.concatenate([ej, nj])))


def leaked_test_rows(scan: Scan, groups: np.ndarray) -> np.ndarray:
    """Boolean mask of test images that share a duplicate group with any training image."""
    train_groups = set(groups[(scan.splits != "test") & (groups >= 0)].tolist())
    return (scan.splits == "test") & np.isin(groups, list(train_groups))


def _group_records(scan: Scan, groups: np.ndarray) -> list[dict]:
    records = []
    for g in np.unique(groups[groups >= 0]):
        m = np.flatnonzero(groups == g)
        splits = sorted(set(scan.splits[m].tolist()) - {""})
        labels = sorted({scan.class_names[lab] for lab in scan.labels[m]})
        records.append(
            {
                "members": scan.ids[m].tolist(),
                "splits": splits,
                "labels": labels,
                "cross_split": len(splits) > 1,
                "label_conflict": len(labels) > 1,
            }
        )
    records.sort(key=lambda r: -len(r["members"]))
    return records


def _group_summary(records: list[dict]) -> dict:
    return {
        "groups": len(records),
        "images": sum(len(r["members"]) for r in records),
        "cross_split_groups": sum(r["cross_split"] for r in records),
        "label_conflict_groups": sum(r["label_conflict"] for r in records),
    }


def audit_report(
    scan: Scan,
    source: RawSource | None,
    dups: DuplicateGroups,
    phash_max_distance: int,
    min_correlation: float,
    description: str = "in-memory data",
) -> dict:
    """The whole audit as a JSON-ready dict (also what the report's audit section shows)."""
    ok = scan.ok
    counts: dict[str, dict[str, int]] = {}
    for split in sorted(set(scan.splits[ok].tolist())):
        sel = ok & (scan.splits == split)
        counts[split or "all"] = {c: int(((scan.labels == i) & sel).sum()) for i, c in enumerate(scan.class_names)}
    sizes = Counter(f"{w}x{h}" for w, h in zip(scan.widths[ok], scan.heights[ok], strict=False))
    exact, near = _group_records(scan, dups.exact), _group_records(scan, dups.near)
    return {
        "source": source.description if source else description,
        "class_names": list(scan.class_names),
        "images": len(scan.ids),
        "readable": int(ok.sum()),
        "counts": counts,
        "modes": dict(Counter(scan.modes[ok].tolist()).most_common()),
        "sizes": dict(sizes.most_common(20)),
        "distinct_sizes": len(sizes),
        "unreadable": [{"id": i, "reason": e} for i, e in zip(scan.ids[~ok], scan.errors[~ok], strict=False)],
        "skipped_files": [{"path": p, "reason": r} for p, r in (source.skipped if source else [])],
        "near_duplicate_rule": {"phash_max_distance": phash_max_distance, "min_correlation": min_correlation},
        "exact_duplicates": {
            **_group_summary(exact),
            "test_images_duplicating_train": int(leaked_test_rows(scan, dups.exact).sum()),
        },
        "near_duplicates": {
            **_group_summary(near),
            "test_images_duplicating_train": int(leaked_test_rows(scan, dups.near).sum()),
        },
        "exact_groups": exact,
        "near_groups": near,
    }


def format_report(report: dict, max_groups: int = 5) -> str:
    """Readable text tables for the terminal."""
    names = report["class_names"]
    lines = [f"Source: {report['source']}", f"Images: {report['images']} ({report['readable']} readable)", ""]
    width = max(10, *(len(c) for c in names))
    lines.append("split".ljust(8) + "".join(c.rjust(width + 2) for c in names) + "total".rjust(9))
    for split, row in report["counts"].items():
        lines.append(
            split.ljust(8) + "".join(str(row[c]).rjust(width + 2) for c in names) + str(sum(row.values())).rjust(9)
        )
    lines += ["", "Modes: " + ", ".join(f"{m} {k}" for m, k in report["modes"].items())]
    lines.append(
        f"Sizes: {report['distinct_sizes']} distinct; "
        + ", ".join(f"{s} ×{k}" for s, k in list(report["sizes"].items())[:5])
    )
    if report["unreadable"]:
        lines.append(f"Unreadable files ({len(report['unreadable'])}, skipped):")
        lines += [f"  {u['id']}: {u['reason']}" for u in report["unreadable"][:20]]
    if report["skipped_files"]:
        lines.append(f"Non-image files skipped: {len(report['skipped_files'])}")
    rule = report["near_duplicate_rule"]
    lines.append("")
    lines.append(
        "duplicates".ljust(12)
        + "groups".rjust(8)
        + "images".rjust(8)
        + "cross train/test".rjust(18)
        + "label conflict".rjust(16)
        + "test dup of train".rjust(19)
    )
    for kind in ("exact", "near"):
        s = report[f"{kind}_duplicates"]
        lines.append(
            kind.ljust(12)
            + f"{s['groups']:>8}{s['images']:>8}{s['cross_split_groups']:>18}"
            + f"{s['label_conflict_groups']:>16}{s['test_images_duplicating_train']:>19}"
        )
    lines.append(
        f"(near = pHash distance <= {rule['phash_max_distance']} of 64 bits"
        f" and pixel correlation >= {rule['min_correlation']})"
    )
    for kind in ("exact", "near"):
        groups = report[f"{kind}_groups"]
        if groups:
            lines.append(f"Largest {kind} groups:")
            for g in groups[:max_groups]:
                flags = " [train/test]" * g["cross_split"] + " [labels differ]" * g["label_conflict"]
                more = " …" if len(g["members"]) > 4 else ""
                lines.append(f"  {len(g['members'])}: {', '.join(g['members'][:4])}{more}{flags}")
    return "\n".join(lines)
