"""Report sections that read the results table (``results.parquet``) and the cell folders."""

from __future__ import annotations

import json
from html import escape

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from synthaug.config.policies import as_specs, policies_label
from synthaug.metrics.stats import paired_comparison, summarize_cells
from synthaug.report.figures import to_data_uri
from synthaug.report.markup import policy_name
from synthaug.rundir import CONFUSION, HISTORY, RunDir

NAME = " class='name'"  # a cell holding a policy's name: it may wrap, the numbers do not
METRICS = {"test_accuracy": "accuracy", "test_balanced_accuracy": "balanced acc.", "test_macro_f1": "macro-F1"}


def load_results(run: RunDir) -> pd.DataFrame | None:
    return pd.read_parquet(run.results) if run.results.exists() else None


def _fmt_ci(median: float, low: float, high: float) -> str:
    return f"{median:.3f} [{low:.3f}, {high:.3f}]"


def ordered_keys(df: pd.DataFrame, baseline: str) -> list[tuple[str, str, float]]:
    """(model, policy, real fraction) in reading order: by model and fraction, the baseline first."""
    keys = df.groupby(["model", "policy", "real_fraction"]).size().index
    return sorted(keys, key=lambda k: (k[0], k[2], k[1] != baseline, k[1]))


def results_table(df: pd.DataFrame, primary: str = "test_accuracy", baseline: str = "none") -> str:
    """Median and bootstrap 95% CI per cell, the primary metric first with its validation value beside
    it, then the other headline metrics; training cost in a collapsed table below."""
    keys = ["model", "policy", "real_fraction"]
    metrics = [primary, *(m for m in METRICS if m != primary)]
    parts = {m: summarize_cells(df, m, by=keys).set_index(keys) for m in metrics}
    val = primary.replace("test_", "val_", 1)
    val_med = df.groupby(keys)[val].median() if val in df.columns and val != primary else None
    cost = df.groupby(keys).agg(
        n_train=("n_train", "median"), epochs=("epochs_run", "median"), wall=("wall_time_s", "sum")
    )
    name = METRICS.get(primary, primary.removeprefix("test_").replace("_", " "))
    header = ["model", "policy", "real fraction", "seeds", f"<b>{escape(name)}</b> (primary)"]
    header += ["validation (median)"] if val_med is not None else []
    header += [METRICS.get(m, m) for m in metrics[1:]]
    head = "".join(f"<th>{h}</th>" for h in header)
    rows, cost_rows = [], []
    for key in ordered_keys(df, baseline):
        model, policy, fraction = key
        cells = [escape(model), escape(policy_name(policy)), f"{fraction:g}", str(int(parts[primary].loc[key, "n"]))]
        for i, m in enumerate(metrics):
            r = parts[m].loc[key]
            cells.append(_fmt_ci(r["median"], r["ci_low"], r["ci_high"]))
            if i == 0 and val_med is not None:
                cells.append(f"{val_med.loc[key]:.3f}")
        c = cost.loc[key]
        cost_rows.append([escape(model), escape(policy_name(policy)), f"{fraction:g}", f"{c['n_train']:.0f}",
                          f"{c['epochs']:.0f}", f"{c['wall']:.0f}"])  # fmt: skip
        rows.append("<tr>" + "".join(f"<td{NAME if i == 1 else ''}>{x}</td>" for i, x in enumerate(cells)) + "</tr>")
    note = (
        "<p class='muted'>Median over seeds with a percentile-bootstrap 95% CI of the median, on the test split; "
        "the validation column is the median on each cell's validation split (a large gap to test is itself a "
        "finding: leakage between training and validation, or a validation split too small to select on).</p>"
    )
    cost_head = "".join(f"<th>{h}</th>" for h in ["model", "policy", "real fraction", "training images (median)",
                                                     "epochs run (median)", "wall time, all seeds (s)"])  # fmt: skip
    cost_body = "".join(
        "<tr>" + "".join(f"<td{NAME if i == 1 else ''}>{x}</td>" for i, x in enumerate(r)) + "</tr>" for r in cost_rows
    )
    cost_table = f"<table><tr>{cost_head}</tr>{cost_body}</table>"
    cost_html = f"<details><summary>Training cost per cell</summary>{cost_table}</details>"
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{note}{cost_html}"


