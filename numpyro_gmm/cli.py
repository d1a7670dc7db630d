"""Command line: ``numpyro-gmm fit`` fits a Gaussian mixture to a CSV file or a bundled example.

Examples
--------
Fit two full-covariance components to the bundled Old Faithful data, writing ``fit.nc``
(an ArviZ-style netCDF file) and ``fit.png``::

    numpyro-gmm fit
    numpyro-gmm fit --example galaxies -k 4 --covariance-type spherical --out galaxies.nc
    numpyro-gmm fit data.csv --columns height,weight -k 3 --no-plot

Errors in the input (missing file or column, non-numeric or missing cells, too few rows) are
reported on one line of standard error and give exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from numpyro_gmm._types import COVARIANCE_TYPES as _COVARIANCE_TYPES
from numpyro_gmm.mixture.init import INIT_METHODS
from numpyro_gmm.sklearn import METHODS

__all__ = ["METHODS", "main"]

PROG = "numpyro-gmm"

COVARIANCE_TYPES = _COVARIANCE_TYPES
INIT_PARAMS = INIT_METHODS
DEFAULT_EXAMPLE = "faithful"

# Cells read as missing values (compared case-insensitively, after stripping blanks).
_MISSING_MARKERS = frozenset({"", "na", "nan", "n/a", "null", "none", "-nan", "#n/a"})


class CLIError(Exception):
    """An input or usage problem, reported as one line on stderr with exit status 2."""


# --------------------------------------------------------------------------- argument parsing


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _method_option(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE``; VALUE becomes an int, float, bool or stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return key.strip(), lowered == "true"
    for convert in (int, float):
        try:
            return key.strip(), convert(value)
        except ValueError:
            pass
    return key.strip(), value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``numpyro-gmm`` command.

    Returns
    -------
    argparse.ArgumentParser
        Parser with the ``fit`` subcommand.
    """
    from numpyro_gmm.datasets import list_examples

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fit Gaussian mixture models (MAP / maximum likelihood) with numpyro_gmm.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fit = sub.add_parser(
        "fit",
        help="fit a Gaussian mixture to a CSV file or a bundled example",
        description=(
            "Fit a Gaussian mixture to the numeric columns of a CSV file (with a header row) "
            f"or to a bundled example (default: {DEFAULT_EXAMPLE}). Writes the result as an "
            "ArviZ-style netCDF file (groups posterior, sample_stats, log_likelihood, "
            "observed_data, em_trace) and a PNG plot, and prints a summary."
        ),
        epilog=f"bundled examples: {', '.join(list_examples())}",
    )
    source = fit.add_mutually_exclusive_group()
    source.add_argument(
        "data",
        nargs="?",
        metavar="DATA.csv",
        help=(
            "CSV file with a header row, one observation per row "
            f"(default: none; the example {DEFAULT_EXAMPLE!r} is used when neither DATA.csv "
            "nor --example is given)"
        ),
    )
    source.add_argument(
        "--example",
        metavar="NAME",
        help=f"use a bundled example instead of a file: {', '.join(list_examples())} "
        f"(default: {DEFAULT_EXAMPLE} when no DATA.csv is given)",
    )
    fit.add_argument(
        "--columns",
        metavar="A,B,...",
        help="comma-separated columns to use (default: all numeric columns; "
        "non-numeric columns are dropped with a note)",
    )
    fit.add_argument(
        "-k",
        "--components",
        type=_positive_int,
        default=2,
        metavar="K",
        help="number of mixture components (default: 2)",
    )
    fit.add_argument(
        "--covariance-type",
        choices=COVARIANCE_TYPES,
        default="full",
        help="covariance structure: full, tied, diag or spherical (default: full)",
    )
    fit.add_argument(
        "--method",
        choices=METHODS,
        default=METHODS[0],
        help=f"fitting algorithm: {', '.join(METHODS)} (default: {METHODS[0]})",
    )
    fit.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_method_option,
        help="a method option, repeatable (e.g. --option weight_smoothing=0.2 for "
        "biglearn_em, --option step_size=1.0 for gradient_em; values are read as numbers, "
        "true/false or text; default: none)",
    )
    fit.add_argument(
        "--n-init",
        type=_positive_int,
        default=8,
        metavar="N",
        help="number of initializations (restarts); the best is kept (default: 8)",
    )
    fit.add_argument(
        "--init-params",
        choices=INIT_PARAMS,
        default="k-means++",
        help="initialization: kmeans, k-means++, random or random_from_data (default: k-means++)",
    )
    fit.add_argument(
        "--max-iter",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="maximum number of iterations per initialization (default: 1000)",
    )
    fit.add_argument(
        "--tol",
        type=_nonnegative_float,
        default=1e-6,
        metavar="TOL",
        help="convergence threshold on the change of the per-sample average lower bound "
        "(default: 1e-06)",
    )
    fit.add_argument(
        "--reg-covar",
        type=_nonnegative_float,
        default=1e-6,
        metavar="EPS",
        help="positive value added to the covariance diagonals (default: 1e-06)",
    )
    fit.add_argument(
        "--random-state",
        type=_int,
        default=0,
        metavar="SEED",
        help="random seed (default: 0)",
    )
    fit.add_argument(
        "--x64",
        action="store_true",
        help="compute in float64 (enables jax_enable_x64; default: off, float32)",
    )
    fit.add_argument(
        "--out",
        default="fit.nc",
        metavar="PATH",
        help="output netCDF file, ArviZ-style DataTree (default: fit.nc)",
    )
    plot = fit.add_mutually_exclusive_group()
    plot.add_argument(
        "--plot",
        default="fit.png",
        metavar="PATH",
        help="output PNG plot of the data and the fitted mixture (default: fit.png)",
    )
    plot.add_argument(
        "--no-plot",
        action="store_true",
        help="do not write a plot (default: off, a plot is written)",
    )
    fit.add_argument(
        "--quiet",
        action="store_true",
        help="do not print progress to stderr (default: off)",
    )
    return parser


