"""Start-up cost of the command line: `synthaug --help` and loading every shipped config, against
`python -c "import torch"` measured in the same run (alternating, so machine drift hits both).

    python benchmarks/bench_cli_startup.py [--runs 7]

Goal: `synthaug --help` takes at most 0.3x the wall time of importing torch, because neither
the CLI nor the config package imports torch (tests/test_architecture.py checks that part).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "synthaug --help": [sys.executable, "-m", "synthaug", "--help"],
    "load every config": [
        sys.executable,
        "-c",
        f"from synthaug.config import load_config\nfor p in {[str(c) for c in CONFIGS]!r}: load_config(p)",
    ],
}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    for cmd in COMMANDS.values():  # warm the page cache
        wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            times[name].append(wall(cmd))
    ref = times["import torch"]
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, python {platform.python_version()}, {args.runs} runs")
    print(f"{'command':<20} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio to import torch (median of pairs)':>40}")
    for name, ts in times.items():
        ratio = statistics.median(t / r for t, r in zip(ts, ref, strict=True))
        print(f"{name:<20} {statistics.median(ts):9.3f} {min(ts):7.3f} {max(ts):7.3f} {ratio:40.2f}")


if __name__ == "__main__":
    main()