def strip_plots(df: pd.DataFrame, metric: str = "test_balanced_accuracy") -> str:
    """One panel per (model, real fraction): every seed's value per policy, with the median."""
    groups = list(df.groupby(["model", "real_fraction"], sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups) + 1, 3.2), squeeze=False, sharey=True)
    for ax, ((model, frac), g) in zip(axes[0], groups, strict=True):
        policies = sorted(g["policy"].unique())
        for i, p in enumerate(policies):
            v = g.loc[g["policy"] == p, metric].to_numpy()
            ax.boxplot(v, positions=[i], widths=0.5, showfliers=False)
            ax.scatter(np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), v, s=14, alpha=0.8, zorder=3)
        ax.set_xticks(range(len(policies)), [policy_name(p) for p in policies], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{model}, real fraction {frac:g}", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel(METRICS.get(metric, metric))
    return to_data_uri(fig)


def efficiency_curve(df: pd.DataFrame, metric: str = "test_balanced_accuracy") -> str | None:
    """Metric vs real fraction, one line per policy (median over seeds, CI as a band)."""
    if df["real_fraction"].nunique() < 2:
        return None
    s = summarize_cells(df, metric, by=["model", "policy", "real_fraction"])
    models = sorted(s["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models) + 1, 3.2), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models, strict=True):
        for policy, g in s[s["model"] == model].groupby("policy"):
            g = g.sort_values("real_fraction")
            ax.plot(g["real_fraction"], g["median"], marker="o", label=policy)
            ax.fill_between(g["real_fraction"], g["ci_low"], g["ci_high"], alpha=0.15)
        ax.set_xlabel("real fraction of the training split")
        ax.set_title(model, fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel(METRICS.get(metric, metric))
    axes[0][-1].legend(fontsize=7, frameon=False, loc="lower right")
    return to_data_uri(fig)


AMOUNT_KEYS = ("y", "per_class", "fill")  # how many synthetic images: the x of the ratio plot


def _line_of(spec_json: str) -> str:
    """A policy without its amount (y, per_class, fill): the line it belongs to in the ratio plot."""
    specs = [{**s, "params": {k: v for k, v in s.get("params", {}).items() if k not in AMOUNT_KEYS}}
             for s in json.loads(spec_json)]  # fmt: skip
    return policies_label(as_specs(specs)) if specs else "none"


def ratio_curve(df: pd.DataFrame, metric: str = "test_balanced_accuracy") -> str | None:
    """Metric vs the added:real image ratio, one line per policy differing only in its amount
    (median over seeds, bootstrap CI as a band; the baseline as a dashed line). None when no
    policy was run at two or more amounts."""
    if "policy_spec" not in df.columns or not {"n_train", "n_real"} <= set(df.columns):
        return None
    d = df.assign(ratio=(df["n_train"] - df["n_real"]) / df["n_real"], line=df["policy_spec"].map(_line_of))
    s = summarize_cells(d, metric, by=["model", "real_fraction", "line", "policy"])
    ratios = d.groupby(["model", "real_fraction", "policy"])["ratio"].mean()
    s["ratio"] = [ratios[(m, f, p)] for m, f, p in zip(s["model"], s["real_fraction"], s["policy"], strict=True)]
    swept = [ln for ln, g in s.groupby("line") if ln != "none" and g["ratio"].round(3).nunique() >= 2]
    if not swept:
        return None
    panels = list(s.groupby(["model", "real_fraction"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1, 3.4), squeeze=False, sharey=True)
    for ax, ((model, frac), g) in zip(axes[0], panels, strict=True):
        base = g[g["line"] == "none"]
        if len(base):
            b = base.iloc[0]
            ax.axhline(b["median"], color="grey", ls="--", lw=1, label="none")
            ax.axhspan(b["ci_low"], b["ci_high"], color="grey", alpha=0.1)
        for line in swept:
            pts = g[g["line"] == line].sort_values("ratio")
            err = [pts["median"] - pts["ci_low"], pts["ci_high"] - pts["median"]]
            ax.errorbar(pts["ratio"], pts["median"], yerr=err, marker="o", capsize=3, label=policy_name(line))
        ax.set_xlabel("added images : real images")
        ax.set_title(f"{model}, real fraction {frac:g}", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel(METRICS.get(metric, metric))
    axes[0][-1].legend(fontsize=7, frameon=False, loc="best")
    return to_data_uri(fig)


def paired_table(df: pd.DataFrame, baseline: str) -> str:
    """Each policy minus the baseline, paired by seed, for each model and real fraction."""
    out = []
    for metric, name in METRICS.items():
        p = paired_comparison(df, metric, baseline=baseline)
        if p.empty:
            return f"<p class='warn'>No cells with the baseline policy '{escape(baseline)}' to compare against.</p>"
        rows = "".join(
            f"<tr><td>{escape(r.model)}</td><td>{r.real_fraction:g}</td>"
            f"<td{NAME}>{escape(policy_name(r.policy))}</td><td>{r.n_pairs}</td>"
            f"<td>{r.mean_diff:+.3f}</td><td>[{r.ci_low:+.3f}, {r.ci_high:+.3f}]</td><td>{r.wins}/{r.n_pairs}</td>"
            f"<td>{r.wilcoxon_p:.3g}</td></tr>"
            for r in p.itertuples()
        )
        head = "<tr><th>model</th><th>real fraction</th><th>policy</th><th>pairs</th><th>mean difference</th>"
        head += "<th>95% CI</th><th>wins</th><th>Wilcoxon p</th></tr>"
        out.append(f"<h3>{name} minus baseline ({escape(baseline)})</h3><table>{head}{rows}</table>")
    note = (
        "<p class='muted'>Differences are paired by seed (same real subset and validation split). With few seeds "
        "the Wilcoxon test cannot reach small p-values (3 seeds: p ≥ 0.25); read the CI.</p>"
    )
    return "".join(out) + note


def per_class_f1(df: pd.DataFrame) -> str:
    cols = [c for c in df.columns if c.startswith("test_f1_")]
    med = df.groupby(["model", "policy", "real_fraction"])[cols].median()
    head = "".join(f"<th>{escape(h)}</th>" for h in ["model", "policy", "real fraction", *(c[8:] for c in cols)])
    rows = "".join(
        "<tr>"
        + f"<td>{escape(str(key[0]))}</td><td{NAME}>{escape(policy_name(str(key[1])))}</td><td>{key[2]:g}</td>"
        + "".join(f"<td>{v:.3f}</td>" for v in r)
        + "</tr>"
        for key, r in zip(med.index, med.to_numpy(), strict=True)
    )
    return f"<table><tr>{head}</tr>{rows}</table><p class='muted'>Median F1 per class over seeds.</p>"


def confusion_figure(df: pd.DataFrame, run: RunDir) -> str | None:
    """Confusion matrices summed over seeds, at the largest real fraction, one panel per (model, policy)."""
    top = df[df["real_fraction"] == df["real_fraction"].max()]
    panels = []
    for (model, policy), g in top.groupby(["model", "policy"], sort=True):
        mats = [pd.read_csv(run.classifier_dir(cid) / CONFUSION, index_col=0) for cid in g["cell_id"]]
        mats = [m for m in mats if m is not None]
        if mats:
            panels.append((f"{model}\n{policy_name(policy)}", sum(m.to_numpy() for m in mats), list(mats[0].columns)))
    if not panels:
        return None
    per_row = min(4, len(panels))  # at most four legible panels across the page
    n_rows = -(-len(panels) // per_row)
    fig, axes = plt.subplots(n_rows, per_row, figsize=(3.1 * per_row, 3.3 * n_rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (title, mat, names) in zip(axes.flat, panels, strict=False):
        norm = mat / np.maximum(mat.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j, i, int(mat[i, j]), ha="center", va="center", fontsize=7, color="k" if norm[i, j] < 0.6 else "w"
                )
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("true", fontsize=7)
    fig.tight_layout()
    return to_data_uri(fig)


def training_curves(df: pd.DataFrame, run: RunDir) -> str | None:
    """Validation loss per epoch for the first seed of every (model, policy) at the largest fraction."""
    top = df[(df["real_fraction"] == df["real_fraction"].max()) & (df["seed"] == df["seed"].min())]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    drawn = 0
    for r in top.sort_values(["model", "policy"]).itertuples():
        hist = run.classifier_dir(str(r.cell_id)) / HISTORY
        if hist.exists():
            h = pd.read_csv(hist)
            ax.plot(h["epoch"], h["val_loss"], label=f"{r.model} {policy_name(str(r.policy))}")
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss")
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return to_data_uri(fig)
