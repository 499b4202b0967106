"""Benchmark the synthetic venue: simulate one day at a scale, in a subprocess, into a temp folder.

Usage:

    .venv/bin/python bench/bench_simulate.py [--scale large] [--start 2026-11-01] [--chunks 24]
        [--workers 2] [--limit-gb 10] [--keep DIR]

Prints the wall time, the simulator's own per-phase seconds (VENUE_RISK_SIM_VERBOSE), the peak
RSS of the largest process (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss) and the peak RSS of
the whole process tree (sampled every 0.2 s: the engine workers run beside the main process),
then the rows of every dataset and rows/s. A watchdog kills the run if the tree passes
--limit-gb (default 10 GB) so a shared machine is not taken down. --keep DIR writes into DIR
(kept) instead of a temp folder. --chunks / --workers set VENUE_RISK_SIM_CHUNK /
VENUE_RISK_SIM_WORKERS (defaults: the simulator's own).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree_rss(pid: int) -> int:
    """RSS in bytes of `pid` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            ppid, pages = int(parts[1]), int(parts[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="large")
    ap.add_argument("--start", default="2026-11-01")
    ap.add_argument("--chunks", type=int)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--limit-gb", type=float, default=10.0)
    ap.add_argument("--keep")
    a = ap.parse_args()
    out = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_sim_"))
    env = dict(os.environ, VENUE_RISK_SIM_VERBOSE="1")
    if a.chunks:
        env["VENUE_RISK_SIM_CHUNK"] = str(a.chunks)
    if a.workers:
        env["VENUE_RISK_SIM_WORKERS"] = str(a.workers)
    code = ("import datetime as dt, sys; from venue_risk.simulate import simulate; "
            "simulate(sys.argv[1], dt.date.fromisoformat(sys.argv[2]), 1, sys.argv[3])")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, a.scale, a.start, str(out)], env=env,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    peak = [0]
    killed = [False]

    def watch() -> None:
        while proc.poll() is None:
            r = _tree_rss(proc.pid)
            peak[0] = max(peak[0], r)
            if r > a.limit_gb * 1e9:
                killed[0] = True
                os.killpg(proc.pid, 9)
                return
            time.sleep(0.2)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB -> GB
    print(stdout.strip())
    print(f"scale={a.scale} exit={proc.returncode} wall={wall:.1f}s peak_rss_largest_process={ru:.2f}GB "
          f"peak_rss_tree={peak[0] / 1e9:.2f}GB" + (" KILLED (memory limit)" if killed[0] else ""))
    if proc.returncode != 0:
        return 1
    import polars as pl

    total = 0
    for f in sorted(out.glob("*/date=*/data.parquet")):
        n = pl.scan_parquet(f).select(pl.len()).collect().item()
        total += n
        print(f"  {f.parent.parent.name:<18} {n:>12,} rows  {f.stat().st_size / 1e6:9.1f} MB")
    print(f"  {'total':<18} {total:>12,} rows  {total / wall:,.0f} rows/s")
    if not a.keep:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
