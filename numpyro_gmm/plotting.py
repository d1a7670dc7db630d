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

__all__ = ["plot_map_on_posterior", "plot_mixture", "plot_mixture_pairs"]

#: Features a pair plot shows by default (the first ones): more panels would be unreadable.
PAIR_PLOT_MAX_FEATURES = 8

# Radii of the drawn ellipses, in standard deviations.
_SIGMAS: tuple[float, ...] = (1.0, 2.0)


def _predict_labels(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, cov_full: np.ndarray
) -> np.ndarray:
    """Most probable component of each row (from full covariances)."""
    with np.errstate(divide="ignore"):
        log_prob = weighted_component_log_pdf(x, weights, means, cov_full, "full")
    return np.argmax(log_prob, axis=1)


def _checked(x, weights, means, covariances, covariance_type: str, feature_names):
    """The inputs of a plot as float64 arrays (x as (N, D), full covariances) and names."""
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
    return xx, w, mu, cov, names


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
      (2 x 2) covariances; the title says so. :func:`plot_mixture_pairs` shows every pair.

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

    xx, w, mu, cov, names = _checked(x, weights, means, covariances, covariance_type, feature_names)
    k, d = mu.shape

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
        comp = _weighted_densities(grid, w, mu[:, 0], sd)
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

    lab = _labels_of(labels, xx, w, mu, cov)
    _draw_pair(ax, xx[:, :2], mu[:, :2], cov[:, :2, :2], w, lab, colors, legend=True)
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


def _draw_pair(
    ax: Axes,
    xy: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    colors: list,
    *,
    legend: bool,
    size: float = 10.0,
) -> None:
    """Scatter two features coloured by label, each component's 1- and 2-sd ellipses of
    their marginal (2 x 2) covariance, and its mean."""
    from matplotlib import patheffects

    k = means.shape[0]
    point_colors = [colors[j % k] for j in labels]
    # Dense clouds are drawn lighter, and the ellipses get a white outline, so that an
    # ellipse stays visible over the points of its own colour.
    alpha = 0.7 if xy.shape[0] <= 1000 else 0.35
    ax.scatter(xy[:, 0], xy[:, 1], c=point_colors, s=size, alpha=alpha, linewidths=0)
    outline = [patheffects.withStroke(linewidth=3.5 if legend else 2.5, foreground="white")]
    for j in range(k):
        for r, style in zip(_SIGMAS, ("-", "--"), strict=True):
            pts = _ellipse_xy(means[j], covariances[j], r)
            ax.plot(
                pts[:, 0],
                pts[:, 1],
                color=colors[j],
                ls=style,
                lw=1.5 if legend else 1.0,
                path_effects=outline,
                label=f"component {j} (w={weights[j]:.2f})" if legend and r == _SIGMAS[0] else None,
            )
        ax.plot(*means[j], marker="x", color="k", ms=8 if legend else 5, mew=2 if legend else 1.5)


def _labels_of(
    labels: Any, x: np.ndarray, weights: np.ndarray, means: np.ndarray, cov: np.ndarray
) -> np.ndarray:
    if labels is None:
        return _predict_labels(x, weights, means, cov)
    lab = np.asarray(labels).astype(int).ravel()
    if lab.shape[0] != x.shape[0]:
        raise ValueError(f"labels has {lab.shape[0]} entries but x has {x.shape[0]} rows")
    return lab


