"""Quick-look plots of a fitted Gaussian mixture (matplotlib).

matplotlib is imported inside the functions, so importing this module is cheap and does not
choose a backend. ``pyplot`` is used only when no ``ax`` is given; the command line draws on a
bare :class:`matplotlib.figure.Figure`, which needs no GUI backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from numpyro_gmm.density import expand_covariances, weighted_component_log_pdf

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_map_on_posterior", "plot_mixture"]

# Radii of the drawn ellipses, in standard deviations.
_SIGMAS: tuple[float, ...] = (1.0, 2.0)


def _predict_labels(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, cov_full: np.ndarray
) -> np.ndarray:
    """Most probable component of each row (from full covariances)."""
    with np.errstate(divide="ignore"):
        log_prob = weighted_component_log_pdf(x, weights, means, cov_full, "full")
    return np.argmax(log_prob, axis=1)


def _ellipse_xy(mean: np.ndarray, cov: np.ndarray, radius: float, n: int = 100) -> np.ndarray:
    """Points on the ``radius``-sigma ellipse of a 2-D Gaussian, shape (n, 2)."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0.0, None)
    t = np.linspace(0.0, 2.0 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)])  # (2, n)
    return (mean[:, None] + radius * (vecs * np.sqrt(vals)) @ circle).T


