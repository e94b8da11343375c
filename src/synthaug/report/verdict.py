"""The report's first section: the answer to the study's question, on one primary metric.

Per model and real fraction: the best approach, and each synthetic approach against the
baseline (``study.baseline``, normally no augmentation) *and* against the best classical
approach, as paired differences over the same seeds with bootstrap CIs, in a sentence and a
forest plot; then what the number of seeds can and cannot show.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from html import escape

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from synthaug.config import ConfigError, SynthaugConfig, load_config
from synthaug.config.policies import FromBank, PolicySpec, policy_params
from synthaug.io import read_json
from synthaug.metrics.stats import higher_is_better, paired_comparison, summarize_cells
from synthaug.report.figures import to_data_uri
from synthaug.report.markup import figure, num, policy_name
from synthaug.report.trust import judge_at_chance
from synthaug.rundir import CONFUSION, RunDir, cell_key, parse_cell_key

METRIC_NAMES = {
    "test_accuracy": "test accuracy",
    "test_balanced_accuracy": "test balanced accuracy",
    "test_macro_f1": "test macro-F1",
    "test_cross_entropy": "test cross-entropy",
    "test_auroc_macro": "test AUROC (macro)",
}
IMBALANCE = 1.5  # largest / smallest test class at or above this: the default metric is macro-F1
MIN_CLASS_F1 = 0.1  # a class whose median test F1 is below this is (nearly) never predicted
JUDGE_MARGIN = 0.05  # a judge whose balanced accuracy is within this of chance has learnt nothing
FID_FACTOR = 3.0  # a bank whose FID is this many times the real-vs-real yardstick is far from real images
MIN_KEPT = 0.1  # a confidence filter keeping less than this share of a class's bank images starves it
MIN_SEEDS = 6  # the fewest paired seeds with which a two-sided Wilcoxon p can fall below 0.05


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def test_class_counts(run: RunDir, df: pd.DataFrame) -> np.ndarray | None:
    """Test images per class, from a cell's confusion matrix (rows are true classes)."""
    for cid in df["cell_id"]:
        path = run.classifier_dir(str(cid)) / CONFUSION
        if path.exists():
            return pd.read_csv(path, index_col=0).to_numpy().sum(axis=1)
    return None


def primary_metric(cfg: SynthaugConfig, run: RunDir, df: pd.DataFrame) -> tuple[str, str]:
    """(metric column, why it was chosen)."""
    chosen = cfg.report.metric
    if chosen != "auto":
        return chosen, "set in the config (report.metric)"
    counts = test_class_counts(run, df)
    if counts is not None and counts.min() > 0 and counts.max() / counts.min() >= IMBALANCE:
        return "test_macro_f1", (
            f"the test split is imbalanced (largest class {int(counts.max())} images, smallest {int(counts.min())}): "
            "macro-F1 weighs every class equally, where accuracy would mostly reflect the large classes"
        )
    return "test_accuracy", "the test split is balanced (largest class < 1.5 × the smallest), so accuracy is fair"


def policy_kind(spec_json: str) -> str:
    """'none', 'synthetic' (draws from a generator's bank) or 'classical'."""
    specs = [PolicySpec.model_validate(s) for s in json.loads(spec_json)]
    specs = [s for s in specs if s.name != "none"]
    if not specs:
        return "none"
    return "synthetic" if any(isinstance(policy_params(s), FromBank) for s in specs) else "classical"


@dataclass(frozen=True)
class Comparison:
    policy: str
    against: str
    mean: float
    low: float
    high: float
    wins: int
    pairs: int
    p: float

    def reading(self, higher: bool) -> str:
        if np.isnan(self.low) or self.pairs < 2:
            return f"not comparable with {escape(policy_name(self.against))} (fewer than two paired seeds)"
        better = self.low > 0 if higher else self.high < 0
        worse = self.high < 0 if higher else self.low > 0
        if better:
            return f"<b>better than {escape(policy_name(self.against))}</b>"
        if worse:
            return f"<b>worse than {escape(policy_name(self.against))}</b>"
        return f"no clear difference from {escape(policy_name(self.against))}"

    def text(self) -> str:
        return (
            f"Δ {num(self.mean, '+.3f')} [{num(self.low, '+.3f')}, {num(self.high, '+.3f')}], "
            f"{self.wins}/{self.pairs} seeds better, Wilcoxon p {num(self.p, '.2g')}"
        )


