"""Cluster executors on their real engines: a local Ray cluster started here (one node, then two
nodes from `ray start`), and submitit's local executor for the SLURM path.

Every study here is the same tiny phantom grid; with one torch thread per task its metrics must
equal, bit for bit, those of the local process pool (2 workers x 1 thread).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from synthaug.config import ConfigError, load_config
from synthaug.rundir import RunDir
from synthaug.study import cluster
from synthaug.study.cluster import check_shared_filesystem
from synthaug.study.executors import TasksFailed
from synthaug.study.runner import run_study

pytestmark = pytest.mark.cluster

TINY = """
data: {source: phantom, size: 16, phantom: {n: 64}}
study: {seeds: [0, 1], real_fractions: [1.0], policies: [[], ["classical:p=0.5"]], device: cpu}
train: {epochs: %d, batch_size: 16, patience: 0}
quality: {explain: {enabled: false}}
"""
METRICS = ["test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_cross_entropy", "test_auroc_macro"]
METRICS += ["val_accuracy", "val_macro_f1", "val_cross_entropy", "epochs_run", "best_epoch", "n_train"]


def _config(tmp_path: Path, *sets: str, epochs: int = 2):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY % epochs)
    return load_config(path, list(sets))


def _metrics(root: Path) -> pd.DataFrame:
    df = pd.read_parquet(root / "results.parquet")
    return df.set_index("cell_id").sort_index()[METRICS]


def _tasks(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "executor" / "tasks.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The tiny study on the local pool: 2 processes x 1 thread."""
    tmp = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHAUG_CACHE", str(tmp / "cache"))
        return _metrics(run_study(_config(tmp, "study.workers=2"), tmp / "run").root)


@pytest.fixture
def local_ray(tmp_path: Path):
    """A real one-machine Ray cluster, as a user's `ray.init(num_cpus=2)` would start it."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        runtime_env={"env_vars": {"SYNTHAUG_CACHE": os.environ["SYNTHAUG_CACHE"]}},
    )
    yield
    ray.shutdown()


def test_ray_study_equals_the_local_pool_and_resumes_across_executors(
    tmp_path: Path, reference: pd.DataFrame, local_ray: None
) -> None:
    run = run_study(_config(tmp_path, "study.executor=ray"), tmp_path / "run")
    pd.testing.assert_frame_equal(_metrics(run.root), reference, check_exact=True)
    tasks = _tasks(run.root)
    assert sorted(t["task"] for t in tasks if t["kind"] == "classifier") == sorted(reference.index)
    assert {t["executor"] for t in tasks} == {"ray"}
    # The executor is an execution setting: the same run directory resumes on another engine.
    again = run_study(_config(tmp_path, "study.workers=1"), tmp_path / "run")
    pd.testing.assert_frame_equal(_metrics(again.root), reference, check_exact=True)


def test_a_run_directory_the_workers_do_not_see_is_refused(tmp_path: Path, local_ray: None) -> None:
    elsewhere = tmp_path / "node-local-disk"

    def probe(path: str, token: str) -> str:  # a node whose --out folder is its own disk
        target = elsewhere / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(token)
        return "node-b"

    cfg = _config(tmp_path, "study.executor=ray")
    with pytest.raises(ConfigError, match="filesystem every node mounts"):
        check_shared_filesystem(cfg.study, RunDir(tmp_path / "run"), probe)
    check_shared_filesystem(cfg.study, RunDir(tmp_path / "run"))  # the real probe sees the shared folder


def _ray_workers(name: str) -> list[int]:
    """Pids of Ray worker processes running the task ``name`` (Ray titles them ``ray::<task name>``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith(f"ray::{name}"):
            pids.append(int(proc.name))
    return pids


def _kill_when_running(name: str, killed: list[int], deadline: float) -> None:
    while time.time() < deadline and not killed:
        for pid in _ray_workers(name):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_or_named(tmp_path: Path, local_ray: None) -> None:
    sets = ("study.executor=ray", "study.ray.max_retries=1", "study.seeds=[0]")
    victim = "cnn__none__f1__s0"
    ref = run_study(_config(tmp_path, "study.workers=2", "study.seeds=[0]", epochs=12), tmp_path / "ref")
    want = _metrics(ref.root)

    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_running, args=(victim, killed, time.time() + 120))
    killer.start()
    run = run_study(_config(tmp_path, *sets, epochs=12), tmp_path / "retried")
    killer.join()
    assert killed, "the task was never seen running"
    pd.testing.assert_frame_equal(_metrics(run.root), want, check_exact=True)

    # No retries left: the study finishes the other cells, then names the one that failed.
    killed.clear()
    killer = threading.Thread(target=_kill_when_running, args=(victim, killed, time.time() + 120))
    killer.start()
    no_retry = (*sets[:1], "study.ray.max_retries=0", *sets[2:])
    with pytest.raises(TasksFailed, match=victim) as failed:
        run_study(_config(tmp_path, *no_retry, epochs=12), tmp_path / "failed")
    killer.join()
    assert [name for name, _ in failed.value.failures] == [victim]
    assert (tmp_path / "failed" / "classifiers" / "cnn__classical-p=0.5__f1__s0" / "metrics.json").exists()
    rerun = run_study(_config(tmp_path, *no_retry, epochs=12), tmp_path / "failed")
    pd.testing.assert_frame_equal(_metrics(rerun.root), want, check_exact=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_ray_nodes_share_the_tasks(tmp_path: Path, reference: pd.DataFrame) -> None:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"]
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", *common], env=env, check=True, timeout=120)
        subprocess.run(
            [ray_cli, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--disable-usage-stats"],
            env=env,
            check=True,
            timeout=120,
        )
        run = run_study(
            _config(tmp_path, "study.executor=ray", f"study.ray.address=127.0.0.1:{port}"), tmp_path / "run"
        )
        pd.testing.assert_frame_equal(_metrics(run.root), reference, check_exact=True)
        nodes = {t["node"] for t in _tasks(run.root) if t["kind"] == "classifier"}
        assert len(nodes) == 2, f"classifier tasks ran on {nodes}"
    finally:
        ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], env=env, timeout=120, capture_output=True)


