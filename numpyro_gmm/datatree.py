"""The one DataTree writer: a fit as an ArviZ 1.x ``xarray.DataTree``.

:func:`build_datatree` serves every entry point: :meth:`numpyro_gmm.MAPResult.to_datatree`
(a NumPyro model's MAP; variables named after its latent sites) and
:meth:`numpyro_gmm.GaussianMixture.to_datatree` (and so the command line's ``fit.nc``;
variables named as the sites of :func:`numpyro_gmm.models.gaussian_mixture`). Both write the
same groups (sample dims ``chain`` and ``draw``; a MAP point is ``chain=1, draw=1``):

``posterior``
    One variable per parameter site, constrained values. The component axis is named
    ``component`` (coords ``0..K-1``), axes of the data's size ``D`` are ``feature`` then
    ``feature_bis``, others ``{site}_dim_{axis}``. With Laplace draws it holds the draws.
``log_likelihood``
    Pointwise marginal log-likelihood ``log sum_k pi_k p_k(x_n)`` of each posterior point,
    named after the observed site (``obs``), over ``(chain, draw, obs_id)``.
``sample_stats``
    ``lp`` (the objective: :data:`OBJECTIVE_CONVENTION`); for a MAP also ``converged`` and
    ``n_iter`` of the chosen restart; for Laplace draws ``log_p`` and ``log_q`` instead.
``map`` (only with Laplace draws)
    The MAP itself, in the ``posterior`` layout.
``observed_data``
    The data, named after the observed site, over ``obs_id`` (and ``feature``).
``assignments`` (a point fit)
    The training rows' ``responsibilities`` over ``(chain, draw, obs_id, component)`` and
    their most probable component ``label`` over ``(chain, draw, obs_id)``, at the MAP: the
    in-sample counterpart of ArviZ's ``predictions`` group, aligned with ``observed_data``
    by ``obs_id``. Their size is N x K numbers, that of ``observed_data`` times K / D.
``restarts``
    ``objective``, ``n_iter``, ``converged`` and ``failed`` of every restart over
    ``restart``.
``em_trace``
    ``lower_bound`` over ``(restart, iteration)``: the per-sample objective of the parameters
    entering each iteration, NaN after a restart stopped, up to the last iteration any
    restart ran; ``polish_lower_bound`` over
    ``(restart, polish_iteration)`` when the method polishes.

Root attrs: ``method``, ``options`` (JSON), ``objective`` and ``objective_convention``,
``best_restart``, ``converged``, ``n_iter``, ``n_components``, the package version, and what
the caller adds (model style and mixture site, covariance type, Laplace settings, the
command line).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from numpyro_gmm.fit_result import FitResult

__all__ = [
    "COMPONENT_DIM",
    "OBJECTIVE_CONVENTION",
    "PosteriorLayout",
    "build_datatree",
    "netcdf_attr",
    "package_version",
]

#: What ``sample_stats.lp`` and the results' ``objective`` measure.
OBJECTIVE_CONVENTION = (
    "log joint (log likelihood + log prior) in the constrained parameters, NumPyro "
    "log_density, no Jacobian"
)
COMPONENT_DIM = "component"


def package_version() -> str:
    """The installed version of numpyro_gmm (``"0+unknown"`` from an uninstalled tree)."""
    try:
        return metadata.version("numpyro_gmm")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def netcdf_attr(value: Any) -> Any:
    """Convert an attribute value to something every netCDF backend accepts."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    if value is None:
        return "None"
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == 1:
        return value
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _group_attrs() -> dict[str, Any]:
    version = package_version()
    return {
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "creation_library": "numpyro_gmm",
        "creation_library_version": version,
        "inference_library": "numpyro_gmm",
        "inference_library_version": version,
    }


def _site_dims(
    name: str, shape: tuple[int, ...], component_axis: int | None, n_features: int
) -> tuple[str, ...]:
    """Default dims of a site: ``component``, ``feature``/``feature_bis``, else generic."""
    dims: list[str] = []
    feature_names = iter(("feature", "feature_bis"))
    for axis, size in enumerate(shape):
        if axis == component_axis:
            dims.append(COMPONENT_DIM)
            continue
        if size == n_features:
            label = next(feature_names, None)
            if label is not None:
                dims.append(label)
                continue
        dims.append(f"{name}_dim_{axis}")
    return tuple(dims)


