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
# The class's default (scikit-learn's): one component.
DEFAULT_COMPONENTS = 1
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


def _seed(text: str) -> int:
    seed = _int(text)
    if not 0 <= seed <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return seed


def _expected_kind(default: Any) -> tuple[tuple[type, ...], str]:
    """The value types an option accepts, from its default, and their description."""
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, str):
        return (str,), "text"
    # float, or None for options whose default is computed from the data: all numbers
    return (int, float), "a number"


def _option_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_method_options(method: str, options: Sequence[tuple[str, Any]]) -> None:
    """Refuse ``--option`` names that ``method`` does not accept, and values of the wrong
    type, before any work is done.

    Raises
    ------
    CLIError
        Naming ``--option`` and the first bad option, and listing the valid ones (or the
        type the option takes).
    """
    defaults = method_options(method)
    valid = sorted(defaults)
    for key, value in options:
        given = f"--option {key}={_option_text(value)}"
        if key in valid:
            types, kind = _expected_kind(defaults[key])
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                raise CLIError(
                    f"{given}: method option {key!r} of method {method} takes {kind}, got "
                    f"{_option_text(value)!r}"
                )
            continue
        if not valid:
            raise CLIError(
                f"unknown method option {key!r} ({given}): method {method} takes no method options"
            )
        raise CLIError(
            f"unknown method option {key!r} ({given}) for method {method}; valid options: "
            f"{', '.join(valid)}"
        )


# --------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser, reporting a usage error on one line like every other error."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``numpyro-gmm`` command.

    Returns
    -------
    argparse.ArgumentParser
        Parser with ``--version`` and the subcommands ``fit``, ``predict``, ``score`` and
        ``info``.
    """
    from numpyro_gmm.datasets import list_examples

    parser = _Parser(
        prog=PROG,
        description="Fit Gaussian mixture models (MAP / maximum likelihood) with numpyro_gmm, "
        "and use a saved fit on new rows.",
    )
    # The package's one reading of importlib.metadata.version("numpyro_gmm").
    from numpyro_gmm import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fit = sub.add_parser(
        "fit",
        help="fit a Gaussian mixture to a CSV file or a bundled example",
        description=(
            "Fit a Gaussian mixture to the numeric columns of a CSV file (with a header row) "
            f"or to a bundled example (default: {DEFAULT_EXAMPLE}). Writes the result as an "
            "ArviZ-style netCDF file (groups posterior, sample_stats, log_likelihood, "
            "observed_data, assignments, restarts, em_trace; the layout of "
            "GaussianMixture.to_datatree, loaded back by predict, score, info and "
            "numpyro_gmm.load_gaussian_mixture) and a PNG plot (a pair plot for more than two "
            "columns), and prints a summary; progress goes to stderr about once a second."
        ),
        epilog=f"bundled examples: {', '.join(list_examples())}",
    )
    _add_data_arguments(
        fit,
        data_default=f"none; the example {DEFAULT_EXAMPLE!r} is used when neither DATA.csv nor "
        "--example is given",
        example_default=f"{DEFAULT_EXAMPLE} when no DATA.csv is given",
        columns_default="all numeric columns; a column of text is dropped with a note, a "
        "non-numeric cell in a column of numbers is an error",
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
        "biglearn_em, --option step_size=1.0 for gradient_em, --option max_rounds=5 for "
        "split_merge_em; values are read as numbers, true/false or text; default: none)",
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
        help=f"value >= 0 added to the covariance diagonals (default: {DEFAULTS.reg_covar:g})",
    )
    fit.add_argument(
        "--random-state",
        type=_seed,
        default=None,
        metavar="SEED",
        help="random seed (default: none, a fresh seed that is printed and saved with the fit, "
        "so the run can be repeated)",
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
        default=None,
        metavar="PATH",
        help="output PNG plot of the data and the fitted mixture (default: the --out path "
        "with .png, e.g. fit.png)",
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
    _add_saved_fit_commands(sub)
    return parser


def _add_data_arguments(
    command: argparse.ArgumentParser,
    *,
    data_default: str,
    example_default: str,
    columns_default: str,
) -> None:
    """The rows a command reads: DATA.csv or --example, and --columns (one reader for all)."""
    from numpyro_gmm.datasets import list_examples

    source = command.add_mutually_exclusive_group()
    source.add_argument(
        "data",
        nargs="?",
        metavar="DATA.csv",
        help=f"CSV file with a header row, one observation per row (default: {data_default})",
    )
    source.add_argument(
        "--example",
        metavar="NAME",
        help=f"use a bundled example instead of a file: {', '.join(list_examples())} "
        f"(default: {example_default})",
    )
    command.add_argument(
        "--columns",
        metavar="A,B,...",
        help="comma-separated columns to use; other columns are ignored "
        f"(default: {columns_default})",
    )


def _add_saved_fit_commands(sub: Any) -> None:
    """``predict``, ``score`` and ``info``: commands that read a saved fit."""
    fit_help = "a fit saved by 'numpyro-gmm fit' (or GaussianMixture.to_datatree)"
    data_kwargs = {
        "data_default": "none; give DATA.csv or --example",
        "example_default": "none",
        "columns_default": "the fit's feature names, in the fit's order; name as many "
        "columns as the fit has features to use others",
    }
    predict = sub.add_parser(
        "predict",
        help="label new rows with a saved fit",
        description="Read a saved fit and a CSV file of new rows; write a CSV file with each "
        "row's most probable component (label), the probability of every component "
        "(prob_0, prob_1, ...) and the row's log density under the mixture (log_density), "
        "one line per input row, in order.",
    )
    predict.add_argument("fit_path", metavar="FIT.nc", help=f"{fit_help} (default: none)")
    _add_data_arguments(predict, **data_kwargs)
    predict.add_argument(
        "--out",
        default="-",
        metavar="PATH",
        help="output CSV file; '-' writes to standard output (default: -)",
    )
    score = sub.add_parser(
        "score",
        help="mean per-row log-likelihood of rows under a saved fit",
        description="Print the mean per-row log-likelihood of the rows of a CSV file under a "
        "saved fit (GaussianMixture.score), on one line of standard output.",
    )
    score.add_argument("fit_path", metavar="FIT.nc", help=f"{fit_help} (default: none)")
    _add_data_arguments(score, **data_kwargs)
    info = sub.add_parser(
        "info",
        help="summarize a saved fit",
        description="Print a summary of a saved fit: method, number of components, covariance "
        "type, weights and means, objective, convergence, features and data.",
    )
    info.add_argument("fit_path", metavar="FIT.nc", help=f"{fit_help} (default: none)")