def _compare(group: pd.DataFrame, metric: str, policy: str, against: str) -> Comparison | None:
    two = group[group["policy"].isin([policy, against])]
    if against not in set(two["policy"]):
        return None  # the baseline arm is not in this study (an arm run in its own run directory)
    rows = paired_comparison(two, metric, baseline=against)
    rows = rows[rows["policy"] == policy]
    if rows.empty:
        return None
    r = rows.iloc[0]
    return Comparison(policy, against, float(r["mean_diff"]), float(r["ci_low"]), float(r["ci_high"]),
                      int(r["wins"]), int(r["n_pairs"]), float(r["wilcoxon_p"]))  # fmt: skip


def _seeds_note(n: int) -> str:
    smallest = 2.0 / 2**n if n > 0 else float("nan")
    if n < MIN_SEEDS:
        return (
            f"{n} seed(s) per approach: the smallest two-sided Wilcoxon p that {n} paired seeds allow is "
            f"{smallest:.2g}, so no difference can reach p < 0.05 here; read the CIs as effect sizes and the "
            "wins as a direction, and add seeds (at least 6, better 10) to test."
        )
    return (
        f"{n} seeds per approach: Wilcoxon p-values can go down to {smallest:.2g}; a CI that excludes zero and "
        "p < 0.05 together are evidence of a difference on this data and budget."
    )


def warnings(run: RunDir, df: pd.DataFrame) -> list[tuple[str, str]]:
    """(what it means and what to do, the section it concerns) for every problem a reader must see."""
    out: list[tuple[str, str]] = []
    keys = ["model", "real_fraction", "policy"]
    for col in sorted(c for c in df.columns if c.startswith("test_f1_")):
        med = df.groupby(keys)[col].median()
        low = med[med < MIN_CLASS_F1]
        if len(low):
            cls = col.removeprefix("test_f1_")
            where = ", ".join(f"{m} f{f:g} {p}" for m, f, p in low.index[:4]) + (" …" if len(low) > 4 else "")
            out.append((
                f"Class '{cls}': median test F1 below {MIN_CLASS_F1} in {len(low)} of {len(med)} approaches ({where}): "
                "the classifiers (almost) never predict it, and accuracy hides that. Look at the confusion matrices; "
                "try train.class_weights, a balance policy, or more images of this class.", "per-class"))  # fmt: skip
    seeds = int(df.groupby(keys)["seed"].nunique().min())
    if seeds < MIN_SEEDS:
        out.append((
            f"{seeds} seed(s) per approach: too few for a significance test (a two-sided Wilcoxon test needs "
            f"{MIN_SEEDS} paired seeds to reach p < 0.05). Add seeds (study.seeds) before calling a difference real.",
            "summary"))  # fmt: skip
    if run.audit.exists():
        lf = read_json(run.audit).get("leakage_filter", {})
        if lf.get("removed_test_images"):
            out.append((
                f"{lf['removed_test_images']} test images duplicated training images and were removed from evaluation "
                f"({lf.get('test_images_kept')} kept): published figures on this data that kept them are optimistic, "
                "and the class balance of the test split changed.", "audit"))  # fmt: skip
    if run.quality.exists():
        out += _quality_warnings(read_json(run.quality), _filter_thresholds(run))
    return out


def _filter_thresholds(run: RunDir) -> set[tuple[str, float]]:
    """(generator, τ) of every policy of the study that keeps images with judge confidence ≥ τ."""
    try:
        cfg = load_config(run.config)
    except (ConfigError, ValueError, OSError):
        return set()
    used = set()
    for spec in cfg.study.all_specs():
        params = policy_params(spec)
        if isinstance(params, FromBank) and getattr(params, "min_confidence", None) is not None:
            used.add((params.gen, float(params.min_confidence)))  # type: ignore[arg-type]
    return used