class PosteriorLayout(NamedTuple):
    """How the parameter sites of a fit are laid out in a DataTree.

    Attributes
    ----------
    site_dims : dict
        Site name -> dims of one draw (without ``chain``, ``draw``).
    component_axes : dict
        Site name -> component axis (or None).
    features : list of str
        Coordinates of ``feature`` / ``feature_bis``.
    n_components : int
    rows_dim, columns_dim : str
        Dims of the observed data's rows and columns (``obs_id``, ``feature`` by default;
        a NumPyro model's tree uses its plate's name and ``{site}_dim_0``, as
        ``az.from_numpyro`` does).
    integer_coords : bool
        Whether every dim without coordinates gets ``0..n-1`` (as ``az.from_numpyro``).
    """

    site_dims: dict[str, tuple[str, ...]]
    component_axes: dict[str, int | None]
    features: list[str]
    n_components: int
    rows_dim: str = "obs_id"
    columns_dim: str = "feature"
    integer_coords: bool = False

    @classmethod
    def of(
        cls,
        point: Mapping[str, Any],
        component_axes: Mapping[str, int | None],
        *,
        n_features: int,
        n_components: int,
        dims: Mapping[str, Sequence[str]] | None = None,
        feature_names: Sequence[str] | None = None,
        observed_dims: tuple[str, str] = ("obs_id", "feature"),
        integer_coords: bool = False,
    ) -> PosteriorLayout:
        """The layout of the sites of ``point`` (default dims: module docstring)."""
        features = (
            [f"x{i}" for i in range(n_features)]
            if feature_names is None
            else [str(f) for f in feature_names]
        )
        if len(features) != n_features:
            raise ValueError(
                f"feature_names has {len(features)} names; the data have {n_features}."
            )
        if len(set(features)) != len(features):
            raise ValueError(f"feature_names must be unique; got {features}.")
        site_dims = {
            name: tuple(dims[name])
            if dims and name in dims
            else _site_dims(name, np.shape(value), component_axes.get(name), n_features)
            for name, value in point.items()
        }
        for name, names in site_dims.items():
            if len(names) != np.ndim(point[name]):
                raise ValueError(
                    f"dims[{name!r}] has {len(names)} names; the site has shape "
                    f"{np.shape(point[name])}."
                )
        return cls(
            site_dims,
            dict(component_axes),
            features,
            int(n_components),
            *observed_dims,
            integer_coords,
        )

    def coords(self, dims: Sequence[str]) -> dict[str, Any]:
        """Coordinates of the named dims that have them."""
        coords: dict[str, Any] = {}
        for dim in dims:
            if dim == COMPONENT_DIM:
                coords[dim] = np.arange(self.n_components)
            elif dim in ("feature", "feature_bis"):
                coords[dim] = self.features
        return coords

    def dataset(
        self, values: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None
    ) -> xr.Dataset:
        """A posterior-like Dataset from arrays of shape ``(chain, draw, *site_shape)``."""
        variables = {}
        coords: dict[str, Any] = {}
        for name, value in values.items():
            array = np.asarray(value)
            variables[name] = (("chain", "draw", *self.site_dims[name]), array)
            coords.update(self.coords(self.site_dims[name]))
            coords.update(chain=np.arange(array.shape[0]), draw=np.arange(array.shape[1]))
            if self.integer_coords:  # on every other dim, as az.from_numpyro gives them
                for dim, size in zip(self.site_dims[name], array.shape[2:], strict=True):
                    coords.setdefault(dim, np.arange(size))
        return xr.Dataset(variables, coords=coords, attrs=dict(attrs or {}))


