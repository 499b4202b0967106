"""`venue-risk`: the command line (no Airflow needed).

  venue-risk simulate --scale demo --start 2026-11-01 --days 7 [--out DIR] [--seed 7]
  venue-risk dates --start 2026-11-01 --days 7          one ISO date per line
  venue-risk run-day --date 2026-11-05                  every stage for one day, in this process
  venue-risk reprocess --from 2026-11-03 [--to DAY]     recompute a day and every later day, in order
  venue-risk newest-report                              path of the newest PDF under reports/
  venue-risk import FORMAT --input FILE [FILE...] --out ROOT [--date D] [--reference FILE]
                                                        public market data (binance-ws, ...) into a
                                                        `files` root with its coverage manifest
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


def newest_report(reports: Path) -> Path | None:
    """The PDF of the latest report date under `reports` (reports/<YYYY-MM-DD>/venue-risk-*.pdf;
    other folders, such as reports/methods/ with the methods document, are not reports)."""
    from venue_risk.pipeline import is_iso_date

    pdfs = sorted(p for p in reports.glob("*/venue-risk-*.pdf") if is_iso_date(p.parent.name))
    return pdfs[-1] if pdfs else None


def _smtp_send():
    """Mail through the SMTP connection the DAG uses (AIRFLOW_CONN_SMTP_DEFAULT), or None (the
    outbox) when it is not set."""
    import os

    from venue_risk.deliver import smtp_sender_from_uri

    uri = os.environ.get("AIRFLOW_CONN_SMTP_DEFAULT", "").strip()
    return smtp_sender_from_uri(uri) if uri else None


def _import(args: argparse.Namespace) -> int:
    """`venue-risk import`: dispatch to the format's importer; one line per dataset written.
    Bad input (unknown format, missing file, unreadable line) exits 2 with the message."""
    from venue_risk.importers import importer

    try:
        run = importer(args.format)
        missing = [str(p) for p in args.input if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"input file(s) not found: {', '.join(missing)}")
        summary = run(list(args.input), args.out, args.date, args.reference)
    except (ValueError, OSError, ModuleNotFoundError) as exc:
        print(f"venue-risk import {args.format}: {exc}", file=sys.stderr)
        return 2
    datasets = summary.get("datasets", {})
    for name, item in datasets.items():
        rows, days = (item["rows"], item["days"]) if isinstance(item, dict) else (item, summary.get("days", []))
        print(f"{name:18} {rows:>9} rows  {', '.join(days)}")
    if not datasets:
        print(f"nothing written for {args.date or 'the inputs'}", file=sys.stderr)
    for note in summary.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {summary.get('out', args.out)}")
    return 0


#: The project's docs/ folder (beside include/ in a checkout).
PROJECT_DOCS = Path(__file__).resolve().parents[2] / "docs"


def _docs(args: argparse.Namespace) -> int:
    from venue_risk.docs import stale_blocks, write_blocks

    paths = sorted(Path(args.dir).glob("*.md"))
    if not paths:
        print(f"venue-risk docs: no markdown files in {args.dir}", file=sys.stderr)
        return 1
    if args.check:
        stale = stale_blocks(paths)
        for item in stale:
            print(f"stale generated block: {item}")
        return 1 if stale else 0
    for path in write_blocks(paths):
        print(f"rewrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="venue-risk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="write canonical files of the synthetic venue")
    sim.add_argument("--scale", default="demo", choices=["tiny", "demo", "large"])
    sim.add_argument("--start", type=_date, required=True)
    sim.add_argument("--days", type=int, default=1)
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument("--out", type=Path, default=None,
                     help="output folder (default: the simulated source's cache, so the DAG reads it)")
    dates = sub.add_parser("dates", help="print the dates of a range, one per line")
    dates.add_argument("--start", type=_date, required=True)
    dates.add_argument("--days", type=int, default=1)
    run = sub.add_parser("run-day", help="run every stage for one day without Airflow")
    run.add_argument("--date", type=_date, required=True)
    rep = sub.add_parser("reprocess", help="recompute a day and every later day in date order (after a "
                         "rerun left later days on a stale baseline); changed mailed reports go out REVISED")
    rep.add_argument("--from", dest="start", type=_date, required=True)
    rep.add_argument("--to", dest="end", type=_date, default=None,
                     help="last day (default: the latest day with a report, metrics or a failure)")
    sub.add_parser("newest-report", help="print the path of the newest PDF report")
    imp = sub.add_parser("import", help="import public market data (e.g. Binance WebSocket captures) into a "
                         "`files` root: canonical partitions + _coverage.json")
    imp.add_argument("format", metavar="FORMAT", help="binance-ws, binance-public or tardis")
    imp.add_argument("--input", nargs="+", type=Path, required=True, metavar="FILE")
    imp.add_argument("--out", type=Path, required=True, metavar="ROOT")
    imp.add_argument("--date", type=_date, default=None, help="keep only this UTC day")
    imp.add_argument("--reference", type=Path, default=None, metavar="FILE",
                     help="instrument reference file replacing the shipped one")
    docs = sub.add_parser("docs", help="rewrite the generated blocks of docs/*.md from the code (or --check them)")
    docs.add_argument("--dir", type=Path, default=PROJECT_DOCS, help=f"default: {PROJECT_DOCS}")
    docs.add_argument("--check", action="store_true", help="list the blocks that differ; exit 1 if any")
    meth = sub.add_parser("methods", help="render the methods document (PDF and HTML) for this code version")
    meth.add_argument("--out", type=Path, default=None, help="folder (default: <reports>/methods)")
    args = parser.parse_args(argv)
    if args.command == "import":
        return _import(args)
    if args.command == "docs":
        return _docs(args)

    from venue_risk.settings import Settings

    settings = Settings.from_env()
    if args.command == "dates":
        from venue_risk.airflow_days import day_range  # (imports no Airflow)

        for day in day_range(args.start, args.days):
            print(day.isoformat())
        return 0
    if args.command == "simulate":
        import time

        from venue_risk.simulate import simulate

        seed = args.seed if args.seed is not None else settings.sim_seed
        out = args.out or settings.paths.simulated / f"{args.scale}-seed{seed}"
        t0 = time.perf_counter()
        days = simulate(args.scale, args.start, args.days, out, seed=seed)
        print(f"simulated {len(days)} day(s) of the {args.scale} venue into {out} "
              f"in {time.perf_counter() - t0:.1f} s")
        return 0
    if args.command == "methods":
        from venue_risk.pipeline import code_version
        from venue_risk.report import render_methods

        paths = render_methods(args.out or settings.paths.reports / "methods", code_version(settings.paths.home))
        print(paths["pdf"])
        return 0
    if args.command == "run-day":
        from venue_risk.pipeline import run_day

        from venue_risk.errors import BeforeStartDate, InputError
        from venue_risk.quality import DataQualityError

        try:
            result = run_day(args.date, settings, send=_smtp_send())
        except (InputError, DataQualityError, BeforeStartDate) as exc:
            # bad input is the user's to fix: the message names it; no traceback
            print(f"venue-risk run-day {args.date}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(result["report"]["pdf"])
        return 0
    if args.command == "reprocess":
        from venue_risk.pipeline import reprocess

        for row in reprocess(args.start, settings, _smtp_send(), end=args.end):
            print(f"{row['day']}  {row['status'].upper():6}  delivery {row['delivery']}"
                  f"{' (REVISED)' if row['revised'] else ''}")
        return 0
    if args.command == "newest-report":
        pdf = newest_report(settings.paths.reports)
        if pdf is None:
            print(f"no report under {settings.paths.reports}", file=sys.stderr)
            return 1
        print(pdf)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
