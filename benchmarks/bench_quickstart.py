"""The quickstart study end to end: per-stage wall times alone, and beside a competing job.

    python benchmarks/bench_quickstart.py [--config configs/quickstart.yaml] [--competing-threads 2]

Runs `synthaug run CONFIG` twice into fresh temporary folders: once on an idle machine, once
with another process doing two-thread matrix products the whole time (what a second user or
job does to a shared 2-core machine). Prints each stage's seconds (RUN_DIR/timings.json) and
the slow-down ratio. Goals: the idle study within 10 minutes on 2 cores; no stage more than
2x slower beside the competing job.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPETITOR = """
import torch, time
torch.set_num_threads({threads})
a = torch.randn(768, 768)
while True:
    a = (a @ a).tanh()
"""


def study(config: str, out: Path) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "SYNTHAUG_CACHE": str(out.parent / "cache")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synthaug", "run", config, "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - start
    times = json.loads((out / "timings.json").read_text())
    return wall, {k: v["seconds"] for k, v in times.items() if not k.startswith("_")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--competing-threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="also keep the idle run's directory here (for its report and results)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        alone_dir = Path(tmp) / "alone" / "run"
        alone_wall, alone = study(args.config, alone_dir)
        if args.keep:
            shutil.copytree(alone_dir, args.keep, dirs_exist_ok=True)
        code = COMPETITOR.format(threads=args.competing_threads)
        competitor = subprocess.Popen([sys.executable, "-c", code])
        try:
            busy_wall, busy = study(args.config, Path(tmp) / "busy" / "run")
        finally:
            competitor.kill()
            competitor.wait()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, config {args.config}")
    print(f"{'stage':<12} {'idle s':>8} {'beside a ' + str(args.competing_threads) + '-thread job s':>28} {'ratio':>6}")
    for stage in alone:
        a, b = alone[stage], busy.get(stage, float("nan"))
        ratio = b / a if a >= 1 else float("nan")
        print(f"{stage:<12} {a:8.1f} {b:28.1f} {ratio:6.2f}")
    print(f"{'whole run':<12} {alone_wall:8.1f} {busy_wall:28.1f} {busy_wall / alone_wall:6.2f}")


if __name__ == "__main__":
    main()
