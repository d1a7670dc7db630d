"""The commands that use a saved fit: ``predict``, ``score`` and ``info``.

The fit is loaded by the package's loader (:func:`numpyro_gmm.load_gaussian_mixture`), so the
labels, probabilities and scores are those of :class:`numpyro_gmm.GaussianMixture` on the
same saved fit; the rows are read by the same reader as ``fit``'s
(:func:`numpyro_gmm.cli.data.load_data`), with the same checks and messages.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from numpyro_gmm.cli.data import ColumnNotFoundError, load_data
from numpyro_gmm.cli.output import check_output_path, format_summary, write_predictions
from numpyro_gmm.cli.parser import PROG, CLIError

__all__ = ["load_saved_fit", "run_info", "run_predict", "run_score"]


def load_saved_fit(path: str) -> tuple[Any, Any]:
    """The fitted estimator and the tree of a saved fit.

    Raises
    ------
    CLIError
        If the file is missing, unreadable or not a saved Gaussian-mixture fit.
    """
    from numpyro_gmm.saved_fit import load_gaussian_mixture, open_fit

    if not os.path.exists(path):
        raise CLIError(
            f"fit file {path!r} does not exist; give the path of a file written by '{PROG} fit'"
        )
    if os.path.isdir(path):
        raise CLIError(f"fit path {path!r} is a directory; give the path of a fit.nc file")
    try:
        tree = open_fit(path)
        return load_gaussian_mixture(tree), tree
    except ValueError as err:
        message = " ".join(str(err).split())
        raise CLIError(message if repr(path) in message else f"{path!r}: {message}") from None


def _features(tree: Any) -> list[str]:
    return [str(f) for f in tree["posterior"]["feature"].values]


def _require_rows(args: argparse.Namespace) -> None:
    if args.data is None and args.example is None:
        raise CLIError(f"give the rows to {args.command}: DATA.csv or --example NAME")


def _rows(args: argparse.Namespace, tree: Any) -> Any:
    """The rows to predict or score, in float64, named as the fit's features: the fit's
    columns (or ``--columns``, in the order of the features), read as ``fit`` reads its
    data. A float32 fit is evaluated in float64 on them, as ``GaussianMixture`` evaluates
    float64 input."""
    features = _features(tree)
    try:
        x, _, _ = load_data(
            args.data, args.example, args.columns or features, every_column_needed=True
        )
    except ColumnNotFoundError as err:
        if args.columns is None:
            raise CLIError(
                f"{err}; the fit's features are {', '.join(map(repr, features))}: name the "
                "file's columns for them, in order, with --columns"
            ) from None
        raise
    if x.shape[1] != len(features):
        raise CLIError(
            f"--columns names {x.shape[1]} column(s) but the fit has {len(features)} features "
            f"({', '.join(features)}); name one column per feature, in that order"
        )
    import pandas as pd

    return pd.DataFrame(x, columns=features)


def run_predict(args: argparse.Namespace) -> int:
    """Run ``numpyro-gmm predict``: labels, probabilities and log densities of new rows.

    Returns
    -------
    int
        0 on success.
    """
    _require_rows(args)
    if args.out != "-":
        check_output_path(args.out, "--out")
    gm, tree = load_saved_fit(args.fit_path)
    x = _rows(args, tree)
    # The estimator's own three methods (each evaluates the component densities again), so
    # that every column is exactly what GaussianMixture gives on the loaded fit.
    write_predictions(args.out, gm.predict(x), gm.predict_proba(x), gm.score_samples(x))
    if args.out != "-":
        print(f"wrote: {args.out} ({x.shape[0]} rows)")
    return 0


def run_score(args: argparse.Namespace) -> int:
    """Run ``numpyro-gmm score``: print the mean per-row log-likelihood of the rows.

    Returns
    -------
    int
        0 on success.
    """
    _require_rows(args)
    gm, tree = load_saved_fit(args.fit_path)
    x = _rows(args, tree)
    print(repr(float(gm.score(x))))
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Run ``numpyro-gmm info``: a human summary of a saved fit.

    Returns
    -------
    int
        0 on success.
    """
    if _is_model_map(args.fit_path):
        return _info_of_model_map(args.fit_path)
    gm, tree = load_saved_fit(args.fit_path)
    attrs = tree.attrs
    n_rows = int(tree["observed_data"].sizes["obs_id"])
    source = str(attrs.get("data_source", "the saved observed_data"))
    version = attrs.get("numpyro_gmm_version", "unknown")
    lines = [
        f"fit: {args.fit_path} (numpyro_gmm {version}, created {attrs.get('created_at', '?')})",
        f"method: {gm.method}, K={gm.n_components}, covariance_type={gm.covariance_type}",
        f"features: {', '.join(_features(tree))}",
        f"objective: {float(gm.objective_):.6g} ({attrs.get('objective_convention', '')})",
        f"restarts: {np.size(gm.restart_objectives_)}, best {int(attrs['best_restart'])}",
        format_summary(gm, _features(tree), source, n_rows),
    ]
    if "command" in attrs:
        lines.append(f"command: {attrs['command']}")
    print("\n".join(lines))
    sys.stdout.flush()
    return 0


def _is_model_map(path: str) -> bool:
    """Whether ``path`` is a saved NumPyro model's MAP (``MAPResult.to_datatree``)."""
    from numpyro_gmm.saved_fit import open_fit

    try:
        attrs = open_fit(path).attrs
    except (ValueError, OSError):
        return False  # load_saved_fit reports it
    return "mixture_site" in attrs and "covariance_type" not in attrs


def _info_of_model_map(path: str) -> int:
    """``info`` for a NumPyro model's MAP: what the tree holds without the model."""
    from numpyro_gmm.saved_fit import open_fit

    tree = open_fit(path)
    attrs = tree.attrs
    sites = ", ".join(
        f"{name} {tuple(var.shape[2:])}" for name, var in tree["posterior"].data_vars.items()
    )
    restarts = np.asarray(tree["restarts"]["objective"]) if "restarts" in tree.children else []
    lines = [
        f"fit: {path} (numpyro_gmm {attrs.get('numpyro_gmm_version', 'unknown')}, "
        f"created {attrs.get('created_at', '?')})",
        f"NumPyro model MAP: method {attrs.get('method', '?')}, K={attrs.get('n_components')}, "
        f"mixture site {attrs.get('mixture_site')!r}",
        f"objective: {float(attrs['objective']):.6g} ({attrs.get('objective_convention', '')})",
        f"restarts: {np.size(restarts)}, best {int(attrs['best_restart'])}, "
        f"converged: {bool(int(attrs.get('converged', 0)))}, iterations: {attrs.get('n_iter')}",
        f"sites: {sites}",
        "predict and score need the model: in Python, "
        "numpyro_gmm.load_map_result(path, model, *model_args)",
    ]
    print("\n".join(lines))
    sys.stdout.flush()
    return 0
