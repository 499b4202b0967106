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