# --------------------------------------------------------------------------- data loading


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in _MISSING_MARKERS


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
            cells = [row[j] for row in rows]
            present = [c for c in cells if not _is_missing(c)]
            if present and all(_parse_float(c) is not None for c in present):
                chosen.append(j)
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
                raise CLIError(
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
                raise CLIError(
                    f"column {names[j]!r} has a non-numeric value {cell.strip()!r} on line "
                    f"{lines[i]} of {path!r}; fix the value or leave the column out with "
                    "--columns"
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
    data: str | None, example: str | None, columns: str | None, note: Any = None
) -> tuple[np.ndarray, list[str], str]:
    """Load the data to fit, as the command line does.

    Parameters
    ----------
    data : str or None
        Path of a CSV file with a header row.
    example : str or None
        Name of a bundled example; used when ``data`` is None (default ``"faithful"``).
    columns : str or None
        Comma-separated column names to keep; default all numeric columns.
    note : callable, optional
        Called with a message for each dropped column.

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
    if columns is not None:
        wanted = [c.strip() for c in columns.split(",")]
        if not all(wanted):
            raise CLIError(f"--columns {columns!r} contains an empty name; use e.g. --columns a,b")
        if len(set(wanted)) != len(wanted):
            raise CLIError(f"--columns {columns!r} names a column twice")
    if data is not None:
        header, rows, lines = _read_csv(data)
        x, names = _select_csv_columns(data, header, rows, lines, wanted, note)
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
                raise CLIError(
                    f"column {missing[0]!r} not found in example {name!r}; available columns: "
                    f"{', '.join(repr(n) for n in names)}"
                )
            x = x[:, [names.index(c) for c in wanted]]
            names = list(wanted)
        source = f"example {name!r}"
    _check_finite(x, names, source)
    return x, names, source


# --------------------------------------------------------------------------- fitting


def _estimator_class() -> Any:
    """Return the ``GaussianMixture`` class used by ``fit`` (imported at call time)."""
    from numpyro_gmm.sklearn import GaussianMixture

    return GaussianMixture


def _check_output_path(path: str, option: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f"{option} {path!r} is a directory; give a file name")
    if not os.path.isdir(directory):
        raise CLIError(f"the directory of {option} {path!r} does not exist; create it first")
    if not os.access(directory, os.W_OK):
        raise CLIError(f"cannot write to the directory of {option} {path!r}; choose another path")


def _format_summary(
    gm: Any, names: list[str], source: str, x: np.ndarray, objective: float, args: Any
) -> str:
    weights = np.asarray(gm.weights_, dtype=np.float64)
    means = np.asarray(gm.means_, dtype=np.float64)
    n, d = x.shape
    lines = [
        f"data: {source}, {n} rows, columns {', '.join(names)}",
        f"model: {args.components} components, covariance_type={args.covariance_type}, "
        f"method={args.method}, n_init={args.n_init}",
        f"converged: {bool(gm.converged_)} after {int(gm.n_iter_)} iterations",
        f"log-likelihood: {objective:.6g} (per row: {objective / n:.6g})",
        "component  weight    mean",
    ]
    for j in range(weights.shape[0]):
        mean_txt = "  ".join(f"{names[c]}={means[j, c]:.6g}" for c in range(d))
        lines.append(f"{j:<9d}  {weights[j]:<8.4f}  {mean_txt}")
    return "\n".join(lines)


def _run_fit(args: argparse.Namespace) -> int:
    quiet = bool(args.quiet)

    def progress(msg: str) -> None:
        if not quiet:
            print(f"{PROG}: {msg}", file=sys.stderr, flush=True)

    def note(msg: str) -> None:
        print(f"{PROG}: note: {msg}", file=sys.stderr, flush=True)

    out_path: str = args.out
    plot_path: str | None = None if args.no_plot else args.plot
    _check_output_path(out_path, "--out")
    if plot_path is not None:
        _check_output_path(plot_path, "--plot")
        if os.path.abspath(plot_path) == os.path.abspath(out_path):
            raise CLIError("--out and --plot name the same file; give two different paths")

    x, names, source = load_data(args.data, args.example, args.columns, note)
    n, d = x.shape
    if n < args.components:
        raise CLIError(
            f"{source} has {n} rows, fewer than the {args.components} components asked for; "
            "lower --components or add data"
        )
    if n < 2:
        raise CLIError(f"{source} has only {n} row; a mixture fit needs at least 2")

    from numpyro_gmm.validation import check_reg_covar_scale

    try:
        check_reg_covar_scale(x, args.reg_covar, name=source)
    except ValueError as err:
        raise CLIError(str(err).replace("lower reg_covar", "lower --reg-covar")) from None

    progress(
        f"fitting {args.components} components ({args.covariance_type}, method={args.method}) "
        f"to {n} rows x {d} columns from {source}"
    )

    x64_before: bool | None = None
    if args.x64:
        import jax

        x64_before = bool(jax.config.read("jax_enable_x64"))
        jax.config.update("jax_enable_x64", True)
    try:
        estimator = _estimator_class()
        gm = estimator(
            n_components=args.components,
            covariance_type=args.covariance_type,
            tol=args.tol,
            reg_covar=args.reg_covar,
            max_iter=args.max_iter,
            n_init=args.n_init,
            init_params=args.init_params,
            random_state=args.random_state,
            verbose=0 if quiet else 1,
            verbose_interval=10,
            method=args.method,
            method_options=dict(args.option) or None,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                gm.fit(x)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise CLIError(f"the fit failed: {first}") from None
            labels = np.asarray(gm.predict(x))
        seen: set[str] = set()
        for w in caught:
            msg = " ".join(str(w.message).split())
            if msg not in seen:
                seen.add(msg)
                print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)

        weights = np.asarray(gm.weights_, dtype=np.float64)
        # Gradient EM prunes and merges: it may return another number of components.
        n_found = weights.shape[0]
        if n_found != args.components:
            print(
                f"{PROG}: warning: method {args.method} found {n_found} components where "
                f"{args.components} were asked for; the output has {n_found}",
                file=sys.stderr,
                flush=True,
            )
        means = np.asarray(gm.means_, dtype=np.float64).reshape(n_found, d)
        covariances = np.asarray(gm.covariances_, dtype=np.float64)
        lower_bounds = np.asarray(getattr(gm, "lower_bounds_", []), dtype=np.float64)
    finally:
        if x64_before is not None:
            import jax

            jax.config.update("jax_enable_x64", x64_before)

    from numpyro_gmm.results import pointwise_log_likelihood, write_datatree_atomic

    try:
        objective = getattr(gm, "objective_", None)
        if objective is None:
            objective = np.sum(
                pointwise_log_likelihood(x, weights, means, covariances, args.covariance_type)
            )
        objective = float(objective)
        dt = _to_datatree(
            gm, args, x, names, source, (weights, means, covariances), lower_bounds, objective
        )
    except ValueError as err:
        # The fitted parameters are checked before they are saved (e.g. a covariance that
        # is not positive definite in float64): a failed fit, not an internal error.
        raise CLIError(f"the fit failed: {str(err).strip().splitlines()[0]}") from None
    write_datatree_atomic(dt, out_path)
    progress(f"wrote {out_path}")

    if plot_path is not None:
        from matplotlib.figure import Figure

        from numpyro_gmm.plotting import plot_mixture
        from numpyro_gmm.results import atomic_path

        fig = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = fig.add_subplot()
        plot_mixture(
            x,
            weights,
            means,
            covariances,
            args.covariance_type,
            labels=labels,
            feature_names=names,
            ax=ax,
        )
        with atomic_path(plot_path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        progress(f"wrote {plot_path}")

    print(_format_summary(gm, names, source, x, objective, args))
    print(f"wrote: {out_path}" + (f", {plot_path}" if plot_path is not None else ""))
    return 0


def _to_datatree(
    gm: Any,
    args: argparse.Namespace,
    x: np.ndarray,
    names: list[str],
    source: str,
    params: tuple[np.ndarray, np.ndarray, np.ndarray],
    lower_bounds: np.ndarray,
    objective: float,
) -> Any:
    """The fit as an ArviZ-style DataTree, with the command line's options as attributes.

    Raises
    ------
    ValueError
        If the fitted parameters are invalid (e.g. a covariance that is not positive
        definite).
    """
    from numpyro_gmm.results import gmm_to_datatree

    weights, means, covariances = params
    return gmm_to_datatree(
        weights=weights,
        means=means,
        covariances=covariances,
        covariance_type=args.covariance_type,
        lower_bounds=lower_bounds,
        converged=bool(gm.converged_),
        n_iter=int(gm.n_iter_),
        objective=objective,
        x=x,
        feature_names=names,
        attrs={
            "method": args.method,
            "data_source": source,
            "n_init": args.n_init,
            "init_params": args.init_params,
            "max_iter": args.max_iter,
            "tol": args.tol,
            "reg_covar": args.reg_covar,
            "random_state": args.random_state,
            "x64": bool(args.x64),
            "objective_convention": (
                "sample_stats.lp is the total log-likelihood of the data at the fitted "
                "parameters (sum over rows); em_trace.lower_bound is the per-iteration "
                "objective trace of the best initialization as reported by the estimator"
            ),
            "command": " ".join([PROG, "fit", *_argv_for_attrs(args)]),
        },
    )


def _argv_for_attrs(args: argparse.Namespace) -> list[str]:
    """Reconstruct the fit options as command-line words (recorded in the output attrs)."""
    words: list[str] = []
    if args.data is not None:
        words.append(args.data)
    else:
        words += ["--example", args.example or DEFAULT_EXAMPLE]
    if args.columns is not None:
        words += ["--columns", args.columns]
    words += [
        "--components", str(args.components),
        "--covariance-type", args.covariance_type,
        "--method", args.method,
        *(f"--option={key}={value}" for key, value in args.option),
        "--n-init", str(args.n_init),
        "--init-params", args.init_params,
        "--max-iter", str(args.max_iter),
        "--tol", repr(args.tol),
        "--reg-covar", repr(args.reg_covar),
        "--random-state", str(args.random_state),
    ]  # fmt: skip
    if args.x64:
        words.append("--x64")
    return words


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``numpyro-gmm`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for usage or input errors (reported on one line of
        stderr as ``numpyro-gmm: error: ...``), 1 for an unexpected internal error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, or a usage error already reported by argparse
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _run_fit(args)
    except CLIError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f" {err.filename!r}" if getattr(err, "filename", None) else ""
        print(f"{PROG}: error: cannot write{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line never shows a traceback
        msg = " ".join(str(err).split()) or "no message"
        print(
            f"{PROG}: error: internal error ({type(err).__name__}: {msg}); please report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
