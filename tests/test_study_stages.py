"""benchmarks/study_stages.py: a resumed or grown study's cached reruns do not replace the work they skip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import study_stages


def _run(tmp_path: Path, lines: list[dict[str, object]]) -> Path:
    (tmp_path / "executor").mkdir()
    (tmp_path / "executor" / "tasks.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    timings = {"quality": {"seconds": 300.0}, "classifiers": {"seconds": 60.0}}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    return tmp_path


def test_a_task_logged_twice_counts_both_tries(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        [
            {"kind": "quality", "task": "f0.3_s0", "seconds": 120.0, "threads": 1},
            {"kind": "quality", "task": "f0.3_s1", "seconds": 90.0, "threads": 1},
            {"kind": "classifier", "task": "cnn__none__f0.3__s0", "seconds": 30.0, "threads": 2},
            # the same command again: quality reruns and finds its results on disk
            {"kind": "quality", "task": "f0.3_s0", "seconds": 0.6, "threads": 1},
            {"kind": "quality", "task": "f0.3_s1", "seconds": 0.4, "threads": 1},
        ],
    )
    tasks = study_stages.read_tasks(run, threads=1)
    assert len(tasks) == 3
    quality = tasks[tasks["kind"] == "quality"].set_index("task")
    assert quality.loc["f0.3_s0", "seconds"] == pytest.approx(120.6)
    assert quality.loc["f0.3_s1", "core_min"] == pytest.approx(90.4 / 60)

    table = study_stages.stage_table(run, threads=1).set_index("stage")
    assert table.loc["quality", "n"] == 2
    assert table.loc["quality", "core_min"] == pytest.approx(211.0 / 60)
    assert table.loc["classifiers", "core_min"] == pytest.approx(1.0)  # 30 s x 2 threads
    assert table.loc["total", "core_min"] == pytest.approx(211.0 / 60 + 1.0)


def test_tasks_logged_before_threads_were_recorded_take_the_given_threads(tmp_path: Path) -> None:
    run = _run(tmp_path, [{"kind": "classifier", "task": "cnn__none__f0.3__s0", "seconds": 60.0}])
    tasks = study_stages.read_tasks(run, threads=2)
    assert tasks.loc[0, "core_min"] == pytest.approx(2.0)
