"""Wall time, peak memory and rows per second per stage of one day, each stage in a fresh process.

    .venv/bin/python bench/bench_stages.py --scale demo --day 2026-11-05 [--home /tmp/vr-bench]
    .venv/bin/python bench/bench_stages.py --scale large --day 2026-11-01 --genesis 2026-11-01

Simulates genesis..day into a private home first (that simulation is timed too), then runs each
stage of venue_risk.pipeline in its own subprocess and reads its peak RSS (ru_maxrss). The gate
is run both ways too: in one process (`validate`, the CLI's path) and split as the DAG runs it
(`gate_parts`, then each part's `validate_part` in its own process, then `combine_gate`: wall =
their sum, RSS = the largest process); so is the metric stage (`metric_groups`, each group's
`compute_symbol_metrics` in its own process, then `compute_metrics` on their parts).
`--skip STAGE` leaves a stage out. The floor is one DuckDB scan of the day's landed Parquet
(every column of every row hashed). Rows = the day's landed rows (all datasets); rows/s = rows /
wall; "s per M rows" is the cost per million rows, which should stay flat from demo to large.
Figures go to stdout as a Markdown table (and to --json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

STAGE = textwrap.dedent("""
    import json, resource, sys, time
    from venue_risk import pipeline
    from venue_risk.settings import Settings
    from venue_risk.schema import DATASET_NAMES
    stage, day, state_path = sys.argv[1], sys.argv[2], sys.argv[3]
    s = Settings.from_env()
    state = json.load(open(state_path))
    t0 = time.perf_counter()
    if stage == "simulate":
        pipeline.prepare_source(day, s)
    elif stage == "extract":
        state["extracted"] = [pipeline.extract(day, n, s) for n in DATASET_NAMES]
    elif stage == "validate: import great_expectations":
        import great_expectations  # noqa: F401  (a fixed cost per process, whatever the day's size)
    elif stage == "validate: the gate (GX imported)":
        import great_expectations  # noqa: F401
        t0 = time.perf_counter()
        pipeline.validate(day, state["extracted"], s)
    elif stage == "gate_parts":
        state["parts"] = pipeline.gate_parts(day, state["extracted"], s)
    elif stage == "validate_part":
        import great_expectations  # noqa: F401  (timed apart above)
        t0 = time.perf_counter()
        pipeline.validate_part(day, state["extracted"], state["parts"][int(sys.argv[4])], s)
    elif stage == "combine_gate":
        pipeline.combine_gate(day, state["extracted"], state["parts"], s)
    elif stage == "load":
        pipeline.load(day, state["extracted"], s)
    elif stage == "floor: one DuckDB scan of the landed day":
        import duckdb
        files = [e["path"] for e in state["extracted"]]
        con = duckdb.connect()
        for f in files:
            con.sql(f"SELECT count(*), sum(hash(t)) FROM read_parquet('{f}') t").fetchall()
    elif stage == "compute_metrics":
        state["tables"] = pipeline.compute_metrics(day, s)
    elif stage == "metric_groups":
        state["groups"], state["metric_parts"] = pipeline.metric_groups(day, s), []
    elif stage == "compute_symbol_metrics":
        state["metric_parts"].append(pipeline.compute_symbol_metrics(day, state["groups"][int(sys.argv[4])], s))
    elif stage == "combine_metrics":
        pipeline.compute_metrics(day, s, parts=state["metric_parts"])
    elif stage == "store_metrics":
        pipeline.store_metrics(day, state["tables"], s)
    elif stage == "build_report":
        pipeline.build_report(day, state["extracted"], s, run_id="bench")
    elif stage == "deliver":
        pipeline.deliver(day, s, None, force=True)
    wall = time.perf_counter() - t0
    if "extracted" in state:
        state["rows"] = sum(e["rows"] for e in state["extracted"])
    json.dump(state, open(state_path, "w"))
    print(json.dumps({"wall_s": wall, "rows": state.get("rows"),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")

SPLIT_GATE = "validate: split (each part in its own process, as the mapped tasks) + combine"
SPLIT_METRICS = "compute_metrics, split (each symbol group in its own process, as the mapped tasks) + combine"
STAGES = ["simulate", "extract", "validate: import great_expectations",
          "validate: the gate (GX imported)", SPLIT_GATE, "load", "floor: one DuckDB scan of the landed day",
          "compute_metrics", SPLIT_METRICS, "store_metrics", "build_report",
          "deliver"]
FLOOR = "floor: one DuckDB scan of the landed day"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="demo")
    parser.add_argument("--day", default="2026-11-05")
    parser.add_argument("--genesis", default="2026-11-01")
    parser.add_argument("--home", default=None)
    parser.add_argument("--groups", type=int, default=None,
                        help="symbol groups of the split gate and metric stage (default: by the day's size)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--skip", action="append", default=[], metavar="STAGE",
                        help="leave out a stage (by its name above; repeatable)")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="venue-risk-bench-"))
    env = dict(os.environ, VENUE_RISK_HOME=str(home), VENUE_RISK_SIM_SCALE=args.scale,
               VENUE_RISK_SIM_GENESIS=args.genesis, VENUE_RISK_START_DATE=args.genesis)
    env.pop("VENUE_RISK_SYMBOL_GROUPS", None)
    if args.groups:
        env["VENUE_RISK_SYMBOL_GROUPS"] = str(args.groups)
    home.mkdir(parents=True, exist_ok=True)
    state = home / "bench-state.json"
    state.write_text("{}")
    rows = []

    def run(stage: str, *extra: str) -> dict:
        out = subprocess.run([sys.executable, "-c", STAGE, stage, args.day, str(state), *extra], env=env,
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"stage {stage} {' '.join(extra)} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    for stage in STAGES:
        if stage in args.skip:
            continue
        if stage in (SPLIT_GATE, SPLIT_METRICS):  # wall: the parts in turn + combine; RSS: the largest process
            first, each, last, key = (("gate_parts", "validate_part", "combine_gate", "parts") if stage == SPLIT_GATE
                                      else ("metric_groups", "compute_symbol_metrics", "combine_metrics", "groups"))
            parts = [run(first)]
            n = len(json.loads(state.read_text())[key])
            parts += [run(each, str(i)) for i in range(n)]
            parts.append(run(last))
            r = {"wall_s": sum(p["wall_s"] for p in parts), "rows": parts[-1]["rows"],
                 "peak_rss_mb": max(p["peak_rss_mb"] for p in parts), "parts": n,
                 "part_wall_s": [round(p["wall_s"], 2) for p in parts[1:-1]],
                 "part_rss_mb": [round(p["peak_rss_mb"]) for p in parts[1:-1]],
                 "combine_wall_s": parts[-1]["wall_s"], "combine_rss_mb": parts[-1]["peak_rss_mb"]}
            print(f"  {stage}: {n} parts, wall {r['part_wall_s']} s, RSS {r['part_rss_mb']} MB; combine "
                  f"{r['combine_wall_s']:.1f} s, {r['combine_rss_mb']:.0f} MB", flush=True)
        else:
            r = run(stage)
        print(f"  {stage}: {r['wall_s']:.2f} s, {r['peak_rss_mb']:.0f} MB", flush=True)
        rows.append((stage, r))
    print(f"scale {args.scale}, day {args.day} (simulate covers {args.genesis}..{args.day}), home {home}\n")
    floor = (dict(rows).get(FLOOR) or {}).get("wall_s")  # (None when the floor was skipped)
    print("| stage | wall (s) | peak RSS (MB) | rows | rows/s | s per M rows | x floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stage, r in rows:
        n = r.get("rows")
        per = f"{n / r['wall_s']:,.0f} | {r['wall_s'] / n * 1e6:.2f}" if n and r["wall_s"] > 0 else " | "
        times_floor = f"{r['wall_s'] / floor:.1f}" if floor else ""
        print(f"| {stage} | {r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} | {n or ''} | {per} | {times_floor} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": args.scale, "day": args.day, "stages": dict(rows)},
                                              indent=1))


if __name__ == "__main__":
    main()
