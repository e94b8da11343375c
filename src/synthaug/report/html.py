"""Build RUN_DIR/report.html from the artifacts in the run directory (nothing is recomputed).

Each section is a small function that reads its artifacts and returns HTML, or None when the
study has not produced them (a study without generators has no synthetic-sample section).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from synthaug.config import load_config
from synthaug.io import read_json, write_text
from synthaug.report import approaches, figures, results, trust, verdict
from synthaug.report.markup import figure, num, table
from synthaug.rundir import RunDir


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    html: str


def audit_section(run: RunDir) -> str | None:
    a = read_json(run.audit)
    names = a["class_names"]
    rows = [[split, *(row[c] for c in names), sum(row.values())] for split, row in a["counts"].items()]
    parts = [table(["split", *names, "total"], rows)]
    parts.append(figure(figures.class_counts_figure(a["counts"]), "Images per class and split after decoding."))
    modes = ", ".join(f"{m}: {k}" for m, k in a["modes"].items())
    parts.append(f"<p>Modes before conversion: {escape(modes)}. {a['distinct_sizes']} distinct image sizes.</p>")
    if a["unreadable"]:
        listed = "".join(f"<li>{escape(u['id'])}: {escape(u['reason'])}</li>" for u in a["unreadable"][:20])
        parts.append(f"<p class='warn'>{len(a['unreadable'])} unreadable files were skipped:</p><ul>{listed}</ul>")
    dup_rows = [
        [
            kind,
            s["groups"],
            s["images"],
            s["cross_split_groups"],
            s["label_conflict_groups"],
            s["test_images_duplicating_train"],
        ]
        for kind, s in (("exact", a["exact_duplicates"]), ("near", a["near_duplicates"]))
    ]
    parts.append(
        table(
            ["duplicates", "groups", "images", "groups across train/test", "label conflicts", "test copies of train"],
            dup_rows,
        )
    )
    rule = a["near_duplicate_rule"]
    lf = a["leakage_filter"]
    parts.append(
        f"<p class='muted'>Near duplicates: perceptual-hash distance ≤ {rule['phash_max_distance']} of 64 bits and "
        f"pixel correlation ≥ {rule['min_correlation']}.</p>"
        f"<p><b>Leakage filter</b> ({'on' if lf['enabled'] else 'off'}, {lf['kind']} duplicates): "
        f"{lf['removed_test_images']} test images removed, {lf['test_images_kept']} kept for evaluation.</p>"
    )
    parts += [f"<p class='warn'>{escape(w)}</p>" for w in a.get("class_warnings", []) + a.get("group_warnings", [])]
    parts.append(split_audit_html(run))
    return "\n".join(parts)


def split_audit_html(run: RunDir) -> str:
    """Unit of splitting, the share of images each cell got, and validation vs test nearness to training."""
    if not run.splits.exists():
        return ""
    splits = read_json(run.splits)
    rows = []
    for seed, by_fraction in splits["cells"].items():
        for fraction, cell in by_fraction.items():
            a = cell.get("audit")
            if a is None:  # a run directory of an earlier version
                continue
            got = ", ".join(f"{k} {v:.0%}" for k, v in cell.get("achieved_fraction", {}).items())
            nearest = f"{num(a['val_median_nearest'])} / {num(a['test_median_nearest'])}"
            copies = f"{a['val_near_copies']:.1%} / {a['test_near_copies']:.1%}"
            rows.append([f"fraction {fraction}, seed {seed}", got, len(cell["val"]), nearest, copies,
                         "LEAK" if a["leak"] else "ok"])  # fmt: skip
    if not rows:
        return ""
    head = ["cell", "share of each class's images (train + val)", "validation images",
            "nearest training image, median r: val / test", "near copies: val / test", "audit"]  # fmt: skip
    unit = splits.get("unit", "image")
    warn = "".join(f"<p class='warn'>{escape(w)}</p>" for w in splits.get("warnings", []))
    return (
        f"<h3>Splits</h3><p>Unit of splitting: <b>{escape(unit)}</b> — no unit is on two sides of any split "
        "(test, validation, real-fraction subsets).</p>" + table(head, rows, wrap=True) + warn
    )


def summary_section(run: RunDir) -> str | None:
    df = results.load_results(run)
    if df is None or df.empty or "policy_spec" not in df.columns:
        return None
    return verdict.verdict(run, df, load_config(run.config))


def samples_section(run: RunDir) -> str | None:
    """The real grid, then one grid per synthetic bank (largest real fraction, first seed)."""
    grid = run.real_grid
    names = read_json(run.audit)["class_names"]
    real = (
        figure(
            figures.png_to_data_uri(figures.labelled_grid(grid.read_bytes(), names)),
            "Real training images; one row per class, named on the left.",
        )
        if grid.exists()
        else ""
    )
    html = real + trust.bank_samples(run)
    return html or None


def approaches_section(run: RunDir) -> str | None:
    df = results.load_results(run)
    if df is None or df.empty or "policy_spec" not in df.columns:  # results of an early version lack the specs
        return None
    cfg = load_config(run.config)
    return approaches.approaches_table(df, cfg, verdict.primary_metric(cfg, run, df)[0])


def results_section(run: RunDir) -> str | None:
    df = results.load_results(run)
    if df is None or df.empty:
        return None
    cfg = load_config(run.config)
    primary = verdict.primary_metric(cfg, run, df)[0] if "policy_spec" in df.columns else "test_accuracy"
    strip = figure(results.strip_plots(df, primary), f"{verdict.metric_name(primary)} per seed, by policy.")
    parts = [results.results_table(df, primary, cfg.study.baseline), strip]
    curve = results.efficiency_curve(df)
    if curve:
        parts.append(figure(curve, "Data efficiency: balanced accuracy vs the share of real training data used."))
    ratio = results.ratio_curve(df, primary)
    if ratio:
        parts.append(figure(ratio, f"{verdict.metric_name(primary)} against the ratio of added to real training "
                                   "images, per policy run at several amounts (median over seeds, 95% bootstrap CI); "
                                   "the dashed line and band: no augmentation."))  # fmt: skip
    return "".join(parts)


def paired_section(run: RunDir) -> str | None:
    df = results.load_results(run)
    if df is None or df.empty or df["policy"].nunique() < 2:
        return None
    return results.paired_table(df, run.recorded_study()["baseline"])


def per_class_section(run: RunDir) -> str | None:
    df = results.load_results(run)
    if df is None or df.empty:
        return None
    parts = [results.per_class_f1(df)]
    conf = results.confusion_figure(df, run)
    if conf:
        parts.append(
            figure(conf, "Test confusion matrices summed over seeds (largest real fraction); rows are true classes.")
        )
    return "".join(parts)


def curves_section(run: RunDir) -> str | None:
    df = results.load_results(run)
    curves = None if df is None or df.empty else results.training_curves(df, run)
    return figure(curves, "Validation loss per epoch (first seed, largest real fraction).") if curves else None


def config_section(run: RunDir) -> str | None:
    env = yaml.safe_load(run.environment.read_text(encoding="utf-8")) if run.environment.exists() else {}
    rows = [[k, v] for k, v in env.items()]
    parts = [table(["component", "version"], rows)]
    times = run.stage_times()
    if times:
        parts.append(
            table(
                ["stage", "wall time (s, all attempts)", "attempts finished", "attempts interrupted", "last finished"],
                [
                    [name, f"{t['seconds']:.0f}", t.get("runs", 0), t.get("interrupted", 0), t.get("finished", "–")]
                    for name, t in times.items()
                ],
            )
            + f"<p class='muted'>Total {sum(t['seconds'] for t in times.values()) / 60:.1f} min of wall time, "
            "including earlier attempts of a resumed run; this report's own build is counted from the next one.</p>"
        )
    config = escape(run.config.read_text(encoding="utf-8"))
    summary = "<summary>The resolved configuration (config.yaml)</summary>"
    return "".join(parts) + f"<details>{summary}<pre>{config}</pre></details>"


SECTIONS: tuple[tuple[str, str, Callable[[RunDir], str | None]], ...] = (
    ("summary", "Summary: what the study found", summary_section),
    ("audit", "Dataset audit and leakage", audit_section),
    ("samples", "Sample images", samples_section),
    ("approaches", "Approaches and findings", approaches_section),
    ("results", "Results per cell", results_section),
    ("paired", "Paired differences against the baseline", paired_section),
    ("per-class", "Per-class F1 and confusion matrices", per_class_section),
    ("curves", "Training curves", curves_section),
    ("quality", "Synthetic image quality", trust.quality_section),
    ("memorization", "Memorization", trust.memorization_section),
    ("tstr", "Train on synthetic, test on real", trust.tstr_section),
    ("filtering", "Filtering", trust.filtering_section),
    ("gradcam", "Grad-CAM", trust.gradcam_section),
    ("config", "Configuration, versions and wall times", config_section),
)


def _warnings_beside_sections(run: RunDir, sections: list[Section]) -> list[Section]:
    """Each warning of the summary again at the top of the section it concerns."""
    df = results.load_results(run)
    if df is None or df.empty:
        return sections
    by_section: dict[str, list[str]] = {}
    for text, sid in verdict.warnings(run, df):
        by_section.setdefault(sid, []).append(text)
    return [
        Section(s.id, s.title, "".join(f"<p class='warn'>⚠ {escape(t)}</p>" for t in by_section[s.id]) + s.html)
        if s.id != "summary" and s.id in by_section
        else s
        for s in sections
    ]


def build_report(run_dir: Path) -> Path:
    """Render ``run_dir/report.html`` from the run directory's artifacts; returns its path."""
    run = RunDir(Path(run_dir))
    for needed in (run.config, run.audit):
        if not needed.exists():
            raise FileNotFoundError(
                f"'{needed}' is missing: is '{run.root}' a synthaug run directory? Run `synthaug run` first"
            )
    sections = [Section(sid, title, html) for sid, title, fn in SECTIONS if (html := fn(run)) is not None]
    sections = _warnings_beside_sections(run, sections)
    env = Environment(loader=PackageLoader("synthaug.report", "templates"), autoescape=select_autoescape(["html"]))
    study = run.recorded_study()
    html = env.get_template("report.html").render(
        study=study,
        audit=read_json(run.audit),
        sections=sections,
        made=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    return write_text(run.report, html)
