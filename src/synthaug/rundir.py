"""The run directory: the one place that names every artifact path and every cell folder.

    RUN_DIR/config.yaml, environment.yaml, timings.json     what ran, with which versions, how long
    RUN_DIR/audit.json, splits.json                          the data audit and every cell's split
    RUN_DIR/figures/real_grid.png                            real training images per class
    RUN_DIR/generators/<name>/f<fraction>_s<seed>/           generator.pt, trained_on.json (that cell's subset)
    RUN_DIR/banks/<bank>/f<fraction>_s<seed>/                manifest.parquet, complete.json, scores.parquet,
                                                             quality.json, closest_pairs.png (<bank> = <name>
                                                             or <name>-variation)
    RUN_DIR/judges/f<fraction>_s<seed>/                      the cell's judge classifier, reference.json, tstr/<bank>/
    RUN_DIR/quality.json                                     every bank's quality, memorization and TSTR
    RUN_DIR/classifiers/<cell id>/                           metrics.json (last), best.pt, history.csv, confusion.csv
    RUN_DIR/results.parquet                                  one row per classifier cell
    RUN_DIR/statistics/summary.csv, paired.csv               medians, CIs, paired comparisons
    RUN_DIR/explain/cams.json, *.png                         Grad-CAM real vs synthetic
    RUN_DIR/report.html                                      the report

Light on purpose (no torch): the report and the CLI read run directories through it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from synthaug.config import ConfigError, SynthaugConfig, dump_config, load_config
from synthaug.config.generators import upgrade_generator_dict
from synthaug.config.growth import growth
from synthaug.config.policies import PolicySpec, as_specs, policies_json, policies_label, policy_slug
from synthaug.io import atomic_path, read_json, write_json, write_text

MANIFEST = "manifest.parquet"  # a bank's table of images
SCORES = "scores.parquet"  # a bank's judge confidences and memorization flags
BANK_QUALITY = "quality.json"  # a bank's cached quality figures
PAIRS_PNG = "closest_pairs.png"  # a bank's closest synthetic / training pairs
BANK_COMPLETE = "complete.json"
GENERATOR = "generator.pt"
TRAINED_ON = "trained_on.json"
CELL_METRICS = "metrics.json"  # a classifier cell is complete when this exists (written last)
BEST = "best.pt"
HISTORY = "history.csv"
CONFUSION = "confusion.csv"
VARIATION_SUFFIX = "-variation"
JUDGES = "judges"
_CELL = re.compile(r"^f(?P<fraction>[0-9.e-]+)_s(?P<seed>-?\d+)$")


def cell_key(fraction: float, seed: int) -> str:
    """Folder name of a (real fraction, seed) cell: ``f0.5_s0``."""
    return f"f{fraction:g}_s{seed}"


def parse_cell_key(key: str) -> tuple[float, int]:
    m = _CELL.match(key)
    if m is None:
        raise ValueError(f"'{key}' is not a cell folder name like f0.5_s0")
    return float(m["fraction"]), int(m["seed"])


def bank_name(generator: str, variation: bool = False) -> str:
    return generator + VARIATION_SUFFIX if variation else generator


def normalize_policies(policies: Sequence[PolicySpec | str | dict[str, Any]]) -> list[PolicySpec]:
    """Specs without ``none`` entries: ``[]`` and ``[none]`` are the same (baseline) cell."""
    return [s for s in as_specs(list(policies)) if s.name != "none"]


def cell_id(model: str, policies: Sequence[PolicySpec | str | dict[str, Any]], fraction: float, seed: int) -> str:
    """Stable folder-safe id of a classifier cell, e.g. ``cnn__classical-p=0.2+basic__f0.5__s0``.

    Long or sanitised policy parts are shortened and suffixed with a hash of the canonical spec
    JSON, so two different cells never share an id.
    """
    specs = normalize_policies(policies)
    slug = policy_slug(specs)
    if len(slug) > 60 or slug != policies_label(specs).replace("(", "-").replace(")", "").replace(",", "-"):
        digest = hashlib.sha1(policies_json(specs).encode()).hexdigest()[:8]
        slug = f"{slug[:50]}-{digest}"
    return f"{model}__{slug}__f{fraction:g}__s{seed}"


@dataclass(frozen=True)
class BankRef:
    """One bank folder ``RUN_DIR/banks/<name>/f<fraction>_s<seed>/``."""

    name: str
    fraction: float
    seed: int
    path: Path

    @property
    def cell(self) -> str:
        return cell_key(self.fraction, self.seed)

    def relative(self, name: str) -> str:
        """Path of a file of this bank relative to the run directory (what JSON records hold)."""
        return (self.path.relative_to(self.path.parents[2]) / name).as_posix()


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # --- files at the top -------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def audit(self) -> Path:
        return self.root / "audit.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def environment(self) -> Path:
        return self.root / "environment.yaml"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    @property
    def results(self) -> Path:
        return self.root / "results.parquet"

    @property
    def quality(self) -> Path:
        return self.root / "quality.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def real_grid(self) -> Path:
        return self.root / "figures" / "real_grid.png"

    @property
    def statistics(self) -> Path:
        return self.root / "statistics"

    @property
    def summary(self) -> Path:
        return self.statistics / "summary.csv"

    @property
    def paired(self) -> Path:
        return self.statistics / "paired.csv"

    @property
    def explain(self) -> Path:
        return self.root / "explain"

    @property
    def cams(self) -> Path:
        return self.explain / "cams.json"

    @property
    def executor(self) -> Path:
        """What the executors leave: the task log, shared-filesystem probes, SLURM logs."""
        return self.root / "executor"

    @property
    def task_log(self) -> Path:
        """One JSON line per finished task: stage kind, name, node, host, pid, seconds."""
        return self.executor / "tasks.jsonl"

    @property
    def slurm(self) -> Path:
        return self.root / "slurm"

    def log_tasks(self, records: list[dict[str, Any]]) -> None:
        """Append finished tasks to :attr:`task_log` (main process only)."""
        if not records:
            return
        self.executor.mkdir(parents=True, exist_ok=True)
        with self.task_log.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)

    # --- folders per cell ----------------------------------------------------------------------
    @property
    def generators(self) -> Path:
        return self.root / "generators"

    @property
    def banks(self) -> Path:
        return self.root / "banks"

    def generator_dir(self, name: str, fraction: float, seed: int) -> Path:
        return self.generators / name / cell_key(fraction, seed)

    def bank_dir(self, bank: str, fraction: float, seed: int) -> Path:
        return self.banks / bank / cell_key(fraction, seed)

    @property
    def judges(self) -> Path:
        return self.root / JUDGES

    @property
    def classifiers(self) -> Path:
        return self.root / "classifiers"

    def judge_dir(self, fraction: float, seed: int) -> Path:
        return self.judges / cell_key(fraction, seed)

    def tstr_dir(self, fraction: float, seed: int, bank: str) -> Path:
        """The TSTR classifier of a bank, beside its cell's judge."""
        return self.judge_dir(fraction, seed) / "tstr" / bank

    def classifier_dir(self, cell: str) -> Path:
        """Folder of the classifier cell with id ``cell`` (see :func:`cell_id`)."""
        return self.classifiers / cell

    def find_banks(self) -> list[BankRef]:
        """Every bank with a manifest, ordered by cell then name."""
        refs = []
        for manifest in self.banks.glob(f"*/f*_s*/{MANIFEST}"):
            try:
                fraction, seed = parse_cell_key(manifest.parent.name)
            except ValueError:
                continue
            refs.append(BankRef(manifest.parent.parent.name, fraction, seed, manifest.parent))
        return sorted(refs, key=lambda r: (r.seed, r.fraction, r.name))

    def append_result(self, row: dict[str, Any]) -> None:
        """Add a classifier cell's row to ``results.parquet``; see :meth:`append_results`."""
        self.append_results([row])

    def append_results(self, rows: list[dict[str, Any]]) -> None:
        """Add classifier cells' rows to ``results.parquet`` atomically, replacing rows with their ``cell_id``.

        Only the study's main process calls this, so workers never write the same file.
        """
        import pandas as pd

        if not rows:
            return
        new = pd.DataFrame(rows)
        if self.results.exists():
            old = pd.read_parquet(self.results)
            old = old[~old["cell_id"].isin(new["cell_id"])]
            new = pd.concat([old, new], ignore_index=True) if len(old) else new
        with atomic_path(self.results) as tmp:
            new.to_parquet(tmp, index=False)

    # --- bookkeeping -----------------------------------------------------------------------------
    def recorded_study(self) -> dict[str, Any]:
        """The ``study:`` section of the recorded config, as plain data."""
        return (yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}).get("study", {})

    def record_time(self, stage: str, seconds: float, finished: bool = True) -> None:
        """Add an attempt's wall time in ``stage`` to ``timings.json`` (summed over the attempts of a resumed
        run; ``finished=False`` for an attempt that was interrupted or failed)."""
        times = self._times()
        times.pop(RUNNING, None)
        entry = times.get(stage, {"seconds": 0.0, "runs": 0})
        entry = {**entry, "seconds": round(entry["seconds"] + seconds, 3)}
        if finished:
            entry |= {"runs": entry["runs"] + 1, "finished": dt.datetime.now().isoformat(timespec="seconds")}
        else:
            entry["interrupted"] = entry.get("interrupted", 0) + 1
        times[stage] = entry
        write_json(self.timings, times)

    def check(self, cfg: SynthaugConfig) -> list[str]:
        """Refuse to mix two studies (execution settings and growth aside: config/growth.py); return the growth."""
        if not self.config.exists():
            return []
        recorded, new = _results_part(self._recorded_normalised()), _results_part(dump_config(cfg))
        added = growth(recorded, new)
        if differ := _differences(recorded, new):
            shown = ", ".join(differ[:8]) + (f" and {len(differ) - 8} more" if len(differ) > 8 else "")
            raise ConfigError(
                f"run directory '{self.root}' holds a study with a different configuration ({self.config}): "
                f"{shown} differ. Use a new --out folder, or the same config to resume it "
                "(or with more study.models / study.policies / study.seeds, the first seed first, to grow it)"
            )
        return added

    def _recorded_normalised(self) -> str:
        """The recorded config, with every setting added since it was written at its default (a new
        setting's default always keeps the earlier behaviour), so older run directories still resume."""
        text = self.config.read_text(encoding="utf-8")
        try:
            return dump_config(load_config(self.config))
        except (ConfigError, ValueError, OSError):
            return text  # compared as written: the differences are then named

    def record(self, cfg: SynthaugConfig) -> None:
        """Write the resolved config and the versions of this attempt."""
        write_text(self.config, dump_config(cfg))
        from synthaug.device import environment  # torch, imported only where a study runs

        write_text(self.environment, yaml.safe_dump(environment(), sort_keys=False))

    def _times(self) -> dict[str, Any]:
        return read_json(self.timings) if self.timings.exists() else {}

    def stage_times(self) -> dict[str, dict[str, Any]]:
        """Wall time per stage, summed over attempts (finished and interrupted ones)."""
        return {k: v for k, v in self._times().items() if k != RUNNING}

    def start_stage(self, stage: str) -> None:
        """Note in ``timings.json`` which stage runs since when (an attempt killed in it is counted later)."""
        times = self._times()
        times[RUNNING] = {"stage": stage, "started": time.time()}
        write_json(self.timings, times)

    def account_interrupted(self, holder: dict[str, Any] | None) -> None:
        """Add the time of an attempt that died inside a stage to that stage's total.

        ``holder``: the stale lock this attempt took over; its last heartbeat says when the
        killed attempt was last alive (without one, the killed attempt's time is unknown: 0 s).
        """
        times = self._times()
        running = times.pop(RUNNING, None)
        if running is None:
            return
        until = float(holder["last_heartbeat"]) if holder and "last_heartbeat" in holder else running["started"]
        entry = times.get(running["stage"], {"seconds": 0.0, "runs": 0})
        entry["seconds"] = round(entry["seconds"] + max(0.0, until - running["started"]), 3)
        entry["interrupted"] = entry.get("interrupted", 0) + 1
        times[running["stage"]] = entry
        write_json(self.timings, times)


RUNNING = "_running"  # timings.json: the stage the current (or a killed) attempt is in


def _differences(a: Any, b: Any, key: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in list(a) + [k for k in b if k not in a]:
            out += _differences(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
        return out
    return [] if a == b else [key]


# Settings that change how fast a study runs, not what it computes: a resumed run may change them.
EXECUTION_KEYS = (
    ("study", "workers"),
    ("study", "memory_per_worker_gb"),
    ("study", "executor"),
    ("study", "resources"),
    ("study", "ray"),
    ("study", "slurm"),
    ("train", "threads"),
    ("data", "workers"),
    ("report", "metric"),
)


def _results_part(text: str) -> dict:
    """The recorded config without its execution settings (what must match to resume)."""
    raw = yaml.safe_load(text) or {}
    study = raw.get("study")
    if isinstance(study, dict) and isinstance(study.get("generators"), list):  # run dirs of synthaug 0.1
        study["generators"] = [upgrade_generator_dict(g) for g in study["generators"] if isinstance(g, dict)]
    for section, key in EXECUTION_KEYS:
        if isinstance(raw.get(section), dict):
            raw[section].pop(key, None)
            if not raw[section]:  # a section of execution settings only (report:), absent in older run dirs
                raw.pop(section)
    return raw
