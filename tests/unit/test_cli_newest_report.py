"""`venue-risk newest-report` (what `make demo` prints last): the latest day's report PDF, never
the methods document that lives beside the day folders in reports/methods/."""

from __future__ import annotations

from pathlib import Path

from venue_risk.cli import newest_report


def test_newest_report_is_the_latest_day_not_the_methods_document(tmp_path: Path):
    for folder, name in (("2026-11-06", "venue-risk-2026-11-06.pdf"), ("2026-11-07", "venue-risk-2026-11-07.pdf"),
                         ("methods", "venue-risk-methods-0.1.0+gabc.pdf"), ("not-a-day", "venue-risk-x.pdf")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(b"%PDF-1.7\n")
    assert newest_report(tmp_path) == tmp_path / "2026-11-07" / "venue-risk-2026-11-07.pdf"


def test_no_report_yet(tmp_path: Path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "venue-risk-methods-0.1.0.pdf").write_bytes(b"%PDF-1.7\n")
    assert newest_report(tmp_path) is None
