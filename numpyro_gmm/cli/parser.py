"""The command line's arguments: the parser, its argument types and the option checks.

Defaults and choices come from the package's single definitions
(:data:`numpyro_gmm.pipeline.DEFAULTS`, :data:`numpyro_gmm.pipeline.METHODS`,
:func:`numpyro_gmm.pipeline.method_options`), so the command line and the Python entry
points agree.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from numpyro_gmm._types import COVARIANCE_TYPES
from numpyro_gmm.mixture.init import INIT_METHODS
from numpyro_gmm.pipeline import DEFAULTS, METHODS, method_options

__all__ = [
    "COVARIANCE_TYPES",
    "DEFAULT_EXAMPLE",
    "INIT_PARAMS",
    "METHODS",
    "PROG",
    "CLIError",
    "build_parser",
    "check_method_options",
]

PROG = "numpyro-gmm"
INIT_PARAMS = INIT_METHODS
DEFAULT_EXAMPLE = "faithful"
DEFAULT_COMPONENTS = 2
DEFAULT_METHOD = METHODS[0]


class CLIError(Exception):
    """An input or usage problem, reported as one line on stderr with exit status 2."""


# --------------------------------------------------------------------------- argument types


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


def check_method_options(method: str, options: Sequence[tuple[str, Any]]) -> None:
    """Refuse ``--option`` names that ``method`` does not accept, before any work is done.

    Raises
    ------
    CLIError
        Naming the first unknown option and listing the valid ones.
    """
    valid = sorted(method_options(method))
    for key, value in options:
        if key in valid:
            continue
        given = f"--option {key}={value}"
        if not valid:
            raise CLIError(
                f"unknown method option {key!r} ({given}): method {method} takes no method options"
            )
        raise CLIError(
            f"unknown method option {key!r} ({given}) for method {method}; valid options: "
            f"{', '.join(valid)}"
        )


# --------------------------------------------------------------------------- the parser


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
            "observed_data, restarts, em_trace; the layout of GaussianMixture.to_datatree) "
            "and a PNG plot, and prints a summary."
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
        default=DEFAULT_COMPONENTS,
        metavar="K",
        help=f"number of mixture components (default: {DEFAULT_COMPONENTS})",
    )
    fit.add_argument(
        "--covariance-type",
        choices=COVARIANCE_TYPES,
        default=DEFAULTS.covariance_type,
        help=f"covariance structure: {', '.join(COVARIANCE_TYPES)} "
        f"(default: {DEFAULTS.covariance_type})",
    )
    fit.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help=f"fitting algorithm: {', '.join(METHODS)} (default: {DEFAULT_METHOD})",
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
        default=DEFAULTS.num_restarts,
        metavar="N",
        help="number of initializations (restarts); the best is kept "
        f"(default: {DEFAULTS.num_restarts})",
    )
    fit.add_argument(
        "--init-params",
        choices=INIT_PARAMS,
        default=DEFAULTS.init_params,
        help=f"initialization: {', '.join(INIT_PARAMS)} (default: {DEFAULTS.init_params})",
    )
    fit.add_argument(
        "--max-iter",
        type=_positive_int,
        default=DEFAULTS.max_iter,
        metavar="N",
        help=f"maximum number of iterations per initialization (default: {DEFAULTS.max_iter})",
    )
    fit.add_argument(
        "--tol",
        type=_nonnegative_float,
        default=DEFAULTS.tol,
        metavar="TOL",
        help="convergence threshold on the change of the per-sample average lower bound "
        f"(default: {DEFAULTS.tol:g})",
    )
    fit.add_argument(
        "--reg-covar",
        type=_nonnegative_float,
        default=DEFAULTS.reg_covar,
        metavar="EPS",
        help=f"positive value added to the covariance diagonals (default: {DEFAULTS.reg_covar:g})",
    )
    fit.add_argument(
        "--random-state",
        type=_int,
        default=0,
        metavar="SEED",
        help="random seed (default: 0)",
    )
    precision = fit.add_mutually_exclusive_group()
    precision.add_argument(
        "--x64",
        action="store_true",
        help="compute in float64 (the default, as the class does for float64 data)",
    )
    precision.add_argument(
        "--float32",
        action="store_true",
        help="compute in float32: faster, less precise (default: float64)",
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