def plot_mixture(
    x: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    covariance_type: str,
    *,
    labels: Any = None,
    feature_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Plot data together with a fitted Gaussian mixture.

    * ``D == 1``: a density histogram of the data, each weighted component density
      ``w_k N(x | mu_k, sigma_k^2)`` and the mixture density.
    * ``D == 2``: a scatter plot coloured by component label, with the 1- and 2-sigma
      ellipses of each component and its mean marked.
    * ``D > 2``: the same as ``D == 2`` for the first two features, using the marginal
      (2 x 2) covariances; the title says so.

    Parameters
    ----------
    x : array_like
        Data, shape ``(N, D)`` (1-D is read as ``(N, 1)``).
    weights : array_like
        Mixture weights, shape ``(K,)``.
    means : array_like
        Component means, shape ``(K, D)``.
    covariances : array_like
        Covariances in scikit-learn's layout for ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Layout of ``covariances``.
    labels : array_like of int, optional
        Component label of each row, used to colour the scatter plot. Default: the most
        probable component under the given parameters.
    feature_names : sequence of str, optional
        Axis labels; default ``x0, x1, ...``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is created when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.
    """
    import matplotlib

    xx = np.asarray(x, dtype=np.float64)
    if xx.ndim == 1:
        xx = xx[:, None]
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    if mu.ndim != 2 or xx.ndim != 2 or mu.shape[1] != xx.shape[1] or mu.shape[0] != w.shape[0]:
        raise ValueError(f"inconsistent shapes: x {xx.shape}, weights {w.shape}, means {mu.shape}")
    k, d = mu.shape
    cov = expand_covariances(covariances, covariance_type, k, d)
    names = (
        [f"x{i}" for i in range(d)] if feature_names is None else [str(f) for f in feature_names]
    )
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names but the data have {d} features")

    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.8), layout="constrained")
    else:
        fig = ax.get_figure(root=True)
    cmap = matplotlib.colormaps["tab10"]
    colors = [cmap(j % 10) for j in range(k)]

    if d == 1:
        data = xx[:, 0]
        ax.hist(data, bins="auto", density=True, color="0.8", edgecolor="0.6", label="data")
        sd = np.sqrt(cov[:, 0, 0])
        lo = min(data.min(), float(np.min(mu[:, 0] - 3 * sd)))
        hi = max(data.max(), float(np.max(mu[:, 0] + 3 * sd)))
        grid = np.linspace(lo, hi, 400)
        comp = (
            w[None, :]
            * np.exp(-0.5 * ((grid[:, None] - mu[None, :, 0]) / sd[None, :]) ** 2)
            / (np.sqrt(2.0 * np.pi) * sd[None, :])
        )
        ax.plot(grid, comp.sum(axis=1), color="k", lw=2.5, alpha=0.6, label="mixture")
        for j in range(k):
            ax.plot(
                grid,
                comp[:, j],
                color=colors[j],
                lw=1.5,
                ls="--",
                label=f"component {j} (w={w[j]:.2f})",
            )
        ax.set_xlabel(names[0])
        ax.set_ylabel("density")
        ax.set_title(f"Gaussian mixture, K={k} ({covariance_type})")
        ax.legend(frameon=False, fontsize="small")
        return fig

    if labels is None:
        lab = _predict_labels(xx, w, mu, cov)
    else:
        lab = np.asarray(labels).astype(int).ravel()
        if lab.shape[0] != xx.shape[0]:
            raise ValueError(f"labels has {lab.shape[0]} entries but x has {xx.shape[0]} rows")
    point_colors = [colors[j % k] for j in lab]
    ax.scatter(xx[:, 0], xx[:, 1], c=point_colors, s=10, alpha=0.7, linewidths=0)
    for j in range(k):
        m2 = mu[j, :2]
        c2 = cov[j, :2, :2]
        for r, style in zip(_SIGMAS, ("-", "--"), strict=True):
            pts = _ellipse_xy(m2, c2, r)
            ax.plot(
                pts[:, 0],
                pts[:, 1],
                color=colors[j],
                ls=style,
                lw=1.5,
                label=f"component {j} (w={w[j]:.2f})" if r == _SIGMAS[0] else None,
            )
        ax.plot(*m2, marker="x", color="k", ms=8, mew=2)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    title = f"Gaussian mixture, K={k} ({covariance_type}); ellipses at 1 and 2 sd"
    if d > 2:
        title = (
            f"Gaussian mixture, K={k} ({covariance_type}): first 2 of {d} features, "
            "marginal 1 and 2 sd ellipses"
        )
    ax.set_title(title, fontsize="medium")
    ax.legend(frameon=False, fontsize="small")
    return fig


def plot_map_on_posterior(
    posterior: Any,
    map_values: Any,
    *,
    var_names: Sequence[str] | None = None,
    **plot_dist_kwargs: Any,
):
    """Marginal posteriors (``arviz_plots.plot_dist``) with the MAP as a vertical line.

    Relabel the draws to the MAP first (:func:`numpyro_gmm.compare_to_posterior` returns both
    in the same layout as ``comparison.posterior`` and ``comparison.map``), otherwise the
    marginals mix components.

    Parameters
    ----------
    posterior : xarray.DataTree
        Tree with a ``posterior`` group.
    map_values : xarray.Dataset, xarray.DataTree or MAPResult
        The MAP with the same variables and dims (``chain=1, draw=1``): a Dataset, a tree
        from ``result.to_datatree()`` (its ``map`` group when it holds Laplace draws, its
        ``posterior`` otherwise), or the result itself.
    var_names : sequence of str, optional
        Variables to plot (default: those of ``map_values``).
    **plot_dist_kwargs
        Passed to ``arviz_plots.plot_dist``.

    Returns
    -------
    arviz_plots.PlotCollection
        Save it with ``pc.savefig(path)``.
    """
    import arviz_plots

    if hasattr(map_values, "to_datatree") and hasattr(map_values, "params"):
        map_values = map_values.to_datatree()
    if hasattr(map_values, "children"):
        group = "map" if "map" in map_values.children else "posterior"
        map_values = map_values[group].to_dataset()
    names = list(var_names) if var_names is not None else list(map_values.data_vars)
    values = map_values[names].isel(chain=0, draw=0, drop=True)
    pc = arviz_plots.plot_dist(posterior, var_names=names, **plot_dist_kwargs)
    arviz_plots.add_lines(pc, values=values, visuals={"ref_line": {"color": "C3"}})
    return pc
