"""Where a study's time went: wall time per stage (``RUN/timings.json``) and, per kind of task, how
many tasks ran, their median and total seconds and the core-minutes they used (``RUN/executor/tasks.jsonl``;
seconds x torch threads, ``--threads`` for runs logged before tasks recorded their threads).

    python benchmarks/study_stages.py runs/bt10-pool [--threads 1] [--markdown]

Prints one table per run directory. The generator tasks named ``... pool`` (pretraining on the shared
unlabelled pool, once per study) are listed apart from the per-cell fits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def read_tasks(run: Path, threads: int) -> pd.DataFrame:
    """``RUN/executor/tasks.jsonl``, one row per task, with ``threads`` filled in (``threads`` for tasks
    logged before they recorded it) and ``core_min``.

    The log has a line per *finished* try. A task logged twice ran again on a later invocation — a study
    resumed or grown into the same run directory reruns its quality tasks, which then find their results
    on disk and finish in a second — so a task's tries are added up: keeping only the last one would book
    the cached rerun's second instead of the work.
    """
    log = run / "executor" / "tasks.jsonl"
    tasks = pd.read_json(log, lines=True) if log.exists() else pd.DataFrame(columns=["kind", "task", "seconds"])
    if "threads" not in tasks:
        tasks["threads"] = threads
    tasks["threads"] = tasks["threads"].fillna(threads)
    tasks["core_min"] = tasks["seconds"] * tasks["threads"] / 60
    totals = tasks.groupby(["kind", "task"], sort=False)[["seconds", "core_min"]].sum()
    last = tasks.drop_duplicates(subset=["kind", "task"], keep="last").drop(columns=["seconds", "core_min"])
    return last.merge(totals, left_on=["kind", "task"], right_index=True, how="left").reset_index(drop=True)


def stage_table(run: Path, threads: int) -> pd.DataFrame:
    timings = json.loads((run / "timings.json").read_text())
    stages = {k: v for k, v in timings.items() if not k.startswith("_")}
    tasks = read_tasks(run, threads)
    tasks["what"] = tasks["kind"]
    tasks.loc[tasks["task"].str.endswith(" pool"), "what"] = "generator (pool, once)"
    kind_of_stage = {"generators": "generator", "banks": "bank", "quality": "quality", "classifiers": "classifier",
                     "explain": "explain"}  # fmt: skip
    rows = []
    for stage, entry in stages.items():
        row = {"stage": stage, "wall_min": entry["seconds"] / 60}
        kind = kind_of_stage.get(stage)
        for what, group in tasks[tasks["kind"] == kind].groupby("what") if kind else []:
            rows.append(row | {"tasks": what, "n": len(group), "median_task_min": group["seconds"].median() / 60,
                               "core_min": float(group["core_min"].sum())})  # fmt: skip
            row = {"stage": "", "wall_min": float("nan")}
        if row.get("stage"):
            rows.append(row | {"tasks": "", "n": 0, "median_task_min": float("nan"), "core_min": float("nan")})
    out = pd.DataFrame(rows)
    total = {"stage": "total", "wall_min": sum(e["seconds"] for e in stages.values()) / 60, "tasks": "",
             "n": int(out["n"].sum()), "median_task_min": float("nan"), "core_min": out["core_min"].sum()}  # fmt: skip
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)


def markdown(table: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, cells as they are (format them first)."""
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per task where the log has none")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    for run in args.runs:
        table = stage_table(run, args.threads)
        print(f"\n{run}")
        fmt = {"wall_min": "{:.1f}", "median_task_min": "{:.2f}", "core_min": "{:.1f}"}
        for col, f in fmt.items():
            table[col] = table[col].map(lambda v, f=f: "" if pd.isna(v) else f.format(v))
        if args.markdown:
            print(markdown(table))
        else:
            print(table.to_string(index=False))


if __name__ == "__main__":
    main()
