"""Report sections on the synthetic images: samples per bank, quality, memorization, TSTR, filtering, Grad-CAM.

They read ``quality.json``, ``explain/cams.json`` and the PNGs the quality and explain stages
wrote; each returns None when its artifact is missing (a study without generators has none).
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from synthaug.io import read_json
from synthaug.report.figures import image_grid, labelled_grid, png_to_data_uri
from synthaug.report.markup import figure, num, policy_name, table
from synthaug.rundir import MANIFEST, BankRef, RunDir, parse_cell_key


def _quality(run: RunDir) -> dict[str, Any] | None:
    q = read_json(run.quality) if run.quality.exists() else None
    return q if q and q.get("banks") else None


def _first_seed(run: RunDir) -> int | None:
    seeds = run.recorded_study().get("seeds", [])
    return int(seeds[0]) if seeds else None


def shown_banks(run: RunDir) -> list[BankRef]:
    """Banks of the cell the report shows pictures of: the largest real fraction, the first seed."""
    banks = run.find_banks()
    if not banks:
        return []
    top = max(b.fraction for b in banks)
    seeds = sorted({b.seed for b in banks if b.fraction == top})
    seed = _first_seed(run)
    seed = seed if seed in seeds else seeds[0]
    return [b for b in banks if (b.fraction, b.seed) == (top, seed)]


def _is_shown(run: RunDir) -> set[tuple[str, float, int]]:
    return {(b.name, b.fraction, b.seed) for b in shown_banks(run)}


def bank_grid(ref: BankRef, per_class: int = 8) -> bytes:
    """PNG grid of the first ``per_class`` images of every class of a bank (read from its PNGs only)."""
    manifest = pd.read_parquet(ref.path / MANIFEST).sort_values("id", kind="stable")
    picked = manifest.groupby("class_id", sort=True).head(per_class)
    images = np.stack([np.asarray(Image.open(ref.path / p).convert("L")) for p in picked["path"]])
    names = read_json(ref.path / "bank.json")["class_names"]
    return labelled_grid(image_grid(images, picked["class_id"].to_numpy(), names, per_class), names)


def bank_samples(run: RunDir) -> str:
    """One grid per bank of the shown cell (empty when the study has no banks)."""
    parts = []
    for ref in shown_banks(run):
        caption = f"Bank {ref.name} (real fraction {ref.fraction:g}, seed {ref.seed}); one row per class."
        parts.append(figure(png_to_data_uri(bank_grid(ref)), caption))
    return "".join(parts)


def _cell(entry: dict[str, Any]) -> str:
    return f"fraction {entry['fraction']:g}, seed {entry['seed']}"


def _key_label(key: str) -> str:
    fraction, seed = parse_cell_key(key)
    return f"fraction {fraction:g}, seed {seed}"


def _class_names(q: dict[str, Any]) -> list[str]:
    return list(next(iter(q["cells"].values()))["judge"]["test"]["per_class"])


def _quality_row(name: str, cell: str, against: str, r: dict[str, Any]) -> list[object]:
    o = r["overall"]
    kid = "–" if o["kid_mean"] is None else f"{o['kid_mean']:.4f} ± {o['kid_std']:.4f}"
    diversity = f"{num(o['diversity_synthetic'])} / {num(o['diversity_real'])}"
    return [name, cell, against, f"{o['n_real']} / {o['n_synthetic']}", num(o["fid"], ".2f"), kid,
            num(o["precision"]), num(o["recall"]), diversity]  # fmt: skip


def judge_at_chance(judge: dict[str, Any], margin: float = 0.05) -> bool:
    """A judge whose test balanced accuracy is within ``margin`` of chance has not learnt the classes."""
    test = judge["test"]
    chance = 1.0 / max(1, len(test.get("per_class", {})))
    return bool(test.get("balanced_accuracy", 1.0) <= chance + margin)


def quality_section(run: RunDir) -> str | None:
    q = _quality(run)
    if q is None:
        return None
    rows: list[list[object]] = []
    chance = {key for key, cell in q["cells"].items() if judge_at_chance(cell["judge"])}
    flag = " (uninformative: judge at chance)"
    for key, cell in q["cells"].items():
        for ref in cell["real_train_vs_real_test"].values():
            label = "real test images (reference)" + (flag if key in chance else "")
            rows.append(_quality_row(label, _key_label(key), "train", ref))
    for b in q["banks"]:
        for roles in b["quality"].values():
            for against, r in roles.items():
                label = b["bank"] + (flag if b["cell"] in chance else "")
                rows.append(_quality_row(label, _cell(b), against.removeprefix("vs_").replace("_", " "), r))
    header = ["images", "cell", "against real", "n real / synthetic", "FID", "KID", "precision",
              "recall", "MS-SSIM synthetic / real"]  # fmt: skip
    networks = ", ".join(q["feature_networks"])
    judges = ", ".join(f"{_key_label(k)}: {num(c['judge']['test']['accuracy'])}" for k, c in q["cells"].items())
    intro = (
        f"<p>Feature network: <b>{escape(networks)}</b>. The encoder is the penultimate layer of the cell's "
        "<b>judge</b>: a classifier trained on the cell's real training images only, whose features (in-domain, "
        "unlike ImageNet's) measure the banks and whose confidences filter them. FID and KID compare only within "
        "one cell. The first rows are the yardstick: real test images against the real training images. "
        "Precision: share of synthetic images on the real manifold (fidelity); recall: share of real images on "
        "the synthetic manifold (coverage). MS-SSIM is the mean within-class similarity of random pairs: lower "
        "is more diverse.</p>"
        f"<p class='muted'>Test accuracy of the encoder classifiers (the judges) per cell: {escape(judges)}. "
        "An encoder near chance accuracy has not learnt the classes, and distances in its features say "
        "little.</p>"
    )
    return intro + table(header, rows, wrap=True) + _per_class_fid(q)


def _per_class_fid(q: dict[str, Any]) -> str:
    names = _class_names(q)
    rows = []
    for b in q["banks"]:
        r = b["quality"]["encoder"]
        for against in ("vs_train", "vs_test"):
            per = r[against]["per_class"]
            fids = [num(per[c]["fid"], ".2f") if c in per else "–" for c in names]
            rows.append([b["bank"], _cell(b), against.removeprefix("vs_"), *fids])
    head = "<h3>FID per class (encoder features)</h3>"
    return head + table(["images", "cell", "against real", *names], rows)


def memorization_section(run: RunDir) -> str | None:
    q = _quality(run)
    if q is None:
        return None
    names = _class_names(q)
    rows = []
    for b in q["banks"]:
        m = b["memorization"]
        per = m["flagged_share_per_class"]
        rows.append([b["bank"], _cell(b), m["n_synthetic"], m["exact_copies"], num(m["flagged_share"]),
                     num(m["copied_train_share"]), *(num(per.get(c)) for c in names)])  # fmt: skip
    pct = q["settings"]["percentile"]
    intro = (
        f"<p>A synthetic image is flagged when it is closer to a training image (pixel correlation, or distance "
        f"in encoder features) than {pct:g}% of real test images are, or equals one pixel for pixel. Independent "
        f"images are flagged about {2 * pct:g}% of the time at most; much more means the generator copies its "
        "training images (patients).</p>"
    )
    header = ["images", "cell", "n", "exact copies", "flagged share", "training images copied",
              *(f"flagged: {c}" for c in names)]  # fmt: skip
    parts = [intro, table(header, rows), *_test_exposure(q, pct, names)]
    parts.append("<h3>Closest pairs (largest real fraction, first seed)</h3>")
    shown = _is_shown(run)
    for b in q["banks"]:
        png = run.root / b["closest_pairs_png"]
        if (b["bank"], b["fraction"], b["seed"]) not in shown or not png.exists():
            continue
        pairs = b["memorization"]["measures"]["pixel"]["closest_pairs"]
        dists = ", ".join(f"{p['distance']:.3f}{' (flagged)' if p['flagged'] else ''}" for p in pairs)
        caption = (
            f"{b['bank']} ({_cell(b)}): synthetic images (top) above their nearest training image (bottom) by "
            f"pixel correlation; 1 − r: {dists}."
        )
        parts.append(figure(png_to_data_uri(png.read_bytes()), caption))
    return "".join(parts)


def _test_exposure(q: dict[str, Any], pct: float, names: list[str]) -> list[str]:
    """Banks made outside the study (a folder, a pretrained model) checked against the real test images."""
    banks = [b for b in q["banks"] if b.get("test_exposure")]
    if not banks:
        return []
    rows = []
    for b in banks:
        t = b["test_exposure"]
        per = t["flagged_share_per_class"]
        rows.append([b["bank"], _cell(b), t["n_synthetic"], t["exact_copies"], num(t["flagged_share"]),
                     *(num(per.get(c)) for c in names)])  # fmt: skip
    intro = (
        "<h3>Did an outside generator see the test images?</h3><p>These images were made outside this study (a "
        "folder of images, or a pretrained model), by a generator that may have been trained on images this "
        "study tests on. The same check against the real <b>test</b> images (is a synthetic image closer to a "
        f"test image than the real training images are?) flags independent images about {2 * pct:g}% of the "
        "time at most; much more, or any exact copy, means its results may be inflated by test images it "
        "saw.</p>"
    )
    header = ["images", "cell", "n", "exact copies of test images", "flagged share vs test",
              *(f"flagged: {c}" for c in names)]  # fmt: skip
    return [intro, table(header, rows)]


def tstr_section(run: RunDir) -> str | None:
    q = _quality(run)
    banks = [b for b in q["banks"] if b.get("tstr")] if q else []
    if q is None or not banks:
        return None
    names = _class_names(q)
    rows = []
    for key, cell in q["cells"].items():
        tstr = [b for b in banks if b["cell"] == key]
        if not tstr:
            continue
        for label, m in [("real (TRTR)", cell["judge"]), *((f"{b['bank']} (TSTR)", b["tstr"]) for b in tstr)]:
            t = m["test"]
            f1 = [num(t["per_class"][c]["f1"]) for c in names]
            rows.append([label, _key_label(key), m["n_train"], num(t["accuracy"]), num(t["balanced_accuracy"]),
                         num(t["macro_f1"]), *f1])  # fmt: skip
    model = next(iter(q["cells"].values()))["judge"]["model"]
    intro = (
        f"<p>A {escape(model)} classifier trained on synthetic images only (the real validation images stop it "
        "early) and tested on the real test set, next to the same network with the same budget trained on the "
        "real training images. <b>TSTR</b> (train on synthetic, test on real) close to <b>TRTR</b> (train on "
        "real, test on real) means the synthetic images carry the class evidence.</p>"
    )
    header = ["trained on", "cell", "train images", "accuracy", "balanced acc.", "macro-F1"]
    header += [f"F1 {c}" for c in names]
    return intro + table(header, rows)


def filtering_section(run: RunDir) -> str | None:
    q = _quality(run)
    if q is None:
        return None
    parts = [
        "<p>Images per class the synthetic policies keep with <code>min_confidence=τ</code> (the judge's "
        "probability of the intended class) and with <code>drop_memorized=true</code>, for the banks of the "
        "largest real fraction and first seed (every bank's counts are in quality.json).</p>"
    ]
    shown = _is_shown(run)
    for b in q["banks"]:
        if (b["bank"], b["fraction"], b["seed"]) not in shown:
            continue
        f = b["filtering"]
        names = list(f["all"])
        rows = [["all", *f["all"].values(), sum(f["all"].values())]]
        rows.append(["not memorized", *f["not_memorized"].values(), sum(f["not_memorized"].values())])
        for tau, kept in f["min_confidence"].items():
            rows.append([f"confidence ≥ {tau}", *kept.values(), sum(kept.values())])
        for tau, kept in f["min_confidence_not_memorized"].items():
            rows.append([f"confidence ≥ {tau}, not memorized", *kept.values(), sum(kept.values())])
        parts.append(f"<h3>{escape(b['bank'])} ({_cell(b)}), mean confidence {num(b['mean_confidence'])}</h3>")
        parts.append(table(["kept", *names, "total"], rows))
    return "".join(parts)


def _cam_row(label: str, images: str, f: dict[str, Any], corr: dict[str, float | None] | None) -> list[object]:
    mean_corr = "–"
    if corr:
        vals = [v for v in corr.values() if v is not None]
        mean_corr = num(float(np.mean(vals))) if vals else "–"
    return [label, images, f["n"], num(f["energy_in_mask"]), num(f["pointing_game"]), mean_corr]


def gradcam_section(run: RunDir) -> str | None:
    entries = read_json(run.cams)["classifiers"] if run.cams.exists() else []
    if not entries:
        return None
    rows: list[list[object]] = []
    figures: list[str] = []
    for e in entries:
        label = f"{e['model']} · {policy_name(e['policy'])} · fraction {e['fraction']:g}, seed {e['seed']}"
        rows.append(_cam_row(label, "real test", e["real"], None))
        for b in e["banks"]:
            kind = "variations (source mask)" if b["variation"] else "samples"
            rows.append(_cam_row(label, f"{b['bank']} {kind}", b["synthetic"], b["mean_cam_correlation"]))
            panel = run.root / b["panel"]
            if panel.exists():
                caption = f"Grad-CAM of {label} on real test images (left) and {b['bank']} images (right), per class."
                figures.append(figure(png_to_data_uri(panel.read_bytes()), caption))
    tol = entries[0]["tolerance_px"]
    intro = (
        "<p>Where the classifier looks (Grad-CAM for the true class). With lesion masks: the share of CAM energy "
        f"inside the lesion and the <b>pointing game</b> (the share of images whose CAM peak lies inside the "
        f"lesion, ±{tol} px). Variations are scored "
        "in their source image's mask; other synthetic images by the correlation of the per-class mean CAM with "
        "that of real images (1: same places).</p>"
    )
    header = ["classifier (model · policy · cell)", "images", "n", "energy in lesion", "pointing game",
              "mean-CAM correlation with real"]  # fmt: skip
    return intro + table(header, rows) + "".join(figures)
