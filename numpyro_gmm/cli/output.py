"""What ``fit`` leaves behind: checked output paths, the netCDF attrs, the plot, the summary.

The netCDF file itself is written by the package's one DataTree writer
(:meth:`numpyro_gmm.GaussianMixture.to_datatree`); this module only adds the command line's
root attributes (:func:`datatree_attrs`) and writes files atomically
(:mod:`numpyro_gmm.atomic`), so a failure or an interruption never leaves a partial file.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from numpyro_gmm.cli.parser import DEFAULT_EXAMPLE, PROG, CLIError

__all__ = [
    "check_output_paths",
    "datatree_attrs",
    "check_output_path",
    "format_summary",
    "write_datatree",
    "write_plot",
    "write_predictions",
]


def check_output_path(path: str, option: str) -> None:
    """Refuse an output path that is a directory or whose directory is missing or read-only."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f"{option} {path!r} is a directory; give a file name")
    if not os.path.isdir(directory):
        raise CLIError(f"the directory of {option} {path!r} does not exist; create it first")
    if not os.access(directory, os.W_OK):
        raise CLIError(f"cannot write to the directory of {option} {path!r}; choose another path")


def check_output_paths(out_path: str, plot_path: str | None) -> None:
    """Refuse output paths that cannot be written, before any work is done.

    Raises
    ------
    CLIError
        If a path is a directory, its directory is missing or not writable, or ``--out``
        and ``--plot`` name the same file.
    """
    check_output_path(out_path, "--out")
    if plot_path is not None:
        check_output_path(plot_path, "--plot")
        if os.path.abspath(plot_path) == os.path.abspath(out_path):
            raise CLIError("--out and --plot name the same file; give two different paths")


def datatree_attrs(args: argparse.Namespace, source: str) -> dict[str, Any]:
    """The command line's root attributes of ``fit.nc`` (added to the writer's own)."""
    return {
        "data_source": source,
        "n_init": args.n_init,
        "init_params": args.init_params,
        "max_iter": args.max_iter,
        "tol": args.tol,
        "reg_covar": args.reg_covar,
        "random_state": args.random_state,
        "x64": bool(args.x64),
        "float32": bool(getattr(args, "float32", False)),
        "command": " ".join([PROG, "fit", *_argv_for_attrs(args)]),
    }


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
    if getattr(args, "float32", False):
        words.append("--float32")
    return words


def write_datatree(dt: Any, path: str) -> None:
    """Write the DataTree to netCDF atomically (the old file stays until the new is whole)."""
    from numpyro_gmm.atomic import write_datatree_atomic

    write_datatree_atomic(dt, path)


def write_plot(
    x: np.ndarray,
    params: tuple[np.ndarray, np.ndarray, np.ndarray],
    covariance_type: str,
    labels: np.ndarray,
    names: list[str],
    path: str,
) -> None:
    """Plot the data coloured by component and the fitted mixture to a PNG, atomically: one
    panel for one or two features, a pair plot of every pair for more."""
    from matplotlib.figure import Figure

    from numpyro_gmm.atomic import atomic_path
    from numpyro_gmm.plotting import PAIR_PLOT_MAX_FEATURES, plot_mixture, plot_mixture_pairs

    weights, means, covariances = params
    d = means.shape[1]
    if d > 2:  # every pair of features, not only the first two
        side = max(6.4, 2.2 * min(d, PAIR_PLOT_MAX_FEATURES))
        fig = Figure(figsize=(side, side), layout="constrained")
        plot_mixture_pairs(
            x, weights, means, covariances, covariance_type, labels=labels,
            feature_names=names, fig=fig,
        )  # fmt: skip
    else:
        fig = Figure(figsize=(6.4, 4.8), layout="constrained")
        plot_mixture(
            x, weights, means, covariances, covariance_type, labels=labels,
            feature_names=names, ax=fig.add_subplot(),
        )  # fmt: skip
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def format_summary(gm: Any, names: list[str], source: str, n_rows: int) -> str:
    """The summary of a fitted (or loaded) estimator printed by ``fit`` and ``info``: data,
    model, convergence, objective, components."""
    weights = np.asarray(gm.weights_, dtype=np.float64)
    means = np.asarray(gm.means_, dtype=np.float64)
    objective = float(gm.objective_)
    lines = [
        f"data: {source}, {n_rows} rows, columns {', '.join(names)}",
        f"model: K={gm.n_components} component{'s' if gm.n_components != 1 else ''}, "
        f"covariance_type={gm.covariance_type}, "
        f"method={gm.method}, n_init={gm.n_init}",
        f"converged: {bool(gm.converged_)} after {int(gm.n_iter_)} iterations",
        f"log-likelihood: {objective:.6g} (per row: {objective / n_rows:.6g})",
        "component  weight    mean",
    ]
    for j in range(weights.shape[0]):
        mean_txt = "  ".join(f"{names[c]}={means[j, c]:.6g}" for c in range(len(names)))
        lines.append(f"{j:<9d}  {weights[j]:<8.4f}  {mean_txt}")
    return "\n".join(lines)


def write_predictions(
    path: str, labels: np.ndarray, probabilities: np.ndarray, log_density: np.ndarray
) -> None:
    """Write ``predict``'s CSV (to stdout for ``-``; a file atomically).

    Numbers are written with 17 significant digits, so they read back exactly.
    """
    import csv
    import sys

    from numpyro_gmm.atomic import atomic_path

    header = ["label", *(f"prob_{k}" for k in range(probabilities.shape[1])), "log_density"]

    def write(stream: Any) -> None:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        for label, probs, density in zip(labels, probabilities, log_density, strict=True):
            writer.writerow([int(label), *(f"{p:.17g}" for p in probs), f"{float(density):.17g}"])

    if path == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        write(fh)