def _quality_warnings(q: dict, thresholds: set[tuple[str, float]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    yardstick: dict[str, float] = {}
    for key, cell in q.get("cells", {}).items():
        fraction, seed = parse_cell_key(key)
        test = cell["judge"]["test"]
        chance = 1.0 / max(1, len(test.get("per_class", {})))
        if judge_at_chance(cell["judge"], JUDGE_MARGIN):
            out.append((
                f"The judge of real fraction {fraction:g}, seed {seed} is at chance (balanced accuracy "
                f"{test['balanced_accuracy']:.2f}, chance {chance:.2f}): its features have not learnt the classes, so "
                "that cell's FID, precision, recall and filter scores are uninformative. Train it longer "
                "(quality.judge) or read the figures of a larger real fraction.", "quality"))  # fmt: skip
        for ref in cell.get("real_train_vs_real_test", {}).values():
            yardstick[key] = float(ref["overall"]["fid"])
    collapsed: dict[str, list[str]] = {}
    far: dict[str, list[tuple[float, float]]] = {}
    cells: dict[str, int] = {}
    for b in q.get("banks", []):
        key, name = cell_key(b["fraction"], b["seed"]), b["bank"]
        cells[name] = cells.get(name, 0) + 1
        for roles in b["quality"].values():
            o = roles.get("vs_test", next(iter(roles.values())))["overall"]
            recall, fid, ref = o.get("recall"), o.get("fid"), yardstick.get(key)
            if recall is not None and recall < 0.05:
                collapsed.setdefault(name, []).append(f"fraction {b['fraction']:g}, seed {b['seed']}: {recall:.2f}")
            elif fid is not None and ref and fid > FID_FACTOR * ref:
                far.setdefault(name, []).append((fid, ref))
            break
        out += _filter_warnings(b, thresholds)
        out += _exposure_warning(b, float(q.get("settings", {}).get("percentile", 1.0)))
    for name, where in collapsed.items():
        out.append((
            f"Bank {name} covers almost none of the real images in {len(where)} of {cells[name]} cells (recall "
            f"{'; '.join(where)}): its images sit on a few spots of the real distribution (collapse or noise). "
            "Check its sample grid before reading its classifier results.", "quality"))  # fmt: skip
    for name, pairs in far.items():
        fids, refs = [f for f, _ in pairs], [r for _, r in pairs]
        out.append((
            f"Bank {name} is far from the real images in {len(pairs)} of {cells[name]} cells: FID "
            f"{min(fids):.1f}–{max(fids):.1f} against {min(refs):.1f}–{max(refs):.1f} for real test vs real training "
            f"images (more than {FID_FACTOR:g}×). Its images are recognisably not real ones to the judge; train the "
            "generator longer or check its samples before trusting what it adds.", "quality"))  # fmt: skip
    return out


def _exposure_warning(bank: dict, pct: float) -> list[tuple[str, str]]:
    t = bank.get("test_exposure")
    if not t or (t["flagged_share"] <= 2 * pct / 100 and not t["exact_copies"]):
        return []
    return [(
        f"Bank {bank['bank']} (fraction {bank['fraction']:g}, seed {bank['seed']}) was made outside this study, and "
        f"{100 * t['flagged_share']:.1f}% of its images sit closer to a real test image than independent real images "
        f"do ({t['exact_copies']} exact copies; independent images: at most {2 * pct:g}%). The generator that made "
        "them may have seen this study's test images, which would inflate every result that uses them.",
        "memorization")]  # fmt: skip


def _filter_warnings(bank: dict, thresholds: set[tuple[str, float]]) -> list[tuple[str, str]]:
    """A confidence filter a policy uses that keeps almost nothing of a class changes what the policy adds."""
    totals = bank.get("class_counts", {})
    out = []
    for tau, kept in bank.get("filtering", {}).get("min_confidence", {}).items():
        if (bank["bank"], float(tau)) not in thresholds:
            continue
        starved = [f"{c} {k} of {totals[c]}" for c, k in kept.items() if totals.get(c) and k < MIN_KEPT * totals[c]]
        if starved:
            out.append((
                f"Filtering bank {bank['bank']} (fraction {bank['fraction']:g}, seed {bank['seed']}) at judge "
                f"confidence ≥ {tau} keeps almost nothing of {', '.join(starved)}: a policy with "
                f"min_confidence={tau} adds mostly the other classes' images. Lower the threshold or improve "
                "the generator for those classes.",
                "filtering"))  # fmt: skip
    return out


def verdict(run: RunDir, df: pd.DataFrame, cfg: SynthaugConfig) -> str:
    metric, why = primary_metric(cfg, run, df)
    if metric not in df.columns:
        return f"<p class='warn'>report.metric {escape(metric)!s} is not a recorded metric.</p>"
    higher = higher_is_better(metric)
    baseline = cfg.study.baseline
    kinds = {p: policy_kind(s) for p, s in df.groupby("policy")["policy_spec"].first().items()}
    keys = ["model", "real_fraction", "policy"]
    summary = summarize_cells(df, metric, by=keys).set_index(keys)
    problems = warnings(run, df)
    parts = []
    if problems:
        listed = "".join(f"<li>{escape(text)} <a href='#{sid}'>(section)</a></li>" for text, sid in problems)
        parts.append(f"<div class='warn'><b>Warnings ({len(problems)})</b><ul>{listed}</ul></div>")
    parts += [
        f"<p>Primary metric: <b>{escape(metric_name(metric))}</b> ({'higher' if higher else 'lower'} is better) — "
        f"{escape(why)}. Δ: mean paired difference over the same seeds [paired-bootstrap 95% CI].</p>"
    ]
    forest: list[tuple[str, list[tuple[str, Comparison]]]] = []
    for (model, fraction), group in df.groupby(["model", "real_fraction"], sort=True):
        med = {p: float(summary.loc[(model, fraction, p), "median"]) for p in group["policy"].unique()}
        best = (max if higher else min)(med, key=lambda p: med[p])
        classical = [p for p in med if kinds.get(p) == "classical"]
        best_classical = (max if higher else min)(classical, key=lambda p: med[p]) if classical else None
        n = int(group.groupby("policy")["seed"].nunique().min())
        title = f"{model}, real fraction {fraction:g}"
        said_best = f"{escape(metric_name(metric))} median {num(med[best])}"
        said_best += f"; {escape(policy_name(baseline))}: {num(med.get(baseline))}"
        if best_classical:
            said_best += f"; best classical, {escape(policy_name(best_classical))}: {num(med[best_classical])}"
        best_name = escape(policy_name(best))
        items = [f"<p><b>{escape(title)}</b> ({n} seeds): best approach <b>{best_name}</b> ({said_best}).</p><ul>"]
        rows: list[tuple[str, Comparison]] = []
        for policy in sorted(p for p in med if p != baseline):
            against = [baseline]
            if kinds.get(policy) == "synthetic" and best_classical:
                against.append(best_classical)
            found = [c for a in against if (c := _compare(group, metric, policy, a)) is not None]
            if not found:
                continue
            rows += [(policy, c) for c in found]
            said = "; ".join(f"{c.reading(higher)} ({c.text()})" for c in found)
            items.append(f"<li>{escape(policy_name(policy))} [{kinds.get(policy, '?')}]: {said}</li>")
        items.append("</ul>")
        parts += items
        forest.append((title, rows))
        if n < MIN_SEEDS:
            parts.append(f"<p class='muted'>{escape(_seeds_note(n))}</p>")
    plot = forest_plot(forest, metric_name(metric), higher, baseline)
    if plot:
        parts.append(figure(plot, "Paired differences with 95% CIs: each approach against the baseline (circles) "
                                  "and synthetic approaches against the best classical one (squares)."))  # fmt: skip
    return "".join(parts)


def forest_plot(
    panels: list[tuple[str, list[tuple[str, Comparison]]]], metric: str, higher: bool, baseline: str
) -> str | None:
    panels = [(t, rows) for t, rows in panels if rows]
    if not panels:
        return None
    height = max(len(rows) for _, rows in panels)
    per_row = min(2, len(panels))  # two panels across at most, with room for the approaches' names
    n_rows = -(-len(panels) // per_row)
    fig, axes = plt.subplots(n_rows, per_row, figsize=(9.5, (0.5 * height + 1.3) * n_rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (title, rows) in zip(axes.flat, panels, strict=False):
        for y, (_, c) in enumerate(rows):
            marker = "o" if c.against == baseline else "s"
            good = (c.low > 0) if higher else (c.high < 0)
            bad = (c.high < 0) if higher else (c.low > 0)
            color = "#1a7f37" if good else "#b42318" if bad else "#555"
            ax.errorbar(c.mean, y, xerr=[[c.mean - c.low], [c.high - c.mean]], fmt=marker, color=color, capsize=3)
        ax.axvline(0, color="#999", lw=1)
        labels = [textwrap.fill(f"{policy_name(p)} vs {policy_name(c.against)}", 34) for p, c in rows]
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"Δ {metric}", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return to_data_uri(fig)
