"""Bad input gets a named error or warning, the run directory is locked, --force reruns what it
names, file-system failures are one line, and nothing already computed is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from synthaug.cli import app
from synthaug.config import ConfigError, load_config
from synthaug.data.phantoms import generate
from synthaug.data.prepare import prepare_data, write_image_folder
from synthaug.data.sources import SourceError
from synthaug.io import read_json
from synthaug.lock import RunDirLocked, RunLock
from synthaug.rundir import RunDir
from synthaug.study.runner import forced_stages, run_study

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.size=16", "study.seeds=[0]", "study.real_fractions=[1.0]", "study.workers=1", "train.epochs=1"]
TINY += ["train.batch_size=16", "train.threads=1", "quality.enabled=false", "study.policies=[[], [classical:p=0.5]]"]


def folder(tmp_path: Path, n: int = 60) -> Path:
    root = tmp_path / "data"
    write_image_folder(generate(n, 16, seed=1), root)
    return root


def cfg_for(source: Path | str, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [f"data.source={source}", "data.cache_dir=" + str(Path(str(source)).parent / "cache"),
                              *TINY, *extra])  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "synthaug", *args], capture_output=True, text=True, env=env, cwd=REPO)


def sets(*extra: str) -> list[str]:
    return [a for s in (*TINY, *extra) for a in ("--set", s)]


# ---------------------------------------------------------------- classes that make metrics meaningless


def test_a_class_only_in_testing_is_an_error_naming_it(tmp_path: Path) -> None:
    root = folder(tmp_path)
    shutil.rmtree(root / "Training" / "glioma")
    with pytest.raises(SourceError, match=r"'glioma' \(\d+ test images\) have no readable training images"):
        prepare_data(cfg_for(root).data)


def test_a_class_whose_every_training_file_is_unreadable_is_an_error(tmp_path: Path) -> None:
    root = folder(tmp_path)
    for p in (root / "Training" / "pituitary").iterdir():
        p.write_bytes(b"not an image")
    with pytest.raises(SourceError, match=r"'pituitary'.*no readable training images"):
        prepare_data(cfg_for(root).data)


def test_a_stray_parquet_label_is_an_error_not_empty_classes(tmp_path: Path) -> None:
    data = generate(24, 16, seed=0)
    rows = []
    for img, label in zip(data.images, data.labels, strict=True):
        buf = Path(tmp_path / "x.png")
        Image.fromarray(img).save(buf)
        rows.append({"image": {"bytes": buf.read_bytes()}, "label": int(label)})
    rows[0]["label"] = 9  # one stray label: classes 4..8 would be empty
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(SourceError, match=r"class\(es\) 'class_4'.*no readable training images.*label column"):
        prepare_data(cfg_for(tmp_path / "train.parquet").data)


def test_one_class_is_an_error(tmp_path: Path) -> None:
    root = folder(tmp_path)
    for name in ("glioma", "meningioma", "notumor"):
        shutil.rmtree(root / "Training" / name)
        shutil.rmtree(root / "Testing" / name, ignore_errors=True)
    with pytest.raises(SourceError, match=r"only one class.*at least two"):
        prepare_data(cfg_for(root).data)


def test_thin_classes_and_missing_test_classes_are_named_warnings(tmp_path: Path) -> None:
    root = folder(tmp_path)
    shutil.rmtree(root / "Testing" / "notumor")
    for p in sorted((root / "Training" / "meningioma").iterdir())[1:]:
        p.unlink()
    warnings = prepare_data(cfg_for(root).data).audit["class_warnings"]
    assert any("'notumor' has no test images" in w for w in warnings), warnings
    assert any("'meningioma' has only 1 training image" in w for w in warnings), warnings


def test_a_real_fraction_leaving_a_class_thin_is_recorded(tmp_path: Path) -> None:
    run = run_study(load_config(None, [*TINY, "data.phantom.n=48", "study.real_fractions=[0.15]"]), tmp_path / "r")
    assert any("real fraction 0.15, seed 0: class" in w for w in read_json(run.splits)["warnings"])


def test_a_corrupt_mask_makes_its_image_unreadable_not_the_run(tmp_path: Path) -> None:
    root = folder(tmp_path)
    mask = next((root / "masks" / "Training" / "glioma").iterdir())
    mask.write_bytes(b"garbage")
    audit = prepare_data(cfg_for(root).data).audit
    assert any("lesion mask" in u["reason"] and "glioma" in u["id"] for u in audit["unreadable"])


# ---------------------------------------------------------------- configuration and the run directory


@pytest.mark.parametrize(
    ("setting", "named"),
    [("study.seeds=[-1]", "non-negative"), ("study.seeds=[0,0]", r"\[0\] more than once"),
     ("study.real_fractions=[0.5,0.5]", "more than once"), ("study.policies=[[classical:p=abc]]", "valid number")],
)  # fmt: skip
def test_bad_settings_fail_at_load(setting: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(None, [setting])


def test_a_failed_start_leaves_nothing_that_refuses_the_corrected_command(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(SourceError):
        run_study(cfg_for(tmp_path / "nope"), out)
    assert not (out / "config.yaml").exists()
    run_study(load_config(None, TINY), out)  # the corrected command runs
    with pytest.raises(ConfigError, match=r"data.size, study.seeds differ"):
        run_study(load_config(None, [*TINY, "data.size=24", "study.seeds=[1]"]), out)


def test_force_reruns_the_stage_and_what_depends_on_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert forced_stages({"classifiers"}) == ["classifiers", "statistics", "explain", "report"]
    assert forced_stages({"quality"}) == ["quality", "report"]
    assert forced_stages({"quality"}, filters=True) == ["quality", "classifiers", "statistics", "explain", "report"]
    assert "quality" in forced_stages({"generators"}) and "audit" not in forced_stages({"generators"})
    cfg = load_config(None, TINY)
    run = run_study(cfg, tmp_path / "run")
    cell = next(run.classifiers.glob("*/metrics.json"))
    stamp, grid = cell.stat().st_mtime_ns, run.real_grid.stat().st_mtime_ns
    caplog.set_level("INFO")
    run_study(cfg, run.root, force={"classifiers"})
    assert cell.stat().st_mtime_ns != stamp and run.real_grid.stat().st_mtime_ns == grid
    assert "forced: classifiers and what depends on it: explain, report, statistics" in caplog.text
    assert len(pd.read_parquet(run.results)) == 2


def test_a_forced_run_interrupted_before_its_stage_recomputes_it_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(None, TINY)
    run = run_study(cfg, tmp_path / "run")
    cell = next(run.classifiers.glob("*/metrics.json"))
    stamp = cell.stat().st_mtime_ns

    def interrupt(*args: object) -> None:  # the user presses Ctrl-C before the first stage starts
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("synthaug.study.runner.check_shared_filesystem", interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_study(cfg, run.root, force={"classifiers"})
    run_study(cfg, run.root)  # resumed without --force: the forced stage is still redone, not kept
    assert cell.exists() and cell.stat().st_mtime_ns != stamp
    assert len(pd.read_parquet(run.results)) == 2


def test_checkpoints_of_identical_runs_are_byte_identical(tmp_path: Path) -> None:
    from synthaug.config import parse_generator
    from synthaug.generators import fit

    data = generate(24, 16, seed=0)
    tiny = {"image_size": 16, "steps": 2, "batch_size": 8, "sample_every": 0}
    cfg = parse_generator({"family": "vae", "device": "cpu", "preset": "cpu", **tiny,
                           "vae": {"channels": [4, 8], "latent_dim": 4}})  # fmt: skip
    a, b = fit(data, cfg, tmp_path / "a", seed=0), fit(data, cfg, tmp_path / "b", seed=0)
    assert a.checkpoint_hash == b.checkpoint_hash


def test_orphan_temporary_files_are_removed_on_resume(tmp_path: Path) -> None:
    cfg = load_config(None, TINY)
    run = run_study(cfg, tmp_path / "run")
    orphan = run.root / "figures" / ".real_grid.abc123.tmp.png"
    orphan.write_bytes(b"half")
    run_study(cfg, run.root)
    assert not orphan.exists()


# ---------------------------------------------------------------- the lock


def test_lock_names_its_holder_and_a_stale_one_is_taken_over(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock:
        with pytest.raises(RunDirLocked, match=rf"pid {os.getpid()} on host {socket.gethostname()}, started"):
            RunLock(tmp_path).acquire()
        assert lock.path.exists()
    assert not (tmp_path / ".lock").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "x"}))
    with RunLock(tmp_path) as lock:  # holder gone: taken over
        assert lock.taken_over and lock.taken_over["pid"] == dead.pid
    (tmp_path / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "x"}))
    old = time.time() - 120
    os.utime(tmp_path / ".lock", (old, old))  # another host, silent for two minutes: stale
    with RunLock(tmp_path, stale_after=60):
        pass


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_process_is_refused_and_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "synthaug", "run", str(REPO / "configs" / "quickstart.yaml"), "--out", str(out)]
    slow = sets("train.epochs=40")
    first = subprocess.Popen([*cmd, *slow], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(out / ".lock", first)
    second = cli("run", str(REPO / "configs" / "quickstart.yaml"), "--out", str(out), *slow)
    assert second.returncode == 2 and f"pid {first.pid} on host" in second.stderr and "Traceback" not in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = cli("run", str(REPO / "configs" / "quickstart.yaml"), "--out", str(out), *slow)
    assert third.returncode == 0, third.stderr
    assert not (out / ".lock").exists()


@pytest.mark.slow
def test_sigterm_says_what_was_interrupted_and_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", str(REPO / "configs" / "quickstart.yaml"), "--out", str(out), *sets("train.epochs=30")]
    proc = subprocess.Popen([sys.executable, "-m", "synthaug", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(out / "classifiers", proc)  # inside the classifier stage
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted: finished work is kept" in err and "synthaug run" in err
    assert "stage classifiers interrupted" in err
    assert "Traceback" not in err and not (out / ".lock").exists()
    assert cli(*args).returncode == 0
    times = RunDir(out).stage_times()
    assert sum(t.get("interrupted", 0) for t in times.values()) == 1


# ---------------------------------------------------------------- file-system failures are one line


@pytest.mark.parametrize(
    ("out", "named"), [("/etc/passwd/x", "part of that path is a file"), ("FILE", "a file of that name exists")]
)
def test_bad_out_paths_are_one_line_errors(tmp_path: Path, out: str, named: str) -> None:
    if out == "FILE":
        (tmp_path / "file").write_text("x")
        out = str(tmp_path / "file")
    res = CliRunner().invoke(app, ["run", str(REPO / "configs" / "quickstart.yaml"), "--out", out, *sets()])
    assert res.exit_code == 2 and named in res.output and "Traceback" not in res.output, res.output


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0  # fmt: skip


def test_a_read_only_file_system_is_one_line(tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    if not _mount_tmpfs(disk, "ro,size=1m"):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        res = CliRunner().invoke(app, ["run", str(REPO / "configs" / "quickstart.yaml"), "--out", str(disk / "run")])
        assert res.exit_code == 2 and "read-only" in res.output and "Traceback" not in res.output, res.output
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_run_resumes_after_space_is_freed(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=300k"):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        args = ["run", str(REPO / "configs" / "quickstart.yaml"), "--out", str(disk / "run"), *sets()]
        full = cli(*args)
        assert full.returncode == 2, full.stderr
        assert "no space left on device" in full.stderr and "MB free" in full.stderr and "Traceback" not in full.stderr
        assert subprocess.run(["mount", "-o", "remount,size=64m", str(disk)]).returncode == 0
        assert cli(*args).returncode == 0
        reference = run_study(load_config(REPO / "configs" / "quickstart.yaml", TINY), tmp_path / "reference")
        cols = ["cell_id", "test_accuracy", "test_macro_f1", "val_cross_entropy"]
        got = pd.read_parquet(disk / "run" / "results.parquet")[cols].sort_values("cell_id").reset_index(drop=True)
        want = pd.read_parquet(reference.results)[cols].sort_values("cell_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_results_are_unaffected_by_these_checks(tmp_path: Path) -> None:
    """A clean phantom study still trains both policies (the checks add warnings, not noise)."""
    run = run_study(load_config(None, TINY), tmp_path / "run")
    df = pd.read_parquet(run.results)
    assert sorted(df["policy"]) == ["classical(p=0.5)", "none"] and np.isfinite(df["test_accuracy"]).all()
