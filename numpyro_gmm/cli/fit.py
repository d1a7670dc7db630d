"""The ``fit`` command: check the request, fit the estimator, report, write the outputs.

The estimator is :class:`numpyro_gmm.GaussianMixture` (so the fit runs the package's one
pipeline, :func:`numpyro_gmm.pipeline.fit_mixture`), and ``fit.nc`` is its
:meth:`~numpyro_gmm.GaussianMixture.to_datatree` with the command line's attributes.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from numpyro_gmm.cli.data import load_data
from numpyro_gmm.cli.output import (
    check_output_paths,
    datatree_attrs,
    format_summary,
    write_datatree,
    write_plot,
)
from numpyro_gmm.cli.parser import PROG, CLIError, check_method_options
from numpyro_gmm.progress import Every

__all__ = ["PROGRESS_SECONDS", "run_fit"]

#: Seconds between the fit's progress lines on stderr (and a last line when it ends), however
#: long an iteration takes.
PROGRESS_SECONDS = 1.0


def _estimator_class() -> Any:
    """Return the ``GaussianMixture`` class used by ``fit`` (imported at call time)."""
    from numpyro_gmm.sklearn import GaussianMixture

    return GaussianMixture


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _fit_failure(err: BaseException, options: list[tuple[str, Any]]) -> str:
    """The message of a failed fit; one the method gives about an option names ``--option``
    (a value of the right type can still be out of range)."""
    message = _first_line(err)
    for key, value in options:
        if re.search(rf"\b{re.escape(key)}\b", message):
            return f"--option {key}={value}: {message}"
    return f"the fit failed: {message}"


def _report_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Print each distinct warning of the fit once, on one line."""
    seen: set[str] = set()
    for w in caught:
        msg = " ".join(str(w.message).split())
        if msg not in seen:
            seen.add(msg)
            print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)


def run_fit(args: argparse.Namespace) -> int:
    """Run ``numpyro-gmm fit`` with parsed arguments.

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    CLIError
        For every input or usage problem, and for a fit that failed.
    """
    quiet = bool(args.quiet)

    def progress(msg: str) -> None:
        if not quiet:
            print(f"{PROG}: {msg}", file=sys.stderr, flush=True)

    def note(msg: str) -> None:
        print(f"{PROG}: note: {msg}", file=sys.stderr, flush=True)

    check_method_options(args.method, args.option)
    out_path: str = args.out
    # The plot is named after the fit it shows, so a second fit does not replace the first's.
    default_plot = str(Path(out_path).with_suffix(".png"))
    plot_path: str | None = None if args.no_plot else (args.plot or default_plot)
    check_output_paths(out_path, plot_path)

    x, names, source = load_data(args.data, args.example, args.columns, note)
    if getattr(args, "float32", False):  # the class computes in the precision of its input
        from numpyro_gmm.validation import check_float32_precision

        # Checked before the conversion, which would hide the loss from the class's check.
        try:
            check_float32_precision(x, name=source, dtype=np.float32)
        except ValueError as err:
            reason = _first_line(err).split(". Subtract")[0]
            raise CLIError(f"{reason}; subtract the column means or drop --float32") from None
        x = x.astype(np.float32)
    n, d = x.shape
    if n < args.components:
        raise CLIError(
            f"{source} has {n} rows, fewer than the {args.components} components asked for; "
            "lower --components or add data"
        )
    if n < 2:
        raise CLIError(f"{source} has only {n} row; a mixture fit needs at least 2")

    from numpyro_gmm.validation import check_reg_covar_scale

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_reg_covar_scale(x, args.reg_covar, name=source)
    for w in caught:
        w.message = str(w.message).replace("use reg_covar", "use --reg-covar")
    _report_warnings(caught)

    if args.random_state is None:
        # The class's default (a fresh seed), drawn here so that it can be printed and saved.
        args.random_state = int(np.random.SeedSequence().entropy % 2**31)
    progress(
        f"fitting {args.components} component{'s' if args.components != 1 else ''} "
        f"({args.covariance_type}, method={args.method}) "
        f"to {n} rows x {d} columns from {source}, random seed {args.random_state} "
        "(--random-state repeats a run)"
    )

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
        verbose_interval=Every(seconds=PROGRESS_SECONDS),
        method=args.method,
        method_options=dict(args.option) or None,
    )
    # Named columns, as a user's DataFrame: the saved fit records them, and the estimator
    # loaded from it checks the columns of new rows.
    import pandas as pd

    frame = pd.DataFrame(x, columns=names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            gm.fit(frame)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
            raise CLIError(_fit_failure(err, args.option)) from None
        labels = np.asarray(gm.predict(frame))
    _report_warnings(caught)

    weights = np.asarray(gm.weights_, dtype=np.float64)
    n_found = weights.shape[0]
    if gm.n_components_found_ != args.components:
        print(
            f"{PROG}: note: method {args.method} found {gm.n_components_found_} components "
            f"before landing on the {args.components} asked for",
            file=sys.stderr,
            flush=True,
        )
    means = np.asarray(gm.means_, dtype=np.float64).reshape(n_found, d)
    covariances = np.asarray(gm.covariances_, dtype=np.float64)
    try:
        # The one writer, in the precision of the fit.
        # Progress is the command line's; the estimator loaded from the file fits quietly.
        gm.verbose = 0
        dt = gm.to_datatree(frame, feature_names=names, attrs=datatree_attrs(args, source))
    except ValueError as err:
        # The fitted parameters are checked before they are saved: a failed fit, not an
        # internal error.
        raise CLIError(f"the fit failed: {_first_line(err)}") from None

    write_datatree(dt, out_path)
    progress(f"wrote {out_path}")

    if plot_path is not None:
        write_plot(x, (weights, means, covariances), args.covariance_type, labels, names, plot_path)
        progress(f"wrote {plot_path}")

    print(format_summary(gm, names, source, n))
    print(f"wrote: {out_path}" + (f", {plot_path}" if plot_path is not None else ""))
    return 0
