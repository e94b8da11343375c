"""Kill-and-resume trials on a tiny phantom study: does an interrupted study finish with the same results,
leave no temporary files, and redo none of the work it had finished?

    python benchmarks/fault_injection.py --trials 20 [--seed 0] [--out /tmp/synthaug-faults]

A reference run goes first. Each trial starts the same study in a fresh folder, stops it with
SIGKILL, SIGTERM or SIGINT either after a random time or when a chosen stage starts (generators,
banks, quality, classifiers, explain, report), runs the same command again to completion, and
checks: exit code 0; ``results.parquet`` equal to the reference in every stable column; no
``.*.tmp*`` file left; no generator checkpoint, bank marker or classifier cell that was finished
before the kill written again.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [
    "data.size=16", "data.phantom.n=96", "study.seeds=[0,1]", "study.real_fractions=[1.0]", "study.workers=1",
    "train.epochs=2", "train.batch_size=16", "train.threads=1", "quality.epochs=1", "quality.explain.per_class=1",
    "study.generators=[{family: vae, steps: 6, batch_size: 8, checkpoint_every: 2, sample_every: 0, "
    "vae: {channels: [8, 16], latent_dim: 8}}]",
    'study.policies=[[], ["classical:p=0.5"], ["synthetic:gen=vae,y=0.5"]]',
]  # fmt: skip
STABLE = ["cell_id", "n_train", "epochs_run", "test_accuracy", "test_macro_f1", "val_cross_entropy"]
STAGES = ["generators", "banks", "quality", "classifiers", "explain", "report"]
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


def command(out: Path) -> list[str]:
    sets = [a for s in SETTINGS for a in ("--set", s)]
    config = str(REPO / "configs" / "quickstart.yaml")
    return [sys.executable, "-m", "synthaug", "run", config, "--out", str(out), *sets]


def finished_work(run: Path) -> dict[Path, int]:
    """Artifacts that mark finished work, with their modification times."""
    marks = [*run.glob("generators/*/*/generator.pt"), *run.glob("banks/*/*/complete.json")]
    marks += run.glob("classifiers/*/metrics.json")
    return {p: p.stat().st_mtime_ns for p in marks}


def results(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "results.parquet")[STABLE].sort_values("cell_id").reset_index(drop=True)


def interrupt(out: Path, log: Path, how: str, when: str, after: float) -> None:
    """Start the study and stop it with signal ``how`` after ``after`` s or when stage ``when`` starts."""
    with open(log, "w") as f:
        # A shell's background job inherits SIGINT ignored; give the study the default, as in a terminal.
        default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        proc = subprocess.Popen(command(out), cwd=REPO, stdout=f, stderr=subprocess.STDOUT, preexec_fn=default_sigint)
    start = time.time()
    while proc.poll() is None:
        if when == "random" and time.time() - start >= after:
            break
        if when != "random" and log.exists() and f"stage {when}: running" in log.read_text(errors="replace"):
            time.sleep(after)  # a moment into the stage
            break
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(SIGNALS[how])
    proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/synthaug-faults"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    started = time.time()
    ref = subprocess.run(command(args.out / "reference"), cwd=REPO, capture_output=True, text=True)
    if ref.returncode != 0:
        sys.exit(f"reference run failed:\n{ref.stderr[-3000:]}")
    ref_seconds = time.time() - started
    want = results(args.out / "reference")
    print(f"reference: {len(want)} cells in {ref_seconds:.0f} s")
    rng = random.Random(args.seed)
    tally = {"trials": 0, "stopped mid-run": 0, "finished": 0, "identical": 0, "orphans": 0, "redone": 0}
    for trial in range(args.trials):
        how = rng.choice(list(SIGNALS))
        when = rng.choice(["random", "random", *STAGES])
        after = rng.uniform(1.0, ref_seconds) if when == "random" else rng.uniform(0.0, 0.5)
        out, log = args.out / f"trial{trial:02d}", args.out / f"trial{trial:02d}.log"
        interrupt(out, log, how, when, after)
        before = finished_work(out)
        resumed = subprocess.run(command(out), cwd=REPO, capture_output=True, text=True)
        ok = resumed.returncode == 0
        same = ok and results(out).equals(want)
        orphans = [p for p in out.rglob(".*.tmp*") if p.is_file()]
        redone = [p for p, t in before.items() if not p.exists() or p.stat().st_mtime_ns != t]
        tally["trials"] += 1
        tally["stopped mid-run"] += "study complete" not in log.read_text(errors="replace")
        tally["finished"] += ok
        tally["identical"] += same
        tally["orphans"] += len(orphans)
        tally["redone"] += len(redone)
        at = f"after {after:.1f} s" if when == "random" else f"at stage {when}"
        status = "ok" if ok else "FAILED"
        stopped = "stopped" if "study complete" not in log.read_text(errors="replace") else "finished first"
        print(f"trial {trial:2d}: {how:7s} {at:24s} {stopped:14s} done before kill {len(before):2d}  resumed {status}"
              f"  identical {same}  orphans {len(orphans)}  redone {len(redone)}", flush=True)  # fmt: skip
        if not ok:
            print(resumed.stderr[-2000:])
    summary = ", ".join(f"{k} {v}" for k, v in tally.items())
    print(f"summary: {summary} ({time.time() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
