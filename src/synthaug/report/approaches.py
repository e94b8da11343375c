"""The report's table of approaches, in the form of the published studies' summary tables
(approach, loss, optimiser, finding), with medians, CIs and paired differences as the finding."""

from __future__ import annotations

import json
from html import escape

import pandas as pd

from synthaug.config import SynthaugConfig
from synthaug.config.policies import PolicySpec, describe
from synthaug.metrics.stats import paired_comparison, summarize_cells
from synthaug.report.markup import num, policy_name


def _generators(specs: list[PolicySpec], cfg: SynthaugConfig) -> list[tuple[str, str, str]]:
    """(generator, loss, optimiser) for each generator the policy combination draws from."""
    by_name = {g.name: g for g in cfg.study.generators}
    out = []
    for spec in specs:
        name = spec.params.get("gen")
        if isinstance(name, str) and name in by_name:
            g = by_name[name]
            loss, optimiser = g.objective()
            if cfg.study.generator_pool == "unlabelled_rest" and g.unlabelled and g.mode == "conditional":
                loss += "; the rest of the training split joins as unlabelled images (null class)"
                if g.pool_steps:
                    loss += (f"; pretrained once for {g.pool_steps} steps on every training image no cell "
                             "validates on, without labels, then fine-tuned per cell")  # fmt: skip
            out.append((f"{name} ({g.family}, {g.mode.replace('_', ' ')})", loss, optimiser))
    return out


def classifier_line(cfg: SynthaugConfig) -> str:
    t = cfg.train
    loss = "class-weighted cross-entropy" if t.class_weights else "cross-entropy"
    stop = f", early stopping after {t.patience} epochs without a lower validation loss" if t.patience else ""
    return (
        f"Classifiers ({', '.join(m.label() for m in cfg.study.models)}): {loss}, {t.optimizer} (lr {t.lr:g}), "
        f"{t.scheduler} LR schedule, batch {t.batch_size}, at most {t.epochs} epochs{stop}."
    )


def _finding(summary: pd.Series | None, paired: pd.Series | None) -> str:
    """HTML: the median [CI], and on a second line the paired difference to the baseline."""
    if summary is None:
        return "–"
    text = f"{num(summary['median'])} [{num(summary['ci_low'])}, {num(summary['ci_high'])}]"
    if paired is not None:
        text += (
            f"<br>Δ {num(paired['mean_diff'], '+.3f')} [{num(paired['ci_low'], '+.3f')}, "
            f"{num(paired['ci_high'], '+.3f')}], {paired['wins']}/{paired['n_pairs']} wins"
        )
    return text


def approaches_table(df: pd.DataFrame, cfg: SynthaugConfig, metric: str = "test_accuracy") -> str:
    """One row per (model, policy combination): what it does, what its generators optimise, and
    per real fraction the median of ``metric`` [95% CI] and the paired difference to the baseline."""
    keys = ["model", "policy", "real_fraction"]
    summary = summarize_cells(df, metric, by=keys).set_index(keys)
    paired = paired_comparison(df, metric, baseline=cfg.study.baseline)
    paired = paired.set_index(keys) if not paired.empty else paired
    fractions = sorted(df["real_fraction"].unique())
    head = ["model", "approach", "generator", "generator loss", "generator optimiser"]
    name = metric.removeprefix("test_").replace("_", " ").replace("macro f1", "macro-F1")
    head += [f"test {name} at real fraction {f:g}" for f in fractions]
    rows = []
    order = {p: (p != cfg.study.baseline, i) for i, p in enumerate(df["policy"].unique())}  # baseline, then as run
    grouped = df.groupby(["model", "policy", "policy_spec"], sort=False)
    groups = sorted(grouped, key=lambda kv: (kv[0][0], order[kv[0][1]]))
    for (model, policy, spec_json), _ in groups:
        specs = [PolicySpec.model_validate(s) for s in json.loads(spec_json)]
        gens = _generators(specs, cfg)
        cells = [escape(str(c)) for c in (model, f"{policy_name(policy)}: {describe(specs)}")]
        cells += [escape("; ".join(g[i] for g in gens) or "–") for i in range(3)]
        for f in fractions:
            key = (model, policy, f)
            s = summary.loc[key] if key in summary.index else None
            p = paired.loc[key] if not paired.empty and key in paired.index else None
            cells.append(_finding(s, p))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    note = (
        f"<p class='muted'>{escape(classifier_line(cfg))} Finding: median test {escape(name)} over seeds "
        "[bootstrap 95% CI]; "
        f"Δ: mean paired difference to '{escape(cfg.study.baseline)}' over the same seeds [paired-bootstrap 95% CI] "
        "and the number of seeds on which the approach was better.</p>"
    )
    return f"<table class='text'><tr>{header}</tr>{''.join(rows)}</table>{note}"