def plot_mixture_pairs(
    x: Any,
    weights: Any,
    means: Any,
    covariances: Any,
    covariance_type: str,
    *,
    labels: Any = None,
    feature_names: Sequence[str] | None = None,
    max_features: int = PAIR_PLOT_MAX_FEATURES,
    fig: Figure | None = None,
) -> Figure:
    """A pair plot of data and a fitted Gaussian mixture, for any number of features.

    Panel ``(i, j)`` of the grid plots feature ``j`` (horizontal) against feature ``i``
    (vertical): the points coloured by component, with each component's 1- and 2-sd
    ellipses of its marginal covariance of the two features and its mean. The diagonal shows
    a density histogram of feature ``i`` with each weighted component's marginal density and
    the mixture's. Feature names label the outer row and column; one legend names the
    components and their weights.

    Parameters
    ----------
    x, weights, means, covariances, covariance_type, labels, feature_names
        As in :func:`plot_mixture`.
    max_features : int, default 8
        At most this many features (the first ones) are plotted, so panels stay readable;
        the title says when features are left out.
    fig : matplotlib.figure.Figure, optional
        Figure to draw into (its existing axes are kept); a new pyplot figure, about 2.2
        inches per feature, is created when omitted.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib
    from matplotlib.lines import Line2D

    xx, w, mu, cov, names = _checked(x, weights, means, covariances, covariance_type, feature_names)
    k, d = mu.shape
    lab = _labels_of(labels, xx, w, mu, cov)
    shown = min(d, int(max_features))
    if fig is None:
        import matplotlib.pyplot as plt

        side = max(6.4, 2.2 * shown)
        fig = plt.figure(figsize=(side, side), layout="constrained")
    axes = fig.subplots(shown, shown, squeeze=False)
    cmap = matplotlib.colormaps["tab10"]
    colors = [cmap(j % 10) for j in range(k)]
    # Smaller markers as the panels get smaller.
    size = max(2.0, 12.0 - 1.2 * shown)
    for i in range(shown):
        for j in range(shown):
            ax = axes[i, j]
            if i == j:
                _draw_marginal(ax, xx[:, i], w, mu[:, i], np.sqrt(cov[:, i, i]), colors)
            else:
                pair = [j, i]
                _draw_pair(
                    ax,
                    xx[:, pair],
                    mu[:, pair],
                    cov[:, pair][:, :, pair],
                    w,
                    lab,
                    colors,
                    legend=False,
                    size=size,
                )
            ax.tick_params(labelsize="x-small")
            if i == shown - 1:
                ax.set_xlabel(names[j], fontsize="small")
            else:
                ax.tick_params(labelbottom=False)
            if j == 0:
                ax.set_ylabel(names[i] if i else f"{names[i]}\n(density)", fontsize="small")
            elif i != j:
                ax.tick_params(labelleft=False)
    handles = [
        Line2D([], [], color=colors[j], lw=2, label=f"component {j} (w={w[j]:.2f})")
        for j in range(k)
    ]
    fig.legend(handles=handles, loc="outside upper right", frameon=False, fontsize="small")
    title = f"Gaussian mixture, K={k} ({covariance_type}); ellipses at 1 and 2 sd"
    if shown < d:
        title += f"; first {shown} of {d} features"
    fig.suptitle(title, fontsize="medium")
    return fig


def _draw_marginal(
    ax: Axes, data: np.ndarray, weights: np.ndarray, means: np.ndarray, sds: np.ndarray, colors
) -> None:
    """Density histogram of one feature with the weighted component densities and their sum."""
    ax.hist(data, bins="auto", density=True, color="0.85", edgecolor="0.6", lw=0.5)
    lo = min(data.min(), float(np.min(means - 3 * sds)))
    hi = max(data.max(), float(np.max(means + 3 * sds)))
    grid = np.linspace(lo, hi, 300)
    comp = _weighted_densities(grid, weights, means, sds)
    ax.plot(grid, comp.sum(axis=1), color="k", lw=1.5, alpha=0.6)
    for j in range(weights.shape[0]):
        ax.plot(grid, comp[:, j], color=colors[j], lw=1.0, ls="--")


def _weighted_densities(
    grid: np.ndarray, weights: np.ndarray, means: np.ndarray, sds: np.ndarray
) -> np.ndarray:
    """``w_k N(grid | mu_k, sd_k^2)``, shape (len(grid), K)."""
    return (
        weights[None, :]
        * np.exp(-0.5 * ((grid[:, None] - means[None, :]) / sds[None, :]) ** 2)
        / (np.sqrt(2.0 * np.pi) * sds[None, :])
    )


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

    if hasattr(map_values, "layout") and hasattr(map_values, "params"):
        # The layout of compare_to_posterior's draws (component, feature, ...).
        map_values = map_values.layout().dataset(
            {name: np.asarray(value)[None, None] for name, value in map_values.params.items()}
        )
    if hasattr(map_values, "children"):
        group = "map" if "map" in map_values.children else "posterior"
        map_values = map_values[group].to_dataset()
    names = list(var_names) if var_names is not None else list(map_values.data_vars)
    values = map_values[names].isel(chain=0, draw=0, drop=True)
    pc = arviz_plots.plot_dist(posterior, var_names=names, **plot_dist_kwargs)
    arviz_plots.add_lines(pc, values=values, visuals={"ref_line": {"color": "C3"}})
    return pc
