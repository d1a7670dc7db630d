"""Loading a saved fit: a DataTree (or its netCDF file) back into a fitted object.

The trees come from the one writer, :func:`numpyro_gmm.datatree.build_datatree`, through
:meth:`numpyro_gmm.GaussianMixture.to_datatree` (and so ``numpyro-gmm fit``'s ``fit.nc``) or
:meth:`numpyro_gmm.MAPResult.to_datatree`. Everything needed to use the fit again is in the
tree: the parameters (``posterior``, or ``map`` when ``posterior`` holds Laplace draws), the
restarts and traces (``restarts``, ``em_trace``), the objective and the settings (root
attrs); :func:`fit_result_from_datatree` reads them into the
:class:`~numpyro_gmm.fit_result.FitResult` every fit ends in, and the two loaders put that
result back into a :class:`~numpyro_gmm.GaussianMixture` or a
:class:`~numpyro_gmm.MAPResult`.

Examples
--------
>>> gm = ngm.load_gaussian_mixture("fit.nc")        # doctest: +SKIP
>>> gm.predict(new_rows)                             # doctest: +SKIP
>>> result = ngm.load_map_result(tree, model)        # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from numpyro_gmm.fit_result import FitResult, Restarts

__all__ = [
    "fit_result_from_datatree",
    "load_gaussian_mixture",
    "load_map_result",
    "open_fit",
]

#: Groups every saved fit has (:mod:`numpyro_gmm.datatree`).
REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "restarts", "em_trace")


def open_fit(source: xr.DataTree | str | os.PathLike) -> xr.DataTree:
    """The tree of a saved fit, read whole into memory (the file is closed again).

    Parameters
    ----------
    source : xarray.DataTree, str or path
        A tree, or the path of a netCDF file written from one.

    Returns
    -------
    xarray.DataTree

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file cannot be read as a DataTree or lacks a group of a saved fit.
    """
    if isinstance(source, xr.DataTree):
        tree = source
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such saved fit: {path!r}.")
        try:
            with xr.open_datatree(path) as opened:
                tree = opened.load().copy()
        except (OSError, ValueError, TypeError):
            # xarray's own message lists IO backends, which is no help here.
            raise ValueError(
                f"{path!r} cannot be read as a saved fit: it is not a netCDF DataTree."
            ) from None
    missing = [name for name in REQUIRED_GROUPS if name not in tree.children]
    if missing or "method" not in tree.attrs:
        what = f"the group(s) {', '.join(missing)}" if missing else "the attribute 'method'"
        raise ValueError(
            f"This tree is not a saved fit of numpyro_gmm: it lacks {what}. Write fits with "
            "GaussianMixture.to_datatree, MAPResult.to_datatree or numpyro-gmm fit."
        )
    return tree


def _json_attr(tree: xr.DataTree, name: str, default: Any) -> Any:
    value = tree.attrs.get(name)
    if value is None:
        return default
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


def _point_group(tree: xr.DataTree) -> xr.Dataset:
    """The MAP's group: ``map`` when ``posterior`` holds Laplace draws."""
    return tree["map" if "map" in tree.children else "posterior"].to_dataset()


def _sites(tree: xr.DataTree) -> dict[str, np.ndarray]:
    """Site -> value of the saved point (chain 0, draw 0), in the precision it was saved."""
    point = _point_group(tree)
    return {name: np.asarray(point[name].values[0, 0]) for name in point.data_vars}


def _n_rows(tree: xr.DataTree) -> int:
    """Rows of the observed data (its first dim: ``obs_id``, or the model's data plate)."""
    observed = tree["observed_data"]
    return int(np.shape(next(iter(observed.data_vars.values())))[0])


