"""Reading the data to fit: a CSV file or a bundled example.

Column selection (all numeric columns, or ``--columns``), missing-value markers and
finiteness are checked here; every problem is a :class:`~numpyro_gmm.cli.parser.CLIError`
whose message says what to do.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from numpyro_gmm.cli.parser import DEFAULT_EXAMPLE, CLIError


class ColumnNotFoundError(CLIError):
    """A requested column is not in the data (``predict`` adds how to map the fit's features)."""

__all__ = ["MISSING_MARKERS", "load_data"]

#: Cells read as missing values (compared case-insensitively, after stripping blanks).
MISSING_MARKERS = frozenset({"", "na", "nan", "n/a", "null", "none", "-nan", "#n/a"})


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING_MARKERS


def _parse_float(cell: str) -> float | None:
    """Return the float value of a cell, or None when it is not a number."""
    try:
        return float(cell.strip())
    except ValueError:
        return None


def _read_csv(path: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Read a CSV file: header, data rows (as strings) and their line numbers."""
    if not os.path.exists(path):
        raise CLIError(f"data file {path!r} does not exist; give the path of a CSV file")
    if os.path.isdir(path):
        raise CLIError(f"data path {path!r} is a directory; give the path of a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise CLIError(f"data file {path!r} is not UTF-8 text; save it as a UTF-8 CSV") from None
    except OSError as err:
        raise CLIError(f"cannot read data file {path!r}: {err.strerror or err}") from None
    if not text.strip():
        raise CLIError(f"data file {path!r} is empty; it needs a header row and data rows")
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(), dialect)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                continue
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as err:
        raise CLIError(f"cannot parse {path!r} as CSV: {err}") from None
    assert header is not None  # text is not blank
    if all(_parse_float(h) is not None for h in header):
        raise CLIError(
            f"the first row of {path!r} is all numbers; add a header row with column names"
        )
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise CLIError(
                f"line {line} of {path!r} has {len(row)} fields but the header has "
                f"{len(header)}; fix the row or the delimiter"
            )
    if not rows:
        raise CLIError(f"data file {path!r} has a header but no data rows")
    return header, rows, lines


def _select_csv_columns(
    path: str,
    header: list[str],
    rows: list[list[str]],
    lines: list[int],
    columns: list[str] | None,
    note: Any,
    every_column_needed: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Pick the numeric columns (or the requested ones) and convert them to float64."""
    names = list(header)
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if columns is None:
        chosen: list[int] = []
        for j, name in enumerate(names):
            if not name:
                note(f"dropping column {j + 1}, which has no name (row names?)")
                continue
            present = [i for i, row in enumerate(rows) if not _is_missing(row[j])]
            numeric = [_parse_float(rows[i][j]) is not None for i in present]
            if present and all(numeric):
                chosen.append(j)
            elif any(numeric):
                # Numbers with a stray cell: a typo to fix, not a column to drop silently.
                i = present[numeric.index(False)]
                raise CLIError(
                    f"column {name!r} has a non-numeric value {rows[i][j].strip()!r} on line "
                    f"{lines[i]} of {path!r}; fix the value, or name the columns to use with "
                    "--columns"
                )
            else:
                note(f"dropping non-numeric column {name!r}")
        if not chosen:
            raise CLIError(
                f"data file {path!r} has no numeric columns; check the delimiter or "
                "choose columns with --columns"
            )
        if dupes and any(names[j] in dupes for j in chosen):
            raise CLIError(f"duplicate column names in {path!r}: {', '.join(dupes)}; rename them")
    else:
        chosen = []
        for name in columns:
            if name in dupes:
                raise CLIError(f"column {name!r} appears more than once in {path!r}; rename it")
            if name not in names:
                available = ", ".join(repr(n) for n in names if n)
                raise ColumnNotFoundError(
                    f"column {name!r} not found in {path!r}; available columns: {available}"
                )
            chosen.append(names.index(name))
    data = np.empty((len(rows), len(chosen)), dtype=np.float64)
    for jj, j in enumerate(chosen):
        for i, row in enumerate(rows):
            cell = row[j]
            if _is_missing(cell):
                raise CLIError(
                    f"column {names[j]!r} has a missing value on line {lines[i]} of {path!r}; "
                    "remove or fill the incomplete rows"
                )
            value = _parse_float(cell)
            if value is None:
                advice = "fix the value" if every_column_needed else (
                    "fix the value or leave the column out with --columns"
                )
                raise CLIError(
                    f"column {names[j]!r} has a non-numeric value {cell.strip()!r} on line "
                    f"{lines[i]} of {path!r}; {advice}"
                )
            data[i, jj] = value
    return data, [names[j] for j in chosen]


def _check_finite(data: np.ndarray, names: list[str], source: str) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        kind = "a missing (NaN)" if np.isnan(data[i, j]) else "an infinite"
        raise CLIError(
            f"column {names[j]!r} of {source} has {kind} value in data row {i + 1} "
            f"({int(bad.sum())} bad cell(s) in all); remove or fix those rows"
        )


def load_data(
    data: str | None,
    example: str | None,
    columns: str | Sequence[str] | None,
    note: Any = None,
    every_column_needed: bool = False,
) -> tuple[np.ndarray, list[str], str]:
    """Load the rows to fit (or to predict or score), as the command line does.

    Parameters
    ----------
    data : str or None
        Path of a CSV file with a header row.
    example : str or None
        Name of a bundled example; used when ``data`` is None (default ``"faithful"``).
    columns : str, sequence of str or None
        Column names to keep, in this order (a comma-separated string as ``--columns``
        gives them); other columns are ignored. Default: all numeric columns.
    note : callable, optional
        Called with a message for each dropped column.
    every_column_needed : bool
        The columns are a saved fit's features (``predict``, ``score``): none can be left out,
        and the messages do not suggest it.

    Returns
    -------
    x : numpy.ndarray
        Float64 data of shape ``(N, D)``.
    names : list of str
        Column names.
    source : str
        Description of where the data came from.

    Raises
    ------
    CLIError
        For every problem with the input, with a message that says what to do.
    """
    note = note or (lambda msg: None)
    wanted: list[str] | None = None
    if isinstance(columns, str):
        wanted = [c.strip() for c in columns.split(",")]
        if not all(wanted):
            raise CLIError(f"--columns {columns!r} contains an empty name; use e.g. --columns a,b")
        if len(set(wanted)) != len(wanted):
            raise CLIError(f"--columns {columns!r} names a column twice")
    elif columns is not None:
        wanted = [str(c) for c in columns]
    if data is not None:
        header, rows, lines = _read_csv(data)
        x, names = _select_csv_columns(
            data, header, rows, lines, wanted, note, every_column_needed
        )
        source = data
    else:
        from numpyro_gmm.datasets import list_examples, load_example

        name = example if example is not None else DEFAULT_EXAMPLE
        try:
            x, names = load_example(name)
        except ValueError:
            raise CLIError(
                f"unknown example {name!r}; available examples: {', '.join(list_examples())}"
            ) from None
        if wanted is not None:
            missing = [c for c in wanted if c not in names]
            if missing:
                raise ColumnNotFoundError(
                    f"column {missing[0]!r} not found in example {name!r}; available columns: "
                    f"{', '.join(repr(n) for n in names)}"
                )
            x = x[:, [names.index(c) for c in wanted]]
            names = list(wanted)
        source = f"example {name!r}"
    _check_finite(x, names, source)
    return x, names, source
