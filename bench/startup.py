#!/usr/bin/python3
"""Cold start of bootbus, exec to the first answered Hello, N times per tree.

Owns: nothing but this measurement (issue 6's startup target, 50 ms). Each
start is `python3 -m bootbus --address unix:path=X --runtime-dir D` with the
tree as working directory, timed from just before the exec to the moment
bench/brokers.py's `wait_for_hello` returns, then stopped by pid. Several
trees (e.g. an old checkout and this one) are interleaved start by start so
that a busy machine slows them alike. Compile each tree's bytecode first
(`python3 -m compileall -q bootbus`); this script never writes any.

    /usr/bin/python3 bench/startup.py [-n 15] [TREE ...]   # default: this tree
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import STOP_TIMEOUT_S, clean_env, wait_for_hello

REPO = Path(__file__).resolve().parent.parent


def start_once(tree: Path, work: Path) -> float:
    """One cold start in `tree`; returns seconds from exec to the Hello reply."""
    path = str(work / "bus")
    log = work / "log"
    with open(log, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bootbus", "--address", f"unix:path={path}",
             "--runtime-dir", str(work / "run")],
            cwd=tree, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        return wait_for_hello(path, proc, log) - start
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for name in ("bus", "log"):
            (work / name).unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="starts per tree (default 15)")
    parser.add_argument("trees", nargs="*", type=Path, default=[REPO])
    args = parser.parse_args()
    samples: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    with tempfile.TemporaryDirectory(prefix="bootbus-startup-") as tmp:
        work = Path(tmp)
        for _ in range(args.n):
            for tree in args.trees:
                samples[tree].append(start_once(tree.resolve(), work))
    for tree, times in samples.items():
        ms = sorted(t * 1e3 for t in times)
        print(f"{os.fspath(tree)}: median {statistics.median(ms):.1f} ms, "
              f"min {ms[0]:.1f}, max {ms[-1]:.1f} (n={len(ms)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