def fit_result_from_datatree(tree: xr.DataTree | str | os.PathLike) -> FitResult:
    """The :class:`~numpyro_gmm.fit_result.FitResult` a saved fit was written from.

    ``params`` is a :class:`~numpyro_gmm.mixture.params.GMMParams` when the tree has a
    ``covariance_type`` (a Gaussian mixture: :meth:`GaussianMixture.to_datatree`), else the
    dict of site values. ``counts`` and the method's ``extras`` are not saved.

    Parameters
    ----------
    tree : xarray.DataTree, str or path

    Returns
    -------
    FitResult
    """
    tree = open_fit(tree)
    restarts_group = tree["restarts"]
    restarts = Restarts(
        objective=np.asarray(restarts_group["objective"].values, np.float64),
        n_iter=np.asarray(restarts_group["n_iter"].values, np.int64),
        converged=np.asarray(restarts_group["converged"].values, bool),
        failed=np.asarray(restarts_group["failed"].values, bool),
    )
    trace_group = tree["em_trace"]
    polish = trace_group.get("polish_lower_bound")
    covariance_type = tree.attrs.get("covariance_type")
    sites = _sites(tree)
    params: Any = sites
    covariances = None
    if covariance_type is not None:
        params, covariances = _gmm_params(sites, str(covariance_type))
    return FitResult(
        params=params,
        objective=float(tree.attrs["objective"]),
        best_restart=int(tree.attrs["best_restart"]),
        restarts=restarts,
        trace=np.asarray(trace_group["lower_bound"].values, np.float64),
        method=str(tree.attrs["method"]),
        covariance_type=None if covariance_type is None else str(covariance_type),
        covariances=covariances,
        polish_trace=None if polish is None else np.asarray(polish.values, np.float64),
        n_samples=_n_rows(tree),
        options=_json_attr(tree, "options", {}),
    )


def _gmm_params(sites: Mapping[str, np.ndarray], covariance_type: str):
    """GMMParams (precision Cholesky factors computed from the saved covariances)."""
    from numpyro_gmm.mixture.covariance import COVARIANCE_SITES
    from numpyro_gmm.mixture.params import GMMParams, precisions_cholesky_from_covariances
    from numpyro_gmm.validation import precision_of

    covariances = np.asarray(sites[COVARIANCE_SITES[covariance_type]])
    means = np.asarray(sites["locs"])
    with precision_of(means.dtype):
        chol = np.asarray(precisions_cholesky_from_covariances(covariances, covariance_type))
    if not np.isfinite(chol).all():
        raise ValueError("The saved covariances are not positive definite; the file is damaged.")
    return GMMParams(np.asarray(sites["weights"]), means, chol), covariances


def load_gaussian_mixture(source: xr.DataTree | str | os.PathLike, *, cls: type | None = None):
    """A fitted :class:`~numpyro_gmm.GaussianMixture` from a saved fit.

    The estimator gets the constructor arguments it was fitted with (those saved as plain
    values) and every fitted attribute, so ``predict``, ``predict_proba``, ``score_samples``,
    ``score`` and ``sample`` give what the estimator that wrote the tree gives (the precision
    Cholesky factors are recomputed from the saved covariances: equal up to rounding).
    ``feature_names_in_`` is set only when the original fit saw named columns.

    Parameters
    ----------
    source : xarray.DataTree, str or path
        A tree from :meth:`GaussianMixture.to_datatree` or ``numpyro-gmm fit``, or its
        netCDF file.
    cls : type, optional
        The estimator class (default :class:`~numpyro_gmm.GaussianMixture`); used by
        :meth:`GaussianMixture.from_datatree` for subclasses.

    Returns
    -------
    GaussianMixture

    Raises
    ------
    ValueError
        If the tree is not a saved Gaussian-mixture fit.
    """
    if cls is None:
        from numpyro_gmm.sklearn import GaussianMixture as cls
    tree = open_fit(source)
    if "covariance_type" not in tree.attrs:
        raise ValueError(
            "This saved fit is a NumPyro model's MAP, not a GaussianMixture: load it with "
            "load_map_result(tree, model)."
        )
    result = fit_result_from_datatree(tree)
    saved = _json_attr(tree, "estimator_params", {})
    accepted = set(cls._get_param_names())
    params = {name: value for name, value in saved.items() if name in accepted}
    params.update(
        n_components=result.n_components,
        covariance_type=result.covariance_type,
        method=result.method,
    )
    estimator = cls(**params)
    estimator._store(result)
    features = [str(f) for f in tree["posterior"]["feature"].values]
    estimator.n_features_in_ = len(features)
    if int(tree.attrs.get("feature_names_in", 0)):
        estimator.feature_names_in_ = np.asarray(features, dtype=object)
    return estimator