def test_submitit_local_executor_runs_the_slurm_path(tmp_path: Path, reference: pd.DataFrame) -> None:
    cfg = _config(tmp_path, "study.executor=slurm", "study.slurm.cluster=local", "study.slurm.array_parallelism=4")
    run = run_study(cfg, tmp_path / "run")
    pd.testing.assert_frame_equal(_metrics(run.root), reference, check_exact=True)
    assert list((run.root / "slurm" / "classifier").glob("*/*_log.out")), "no SLURM logs under RUN_DIR/slurm/"
    assert {t["executor"] for t in _tasks(run.root)} == {"slurm"}


def test_slurm_without_sbatch_and_missing_extras_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("sbatch") is None:
        with pytest.raises(ConfigError, match="sbatch"):
            run_study(_config(tmp_path, "study.executor=slurm"), tmp_path / "run")
    real = cluster.importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    with pytest.raises(ConfigError, match=r"synthaug\[ray\]"):
        run_study(_config(tmp_path, "study.executor=ray"), tmp_path / "other")
    assert not (tmp_path / "other" / "config.yaml").exists()


def _submitit_jobs() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_killed_slurm_job_is_named_and_the_rerun_completes(tmp_path: Path) -> None:
    sets = ("study.executor=slurm", "study.slurm.cluster=local", "study.seeds=[0]")
    ref = run_study(_config(tmp_path, "study.workers=2", "study.seeds=[0]", epochs=12), tmp_path / "ref")
    want = _metrics(ref.root)
    out = tmp_path / "killed"
    killed: list[int] = []

    def kill_a_classifier_job() -> None:
        deadline = time.time() + 180
        while time.time() < deadline and not killed:
            if (out / "splits.json").exists():  # past the shared-filesystem probe: these are cell jobs
                for pid in _submitit_jobs()[:1]:
                    time.sleep(2.0)  # let it start training
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_a_classifier_job)
    killer.start()
    with pytest.raises(TasksFailed) as failed:
        run_study(_config(tmp_path, *sets, epochs=12), out)
    killer.join()
    assert killed and len(failed.value.failures) == 1
    name = failed.value.failures[0][0]
    assert name in want.index and not (out / "classifiers" / name / "metrics.json").exists()
    rerun = run_study(_config(tmp_path, *sets, epochs=12), out)
    pd.testing.assert_frame_equal(_metrics(rerun.root), want, check_exact=True)


def _ok(x: int) -> int:
    return x * 10


def _boom(x: int) -> int:
    raise ValueError(f"bad input {x}")


def test_a_python_error_in_a_ray_task_is_named_after_the_others_finish(
    tmp_path: Path, local_ray: None, caplog: pytest.LogCaptureFixture
) -> None:
    import functools

    from synthaug.study.executors import Task, run_tasks

    cfg = _config(tmp_path, "study.executor=ray")
    tasks = [Task("cell a", functools.partial(_ok, 1)), Task("cell b", functools.partial(_boom, 2)),
             Task("cell c", functools.partial(_ok, 3))]  # fmt: skip
    got: dict[int, int] = {}
    with pytest.raises(TasksFailed, match=r"1 of 3 classifier tasks failed: cell b \(.*bad input 2"):
        for i, value in run_tasks(cfg.study, RunDir(tmp_path / "run"), "classifier", tasks):
            got[i] = value
    assert got == {0: 10, 2: 30}  # the others finished and were handed back
    assert "classifier task cell b failed" in caplog.text and "ValueError: bad input 2" in caplog.text
    logged = {t["task"] for t in _tasks(tmp_path / "run")}
    assert logged == {"cell a", "cell c"}


@pytest.mark.slow
def test_a_killed_ray_driver_resumes_to_the_same_results(tmp_path: Path) -> None:
    """The driver (the `synthaug run` process, which started Ray) killed mid-grid; the same command
    again takes over the run directory and finishes it with the local pool's results."""
    ref = run_study(_config(tmp_path / "ref", "study.workers=2", epochs=12), tmp_path / "ref" / "run")
    reference = _metrics(ref.root)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY % 12)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "synthaug", "run", str(config), "--out", str(out), "--set", "study.executor=ray"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list((out / "classifiers").glob("*/metrics.json")):
        assert first.poll() is None, "the study ended before it could be killed"
        assert time.time() < deadline, "no cell finished in time"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in (out / "classifiers").glob("*/metrics.json")}
    assert 1 <= len(done) < len(reference)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    for cell, stamp in done.items():  # finished cells were not trained again
        assert (out / "classifiers" / cell / "metrics.json").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(_metrics(out), reference, check_exact=True)
