"""Put a MAP next to a posterior of the same model: is the MAP where the posterior is?

:func:`compare_to_posterior` relabels the posterior draws to the MAP's components
(:mod:`numpyro_gmm.relabelling`), then reports, per scalar parameter, the MAP, the posterior mean
and sd, a credible interval, whether the MAP lies inside it, and ``r_hat`` / ``ess_bulk`` of
the relabelled draws (``r_hat`` near 1 says the relabelling removed the label switching; a
large one that chains sit in different modes). The interval is ArviZ's (``ci_prob`` defaults
to ``arviz_base.rcParams["stats.ci_prob"]``, 0.89); its kind defaults to the **HDI** because
the MAP is a mode: a skewed marginal (a variance, a small weight) can leave its mode outside
its equal-tailed interval while the highest-density interval contains it. Pass
``ci_kind="eti"`` for ArviZ's default equal-tailed interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from numpyro_gmm.relabelling import relabel_draws

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

    from numpyro_gmm.map_result import MAPResult

__all__ = ["PosteriorComparison", "compare_to_posterior", "plot_comparison"]


class PosteriorComparison(NamedTuple):
    """Result of :func:`compare_to_posterior`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per scalar parameter: ``parameter`` (e.g. ``locs[2, x0]``), ``variable``,
        ``map``, ``mean``, ``sd``, ``lower``, ``upper``, ``inside`` (bool), ``r_hat``,
        ``ess_bulk``. ``table.attrs`` holds ``ci_kind`` and ``ci_prob``.
    figure : matplotlib.figure.Figure or None
        See :func:`plot_comparison`.
    posterior : xarray.DataTree
        The relabelled draws, laid out like ``result.to_datatree()``'s posterior (dims
        ``component``, ``feature``, ...), ready for ``arviz_plots`` with the MAP overlaid.
    map : xarray.Dataset
        The MAP in the same layout (``chain=1, draw=1``), e.g. for ``arviz_plots.add_lines``.
    """

    table: pd.DataFrame
    figure: Figure | None
    posterior: xr.DataTree
    map: xr.Dataset

    @property
    def all_inside(self) -> bool:
        """Whether the MAP is inside the interval for every parameter."""
        return bool(self.table["inside"].all())

    @property
    def outside(self) -> pd.DataFrame:
        """The rows whose MAP is outside the interval."""
        return self.table[~self.table["inside"]]


def _draws_by_chain(posterior: Any, sites: Sequence[str]) -> dict[str, np.ndarray]:
    """``site -> (chain, draw, *shape)`` arrays from an MCMC object or a DataTree."""
    if hasattr(posterior, "get_samples"):  # numpyro.infer.MCMC
        samples = posterior.get_samples(group_by_chain=True)
        missing = [name for name in sites if name not in samples]
        if missing:
            raise ValueError(f"The MCMC samples lack the MAP's sites {missing}.")
        return {name: np.asarray(samples[name]) for name in sites}
    if hasattr(posterior, "children") and "posterior" in posterior.children:
        dataset = posterior["posterior"].to_dataset()
        missing = [name for name in sites if name not in dataset]
        if missing:
            raise ValueError(f"The posterior group lacks the MAP's sites {missing}.")
        arrays = {}
        for name in sites:
            other = [d for d in dataset[name].dims if d not in ("chain", "draw")]
            arrays[name] = dataset[name].transpose("chain", "draw", *other).values
        return arrays
    raise TypeError(
        "posterior must be a numpyro MCMC object (after run) or an xarray.DataTree with a "
        f"posterior group; got {type(posterior).__name__}."
    )


def _label(name: str, dims: Sequence[str], coords: Mapping[str, Any], index) -> str:
    if not dims:
        return name
    parts = [str(coords[d][i]) if d in coords else str(i) for d, i in zip(dims, index, strict=True)]
    return f"{name}[{', '.join(parts)}]"


def compare_to_posterior(
    result: MAPResult,
    posterior: Any,
    *,
    var_names: Sequence[str] | None = None,
    ci_prob: float | None = None,
    ci_kind: str = "hdi",
    component_axes: Mapping[str, int | None] | None = None,
    match_on: Sequence[str] | None = None,
    plot: bool = True,
) -> PosteriorComparison:
    """Compare a MAP with a posterior of the same model, after relabelling the draws.

    Parameters
    ----------
    result : MAPResult
        The MAP (``ngm.fit`` / ``MAP(...).run``).
    posterior : numpyro.infer.MCMC or xarray.DataTree
        Posterior draws of the same model: an MCMC object (``get_samples(group_by_chain=True)``
        is read) or a tree whose ``posterior`` group has the model's latent sites over
        ``chain``, ``draw`` (e.g. from ``arviz.from_numpyro``).
    var_names : sequence of str, optional
        Sites to report (default: every latent site of the MAP).
    ci_prob : float, optional
        Interval probability (default ArviZ's ``stats.ci_prob``, 0.89).
    ci_kind : {"hdi", "eti"}
        Highest-density or equal-tailed interval (module docstring).
    component_axes, match_on
        See :func:`numpyro_gmm.relabelling.relabel_draws`.
    plot : bool
        Draw the figure (:func:`plot_comparison`).

    Returns
    -------
    PosteriorComparison
    """
    import arviz_stats
    import pandas as pd
    from arviz_base import rcParams

    if ci_kind not in ("hdi", "eti"):
        raise ValueError(f"ci_kind must be 'hdi' or 'eti', got {ci_kind!r}.")
    prob = float(rcParams["stats.ci_prob"] if ci_prob is None else ci_prob)
    layout = result.layout(component_axes=component_axes)
    sites = list(result.params)
    draws = _draws_by_chain(posterior, sites)
    relabelled = relabel_draws(
        draws,
        result,
        component_axes=component_axes,
        match_on=match_on,
        batch_ndim=2,
    )
    posterior_ds = layout.dataset(relabelled, attrs={"relabelled": 1})
    map_ds = layout.dataset({name: np.asarray(v)[None, None] for name, v in result.params.items()})
    names = list(var_names) if var_names is not None else sites
    unknown = [name for name in names if name not in posterior_ds]
    if unknown:
        raise ValueError(f"var_names {unknown} are not latent sites of the model ({sites}).")
    interval_fn = arviz_stats.hdi if ci_kind == "hdi" else arviz_stats.eti
    selected = posterior_ds[names]
    interval = interval_fn(selected, prob=prob)
    r_hat = arviz_stats.rhat(selected)
    ess = arviz_stats.ess(selected, method="bulk")
    mean = selected.mean(("chain", "draw"))
    sd = selected.std(("chain", "draw"), ddof=1)
    rows = []
    for name in names:
        dims = layout.site_dims[name]
        coords = layout.coords(dims)
        order = list(dims)
        value = np.asarray(map_ds[name].values[0, 0], np.float64)
        lower = interval[name].sel(ci_bound="lower").transpose(*order).values
        upper = interval[name].sel(ci_bound="upper").transpose(*order).values
        mean_v = mean[name].transpose(*order).values
        sd_v = sd[name].transpose(*order).values
        rhat_v = r_hat[name].transpose(*order).values
        ess_v = ess[name].transpose(*order).values
        for index in np.ndindex(value.shape):
            rows.append(
                {
                    "parameter": _label(name, dims, coords, index),
                    "variable": name,
                    "map": float(value[index]),
                    "mean": float(mean_v[index]),
                    "sd": float(sd_v[index]),
                    "lower": float(lower[index]),
                    "upper": float(upper[index]),
                    "inside": bool(lower[index] <= value[index] <= upper[index]),
                    "r_hat": float(rhat_v[index]),
                    "ess_bulk": float(ess_v[index]),
                }
            )
    table = pd.DataFrame(rows)
    table.attrs.update(ci_kind=ci_kind, ci_prob=prob)
    import xarray as xr

    tree = xr.DataTree.from_dict({"posterior": posterior_ds})
    figure = plot_comparison(table) if plot else None
    return PosteriorComparison(table, figure, tree, map_ds)


def plot_comparison(table: pd.DataFrame, *, ax=None, title: str | None = None) -> Figure:
    """One row per parameter: the MAP and the posterior mean placed within the interval.

    Every parameter is drawn on a common axis on which its interval runs from -1 (lower end)
    to +1 (upper end), so weights, means and variances of any scale fit in one panel; the
    posterior mean is a tick, the MAP a black dot inside the interval and a red cross
    outside.

    Parameters
    ----------
    table : pandas.DataFrame
        ``PosteriorComparison.table``.
    ax : matplotlib.axes.Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        import matplotlib.pyplot as plt

        height = 1.6 + 0.28 * len(table)
        fig, ax = plt.subplots(figsize=(6.4, height), layout="constrained")
    else:
        fig = ax.get_figure(root=True)
    lower, upper = table["lower"].to_numpy(float), table["upper"].to_numpy(float)
    middle = 0.5 * (lower + upper)
    half = np.where(upper > lower, 0.5 * (upper - lower), 1.0)
    at_mean = (table["mean"].to_numpy(float) - middle) / half
    at_map = (table["map"].to_numpy(float) - middle) / half
    inside = table["inside"].to_numpy(bool)
    y = np.arange(len(table))[::-1]
    ax.hlines(y, -1.0, 1.0, color="C0", lw=3, alpha=0.6)
    ax.plot(at_mean, y, "|", color="C0", ms=12, mew=2, label="posterior mean")
    ax.plot(at_map[inside], y[inside], "o", color="k", ms=5, label="MAP inside")
    if (~inside).any():
        ax.plot(at_map[~inside], y[~inside], "x", color="C3", ms=8, mew=2, label="MAP outside")
    ax.set_yticks(y, table["parameter"].tolist(), fontsize="small")
    kind = str(table.attrs.get("ci_kind", "")).upper()
    prob = table.attrs.get("ci_prob")
    interval = f"{prob:.0%} {kind}" if prob is not None else kind
    ax.set_xlabel(f"position in the {interval} (-1: lower end, +1: upper end)")
    limit = max(1.5, float(np.nanmax(np.abs(np.r_[at_map, at_mean]))) + 0.2)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-0.8, len(table) - 0.2)
    ax.set_title(title or f"MAP inside the posterior {interval}: {int(inside.sum())}/{inside.size}")
    ax.legend(
        frameon=False, fontsize="small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12)
    )
    return fig