def load_map_result(
    source: xr.DataTree | str | os.PathLike, model: Any, *model_args: Any, **model_kwargs: Any
):
    """A :class:`~numpyro_gmm.MAPResult` from a saved fit and the model it was fitted to.

    A model is code, not data, so it is given again, with its arguments as given to
    :func:`numpyro_gmm.fit`; the data may be left out: the saved observations
    (``observed_data``) go where the fit's model took its data. The parameters are the saved
    MAP (``map`` when the tree holds Laplace draws, ``posterior`` otherwise), the objective is
    the saved one, and ``fit`` is :func:`fit_result_from_datatree`.

    Parameters
    ----------
    source : xarray.DataTree, str or path
    model : callable
        The NumPyro model.
    *model_args, **model_kwargs
        Its arguments, as given to :func:`numpyro_gmm.fit`, with or without the data:
        ``load_map_result(tree, model)`` for ``fit(model, x)``,
        ``load_map_result(tree, model, covariates)`` for ``fit(model, covariates, y)``.

    Returns
    -------
    MAPResult

    Raises
    ------
    ValueError
        If the model's latent sites are not those of the saved fit.
    """
    from numpyro_gmm.infer import bind_model
    from numpyro_gmm.map_result import MAPResult
    from numpyro_gmm.numpyro_bridge import read_model

    tree = open_fit(source)
    observed = tree["observed_data"]
    site = str(tree.attrs.get("mixture_site", next(iter(observed.data_vars))))
    x = np.asarray(observed[site].values)
    args, kwargs = _with_saved_data(tree, x, model_args, model_kwargs)
    canonical, x, arrays, layout = bind_model(read_model(model, *args, **kwargs), args, kwargs)
    mixture = read_model(canonical, x, *arrays)
    sites = _sites(tree)
    if set(sites) != set(mixture.latent_sites):
        called = tree.attrs.get("model_arguments")
        raise ValueError(
            f"The saved fit has the sites {sorted(sites)} but the model has "
            f"{sorted(mixture.latent_sites)}: give the model the fit was made with, and its "
            "arguments as the fit took them"
            + (f" (the fit's call: {called}; the data may be left out)." if called else ".")
        )
    objective = float(tree.attrs["objective"])
    result = MAPResult(mixture, sites, objective, fit_result_from_datatree(tree))
    result.arguments = layout
    return result


def _holds(value: Any, x: np.ndarray) -> bool:
    """Whether ``value`` is the saved data (compared in the saved dtype: a fit with x64 off
    saves float64 data as float32)."""
    if not isinstance(value, np.ndarray | list) and not hasattr(value, "__array__"):
        return False
    if np.shape(value) != x.shape:
        return False
    return bool(np.array_equal(np.asarray(value).astype(x.dtype), x, equal_nan=True))


def _with_saved_data(tree: xr.DataTree, x: np.ndarray, args: tuple, kwargs: dict):
    """The model's call with the saved data put where the fit's model took them, unless
    the arguments already hold them."""
    given = [*args, *kwargs.values()]
    if any(_holds(value, x) for value in given):
        return args, kwargs
    kind, _, where = str(tree.attrs.get("data_argument", "arg:0")).partition(":")
    if kind == "kwarg":
        return args, {**kwargs, where: x}
    position = int(where)
    return (*args[:position], x, *args[position:]), kwargs