class LaplaceGroups(NamedTuple):
    """Posterior draws around the MAP (:mod:`numpyro_gmm.laplace`) for the tree.

    Attributes
    ----------
    params : dict
        Site -> draws, shape ``(S, *site_shape)``.
    log_likelihood : np.ndarray, shape (S, N)
    stats : dict
        ``lp``, ``log_p``, ``log_q`` of every draw, shape (S,).
    attrs : dict
        Root attrs describing the approximation.
    """

    params: dict
    log_likelihood: np.ndarray
    stats: dict
    attrs: dict


def _point(layout: PosteriorLayout, values: Mapping[str, Any], n_draws: int, attrs):
    """Values of shape ``site_shape`` (one point) or ``(S, *site_shape)`` as (1, S, ...)."""

    def sample_shape(name: str, value) -> tuple[int, ...]:
        ndim = len(layout.site_dims[name])
        return np.shape(value)[np.ndim(value) - ndim :]

    return layout.dataset(
        {
            name: np.reshape(value, (1, n_draws, *sample_shape(name, value)))
            for name, value in values.items()
        },
        attrs=attrs,
    )


def build_datatree(
    fit: FitResult,
    point: Mapping[str, np.ndarray],
    layout: PosteriorLayout,
    *,
    objective: float,
    observed: np.ndarray,
    log_likelihood: np.ndarray,
    observed_name: str = "obs",
    other_observed: Mapping[str, tuple[tuple[str, ...], np.ndarray]] | None = None,
    laplace: LaplaceGroups | None = None,
    responsibilities: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Write a fit as an ArviZ 1.x DataTree (groups: module docstring).

    Parameters
    ----------
    fit : FitResult
        Restarts, chosen restart, traces, method and options.
    point : dict
        Site -> value of the chosen parameters (constrained).
    layout : PosteriorLayout
        Dims and coords of every site.
    objective : float
        The objective of ``point`` (``sample_stats.lp``).
    observed : np.ndarray, shape (N,) or (N, D)
    log_likelihood : np.ndarray, shape (N,)
        Pointwise marginal log-likelihood at ``point``.
    observed_name : str
        Name of the observed site.
    other_observed : dict, optional
        The model's other observed sites (factors, other likelihoods): name -> (dims,
        value), in ``observed_data`` beside the data, as ``az.from_numpyro`` puts them.
    laplace : LaplaceGroups, optional
        Draws that replace the point in ``posterior`` (the point moves to ``map``).
    responsibilities : np.ndarray, shape (N, K), optional
        Responsibilities of the observed rows at ``point``: the ``assignments`` group.
    attrs : dict, optional
        More root attrs.
    """
    group_attrs = _group_attrs()
    best = fit.best_restart
    map_point = _point(layout, point, 1, group_attrs)
    groups: dict[str, xr.Dataset] = {}
    if laplace is None:
        ll = np.asarray(log_likelihood, np.float64)[None, None]
        groups["posterior"] = map_point
        groups["sample_stats"] = xr.Dataset(
            {
                "lp": (("chain", "draw"), np.array([[float(objective)]])),
                "converged": (("chain", "draw"), np.array([[fit.converged]])),
                "n_iter": (("chain", "draw"), np.array([[fit.n_iter]], np.int64)),
            },
            coords={"chain": np.arange(1), "draw": np.arange(1)},
            attrs=group_attrs,
        )
    else:
        n_draws = int(np.shape(laplace.log_likelihood)[0])
        ll = np.asarray(laplace.log_likelihood, np.float64)[None]
        groups["posterior"] = _point(layout, laplace.params, n_draws, group_attrs)
        groups["map"] = map_point
        groups["sample_stats"] = xr.Dataset(
            {name: (("chain", "draw"), np.asarray(v)[None]) for name, v in laplace.stats.items()},
            coords={"chain": np.arange(1), "draw": np.arange(n_draws)},
            attrs=group_attrs,
        )
    observed = np.asarray(observed)
    rows, columns = layout.rows_dim, layout.columns_dim
    obs_id = np.arange(observed.shape[0])
    groups["log_likelihood"] = xr.Dataset(
        {observed_name: (("chain", "draw", rows), ll)},
        coords={"chain": np.arange(1), "draw": np.arange(ll.shape[1]), rows: obs_id},
        attrs=group_attrs,
    )
    observed_dims = (rows,) if observed.ndim == 1 else (rows, columns)
    observed_coords: dict[str, Any] = {rows: obs_id}
    if observed.ndim == 2:
        observed_coords[columns] = (
            layout.features if columns == "feature" else np.arange(observed.shape[1])
        )
    observed_variables = {observed_name: (observed_dims, observed)}
    for name, (dims, value) in (other_observed or {}).items():
        observed_variables[name] = (dims, np.asarray(value))
        for dim, size in zip(dims, np.shape(value), strict=True):
            observed_coords.setdefault(dim, np.arange(size))
    groups["observed_data"] = xr.Dataset(
        observed_variables,
        coords=observed_coords,
        attrs={k: v for k, v in group_attrs.items() if not k.startswith("inference")},
    )
    if responsibilities is not None:
        groups["assignments"] = _assignments(responsibilities, rows, obs_id, group_attrs)
    restarts = fit.restarts
    restart = np.arange(np.size(restarts.objective))
    groups["restarts"] = xr.Dataset(
        {
            "objective": (("restart",), np.asarray(restarts.objective, np.float64)),
            "n_iter": (("restart",), np.asarray(restarts.n_iter, np.int64)),
            "converged": (("restart",), np.asarray(restarts.converged, bool)),
            "failed": (("restart",), np.asarray(restarts.failed, bool)),
        },
        coords={"restart": restart},
        attrs=group_attrs,
    )
    groups["em_trace"] = _trace_dataset(fit, restart.size, group_attrs)
    root_attrs: dict[str, Any] = {
        "method": fit.method,
        "options": netcdf_attr(dict(fit.options)),
        "objective": float(objective),
        "objective_convention": OBJECTIVE_CONVENTION,
        "best_restart": int(best),
        "converged": int(fit.converged),
        "n_iter": int(fit.n_iter),
        "n_components": int(layout.n_components),
        "component_axes": netcdf_attr(dict(layout.component_axes)),
        "numpyro_gmm_version": package_version(),
        **group_attrs,
    }
    if laplace is not None:
        root_attrs.update(laplace.attrs)
    for key, value in (attrs or {}).items():
        root_attrs[str(key)] = netcdf_attr(value)
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=root_attrs), **groups})


def _assignments(
    responsibilities: np.ndarray, rows: str, obs_id: np.ndarray, attrs: Mapping[str, Any]
) -> xr.Dataset:
    resp = np.asarray(responsibilities)
    labels = np.argmax(resp, axis=1).astype(np.int64)
    return xr.Dataset(
        {
            "responsibilities": (("chain", "draw", rows, COMPONENT_DIM), resp[None, None]),
            "label": (("chain", "draw", rows), labels[None, None]),
        },
        coords={
            "chain": np.arange(1),
            "draw": np.arange(1),
            rows: obs_id,
            COMPONENT_DIM: np.arange(resp.shape[1]),
        },
        attrs=dict(attrs),
    )


def _trace_dataset(fit: FitResult, n_restarts: int, attrs: Mapping[str, Any]) -> xr.Dataset:
    def table(trace) -> np.ndarray:
        trace = np.asarray(trace, np.float64)
        trace = trace.reshape(n_restarts, -1) if trace.size else np.empty((n_restarts, 0))
        # The trace is sized for max_iter; iterations no restart reached would be NaN only.
        reached = np.flatnonzero(np.isfinite(trace).any(axis=0))
        return trace[:, : reached[-1] + 1 if reached.size else 0]

    trace = table(fit.trace)
    variables = {"lower_bound": (("restart", "iteration"), trace)}
    coords = {"restart": np.arange(n_restarts), "iteration": np.arange(1, trace.shape[1] + 1)}
    if fit.polish_trace is not None:
        polish = table(fit.polish_trace)
        variables["polish_lower_bound"] = (("restart", "polish_iteration"), polish)
        coords["polish_iteration"] = np.arange(1, polish.shape[1] + 1)
    return xr.Dataset(variables, coords=coords, attrs={**attrs, "units": "per-sample log joint"})
