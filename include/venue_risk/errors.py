"""Errors that name what was wrong with the input: dataset, file, row or column, and what was
expected."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input. The message names the dataset, the file, the column or row, and what was
    expected, so a venue's data engineer can fix the export without reading a traceback."""

    def __init__(self, dataset: str, problem: str, *, file: str | None = None,
                 column: str | None = None, row: int | None = None, expected: str | None = None):
        self.dataset, self.file, self.column, self.row = dataset, file, column, row
        self.problem, self.expected = problem, expected
        parts = [f"dataset {dataset!r}"]
        if file:
            parts.append(f"file {file}")
        if column:
            parts.append(f"column {column!r}")
        if row is not None:
            parts.append(f"row {row}")
        msg = ", ".join(parts) + f": {problem}"
        if expected:
            msg += f" (expected {expected})"
        super().__init__(msg)


class BeforeStartDate(ValueError):
    """A run for a day before the venue's start date (VENUE_RISK_START_DATE): nothing before it
    is the venue's history, so the run fails loudly instead of reporting an empty day."""

    def __init__(self, day: str, start_date: str):
        super().__init__(
            f"day {day} is before the venue's start date {start_date} (VENUE_RISK_START_DATE): "
            f"nothing is reported before it; to backfill earlier history, set VENUE_RISK_START_DATE "
            f"to the first day of that history")
