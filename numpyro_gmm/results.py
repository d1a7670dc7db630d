"""Conversion of fitted Gaussian-mixture parameters to an ArviZ-style ``xarray.DataTree``.

It runs on the host after a fit, whatever engine produced the parameters (numpyro_gmm's
kernels or scikit-learn); the pointwise log-likelihood reuses the engine's E-step.

The tree follows ArviZ 1.x conventions (sample dims ``chain`` and ``draw``); a MAP or
maximum-likelihood point is stored as ``chain=1, draw=1``:

``posterior``
    ``weights`` (chain, draw, component), ``locs`` (chain, draw, component, feature) and
    ``covariances`` whose dims depend on the covariance type:

    ==========  =========================================================
    full        (chain, draw, component, feature, feature_bis)
    tied        (chain, draw, feature, feature_bis)
    diag        (chain, draw, component, feature)
    spherical   (chain, draw, component)
    ==========  =========================================================
``sample_stats``
    ``lp`` (the objective of the point), ``converged`` (bool), ``n_iter`` (int), each over
    (chain, draw).
``em_trace``
    ``lower_bound`` over ``iteration`` (1-based): the per-iteration objective trace.
``observed_data`` (only when data are given)
    ``obs`` (obs_id, feature).
``log_likelihood`` (only when data are given)
    ``obs`` (chain, draw, obs_id): pointwise marginal log-likelihood
    ``log sum_k w_k N(x_n | mu_k, Sigma_k)`` at the point.

The root attrs record the covariance type, the package version and when and by what the
tree was created, plus any attrs passed by the caller.

The MAP of a NumPyro model (:class:`MAPResult`, from ``numpyro_gmm.fit``) converts with
``result.to_datatree()`` (:func:`map_result_to_datatree`): variables named after the model's
latent sites, per-restart results, and optional Laplace draws for
``arviz.loo_approximate_posterior`` (:mod:`numpyro_gmm.laplace`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any, NamedTuple

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from numpyro_gmm.fitting import weighted_log_prob
from numpyro_gmm.mixture.params import (
    GMMParams,
    full_covariances,
    precisions_cholesky_from_covariances,
)
from numpyro_gmm.validation import working_dtype

__all__ = [
    "COVARIANCE_TYPES",
    "MAPResult",
    "OBJECTIVE_CONVENTION",
    "PosteriorLayout",
    "map_result_to_datatree",
    "atomic_path",
    "expand_covariances",
    "gmm_to_datatree",
    "package_version",
    "pointwise_log_likelihood",
    "weighted_component_log_pdf",
    "write_datatree_atomic",
]

COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")


def package_version() -> str:
    """Return the installed version of numpyro_gmm.

    Returns
    -------
    str
        The distribution version from the package metadata, or ``"0+unknown"`` when the
        package is not installed (for example when run from a source checkout).
    """
    for dist_name in ("numpyro-gmm", "numpyro_gmm"):
        try:
            return metadata.version(dist_name)
        except metadata.PackageNotFoundError:
            continue
    return "0+unknown"


def _check_covariance_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}; got {covariance_type!r}"
        )


def _validate_params(
    weights: Any, means: Any, covariances: Any, covariance_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert parameters to float64 numpy arrays and check their shapes."""
    _check_covariance_type(covariance_type)
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    cov = np.asarray(covariances, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must have shape (n_components,); got shape {w.shape}")
    if mu.ndim != 2 or mu.shape[0] != w.shape[0]:
        raise ValueError(
            f"means must have shape (n_components, n_features) = ({w.shape[0]}, D); "
            f"got shape {mu.shape}"
        )
    k, d = mu.shape
    expected = {
        "full": (k, d, d),
        "tied": (d, d),
        "diag": (k, d),
        "spherical": (k,),
    }[covariance_type]
    if cov.shape != expected:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must have shape "
            f"{expected}; got shape {cov.shape}"
        )
    return w, mu, cov


def expand_covariances(
    covariances: Any, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Expand covariances of any covariance type to full ``(K, D, D)`` matrices.

    Parameters
    ----------
    covariances : array_like
        Covariances in scikit-learn's layout: ``(K, D, D)`` for ``"full"``, ``(D, D)`` for
        ``"tied"``, ``(K, D)`` for ``"diag"`` (variances) and ``(K,)`` for ``"spherical"``
        (one variance per component).
    covariance_type : {"full", "tied", "diag", "spherical"}
        Layout of ``covariances``.
    n_components : int
        Number of components ``K``.
    n_features : int
        Number of features ``D``.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(K, D, D)`` (a new array).

    Raises
    ------
    ValueError
        If ``covariances`` does not have the shape its covariance type requires.
    """
    _check_covariance_type(covariance_type)
    k, d = int(n_components), int(n_features)
    cov = np.asarray(covariances, dtype=np.float64)
    expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    if cov.shape != expected[covariance_type]:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must have shape "
            f"{expected[covariance_type]}; got shape {cov.shape}"
        )
    return np.array(full_covariances(cov, covariance_type, k, d), dtype=np.float64)


def weighted_component_log_pdf(
    x: np.ndarray, w: np.ndarray, mu: np.ndarray, cov: np.ndarray, covariance_type: str
) -> np.ndarray:
    """``log w_k + log N(x_n | mu_k, Sigma_k)``, shape (N, K), from the engine's own E-step."""
    dtype = working_dtype(x.dtype)
    factor = np.asarray(precisions_cholesky_from_covariances(cov.astype(dtype), covariance_type))
    finite = np.isfinite(factor.reshape(factor.shape[0], -1)).all(axis=1)
    if not finite.all():
        which = (
            "the tied covariance"
            if covariance_type == "tied"
            else (f"the covariance of component {int(np.flatnonzero(~finite)[0])}")
        )
        raise ValueError(
            f"{which} is not positive definite; increase reg_covar or check the fitted parameters"
        )
    params = GMMParams(w.astype(dtype), mu.astype(dtype), factor)
    return weighted_log_prob(x.astype(dtype), params, covariance_type)


def pointwise_log_likelihood(
    x: Any, weights: Any, means: Any, covariances: Any, covariance_type: str
) -> np.ndarray:
    """Pointwise marginal log-likelihood of a Gaussian mixture.

    Computes ``log sum_k w_k N(x_n | mu_k, Sigma_k)`` for every row of ``x`` with a
    log-sum-exp over components, with the engine's E-step (float32 unless JAX's x64 mode is
    on); the result is returned as float64.

    Parameters
    ----------
    x : array_like
        Data of shape ``(N, D)``; a 1-D array is read as ``(N, 1)``.
    weights : array_like
        Mixture weights, shape ``(K,)``.
    means : array_like
        Component means, shape ``(K, D)``.
    covariances : array_like
        Covariances in scikit-learn's layout for ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Layout of ``covariances``.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(N,)``.
    """
    w, mu, cov = _validate_params(weights, means, covariances, covariance_type)
    xx = np.asarray(x, dtype=np.float64)
    if xx.ndim == 1:
        xx = xx[:, None]
    if xx.ndim != 2 or xx.shape[1] != mu.shape[1]:
        raise ValueError(
            f"x must have shape (n_samples, {mu.shape[1]}) to match the means; got {xx.shape}"
        )
    with np.errstate(divide="ignore"):
        log_prob = weighted_component_log_pdf(xx, w, mu, cov, covariance_type)
    return logsumexp(log_prob.astype(np.float64), axis=1)


def _netcdf_attr(value: Any) -> Any:
    """Convert an attribute value to something every netCDF backend accepts."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if value is None:
        return "None"
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == 1:
        return value
    if (
        isinstance(value, Sequence)
        and len(value) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return np.asarray(value)
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _group_attrs(created_at: str, version: str) -> dict[str, Any]:
    return {
        "created_at": created_at,
        "creation_library": "numpyro_gmm",
        "creation_library_version": version,
        "inference_library": "numpyro_gmm",
        "inference_library_version": version,
    }


def gmm_to_datatree(
    *,
    weights: Any,
    means: Any,
    covariances: Any,
    covariance_type: str,
    lower_bounds: Any,
    converged: bool,
    n_iter: int,
    objective: float,
    x: Any = None,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Build an ArviZ-style ``xarray.DataTree`` from fitted Gaussian-mixture parameters.

    Parameters
    ----------
    weights : array_like
        Mixture weights, shape ``(K,)``.
    means : array_like
        Component means, shape ``(K, D)``.
    covariances : array_like
        Covariances in scikit-learn's layout: ``(K, D, D)`` full, ``(D, D)`` tied,
        ``(K, D)`` diag, ``(K,)`` spherical.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Layout of ``covariances``.
    lower_bounds : array_like
        Per-iteration objective trace, shape ``(n_iterations,)`` (may be empty).
    converged : bool
        Whether the fit converged.
    n_iter : int
        Number of iterations run.
    objective : float
        Objective of the fitted point (for example the total log-likelihood); stored as
        ``sample_stats.lp``.
    x : array_like, optional
        Data of shape ``(N, D)`` (1-D is read as ``(N, 1)``). When given, the tree gets
        ``observed_data`` and ``log_likelihood`` groups.
    feature_names : sequence of str, optional
        Names for the ``feature`` coordinate; default ``x0, x1, ...``.
    attrs : mapping, optional
        Extra root attributes (for example the method and its options). Values that netCDF
        cannot store (``None``, bools, dicts, ...) are converted to ints or JSON strings.

    Returns
    -------
    xarray.DataTree
        Tree with groups ``posterior``, ``sample_stats``, ``em_trace`` and, when ``x`` is
        given, ``observed_data`` and ``log_likelihood`` (see the module docstring for dims).

    Raises
    ------
    ValueError
        If shapes are inconsistent, the covariance type is unknown or ``feature_names`` has
        the wrong length.
    """
    w, mu, cov = _validate_params(weights, means, covariances, covariance_type)
    k, d = mu.shape
    if feature_names is None:
        features = [f"x{i}" for i in range(d)]
    else:
        features = [str(f) for f in feature_names]
        if len(features) != d:
            raise ValueError(
                f"feature_names has {len(features)} names but the means have {d} features"
            )
        if len(set(features)) != d:
            raise ValueError(f"feature_names must be unique; got {features}")
    trace = np.asarray(lower_bounds if lower_bounds is not None else [], dtype=np.float64).ravel()

    version = package_version()
    created_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    group_attrs = _group_attrs(created_at, version)

    component = np.arange(k)
    coords_post = {
        "chain": np.arange(1),
        "draw": np.arange(1),
        "component": component,
        "feature": features,
        "feature_bis": features,
    }
    cov_dims = {
        "full": ("chain", "draw", "component", "feature", "feature_bis"),
        "tied": ("chain", "draw", "feature", "feature_bis"),
        "diag": ("chain", "draw", "component", "feature"),
        "spherical": ("chain", "draw", "component"),
    }[covariance_type]
    posterior = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w[None, None]),
            "locs": (("chain", "draw", "component", "feature"), mu[None, None]),
            "covariances": (cov_dims, cov[None, None]),
        },
        coords={
            name: values
            for name, values in coords_post.items()
            if name in {"chain", "draw", "component", "feature"} or name in cov_dims
        },
        attrs=group_attrs,
    )
    sample_stats = xr.Dataset(
        {
            "lp": (("chain", "draw"), np.array([[float(objective)]])),
            "converged": (("chain", "draw"), np.array([[bool(converged)]])),
            "n_iter": (("chain", "draw"), np.array([[int(n_iter)]], dtype=np.int64)),
        },
        coords={"chain": np.arange(1), "draw": np.arange(1)},
        attrs=group_attrs,
    )
    em_trace = xr.Dataset(
        {"lower_bound": (("iteration",), trace)},
        coords={"iteration": np.arange(1, trace.size + 1)},
        attrs=group_attrs,
    )
    groups: dict[str, xr.Dataset] = {
        "posterior": posterior,
        "sample_stats": sample_stats,
        "em_trace": em_trace,
    }

    if x is not None:
        xx = np.asarray(x, dtype=np.float64)
        if xx.ndim == 1:
            xx = xx[:, None]
        if xx.ndim != 2 or xx.shape[1] != d:
            raise ValueError(f"x must have shape (n_samples, {d}); got shape {xx.shape}")
        obs_id = np.arange(xx.shape[0])
        ll = pointwise_log_likelihood(xx, w, mu, cov, covariance_type)
        groups["log_likelihood"] = xr.Dataset(
            {"obs": (("chain", "draw", "obs_id"), ll[None, None])},
            coords={"chain": np.arange(1), "draw": np.arange(1), "obs_id": obs_id},
            attrs=group_attrs,
        )
        groups["observed_data"] = xr.Dataset(
            {"obs": (("obs_id", "feature"), xx)},
            coords={"obs_id": obs_id, "feature": features},
            attrs={k_: v for k_, v in group_attrs.items() if not k_.startswith("inference")},
        )

    root_attrs: dict[str, Any] = {
        "covariance_type": covariance_type,
        "n_components": int(k),
        "n_features": int(d),
        "numpyro_gmm_version": version,
        **group_attrs,
    }
    for key, value in (attrs or {}).items():
        root_attrs[str(key)] = _netcdf_attr(value)
    root = xr.Dataset(attrs=root_attrs)
    return xr.DataTree.from_dict({"/": root, **groups})


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Give a temporary path next to ``path`` and move it into place on success.

    The temporary file lives in the same directory as ``path`` (so the final
    :func:`os.replace` is atomic on POSIX and Windows). If the body raises, the temporary
    file is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.

    Yields
    ------
    str
        Temporary path to write to. It does not exist yet.

    Examples
    --------
    >>> with atomic_path("fig.png") as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp, format="png")
    """
    target = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(target))
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_datatree_atomic(dt: xr.DataTree, path: str | os.PathLike[str]) -> None:
    """Write a DataTree to netCDF atomically.

    The tree is written to a temporary file in the destination directory and then moved
    over ``path`` with :func:`os.replace`, so a failure never leaves a partial file.

    Parameters
    ----------
    dt : xarray.DataTree
        Tree to write.
    path : str or os.PathLike
        Destination netCDF file (overwritten if it exists).
    """
    with atomic_path(path) as tmp:
        dt.to_netcdf(tmp)


class MAPResult:
    """The MAP of a NumPyro mixture model, with every restart's outcome.

    Attributes
    ----------
    params : dict
        Latent site name -> MAP value (constrained), best restart.
    objective : float
        Log joint of ``params`` (NumPyro's own, no Jacobian).
    restarts : dict
        ``objective`` (R,), ``n_iter`` (R,), ``converged`` (R,) of every restart.
    trace : np.ndarray, shape (R, max_iter)
        Per-sample log joint of every iteration (parameters entering it), NaN after the last.
    method : str
    options : dict
    """

    def __init__(self, mixture, params, objective, restarts, trace, method, options) -> None:
        self.mixture = mixture
        self.params = params
        self.objective = objective
        self.restarts = restarts
        self.trace = trace
        self.method = method
        self.options = options

    @classmethod
    def from_fit(
        cls,
        mixture,
        params,
        *,
        method,
        restart_objective,
        restart_n_iter,
        restart_converged,
        trace,
        options,
    ) -> MAPResult:
        """Score ``params`` with the model's own log joint and collect the restarts."""
        import jax.numpy as jnp

        params = {name: np.asarray(value) for name, value in params.items()}
        objective = float(mixture.log_joint({k: jnp.asarray(v) for k, v in params.items()}))
        restarts = {
            "objective": np.asarray(restart_objective),
            "n_iter": np.asarray(restart_n_iter),
            "converged": np.asarray(restart_converged),
        }
        return cls(mixture, params, objective, restarts, np.asarray(trace), method, options)

    @property
    def converged(self) -> bool:
        """Whether the best restart converged."""
        best = int(np.nanargmax(self.restarts["objective"]))
        return bool(self.restarts["converged"][best])

    def _log_probs(self, x) -> np.ndarray:
        import jax.numpy as jnp

        args = (jnp.asarray(x), *self.mixture.args[1:])
        params = {k: jnp.asarray(v) for k, v in self.params.items()}
        return np.asarray(self.mixture.component_log_probs(params, args))

    def score_samples(self, x) -> np.ndarray:
        """Marginal log-likelihood of every row of ``x`` at the MAP."""
        return logsumexp(self._log_probs(x), axis=1)

    def predict_proba(self, x) -> np.ndarray:
        """Responsibilities (N, K) at the MAP."""
        log_probs = self._log_probs(x)
        return np.exp(log_probs - logsumexp(log_probs, axis=1, keepdims=True))

    def predict(self, x) -> np.ndarray:
        """Most probable component of every row."""
        return np.argmax(self._log_probs(x), axis=1)

    def _replace_method(self, method: str, extras: dict) -> MAPResult:
        """The same result attributed to ``method``, with its extra results in ``options``."""
        self.method = method
        self.options = {**self.options, **extras}
        return self

    def to_datatree(
        self,
        laplace_draws: int | None = None,
        rng_key: Any = 0,
        *,
        component_axes: Mapping[str, int | None] | None = None,
        dims: Mapping[str, Sequence[str]] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> xr.DataTree:
        """The result as an ArviZ 1.x ``xarray.DataTree`` (see :func:`map_result_to_datatree`).

        Parameters
        ----------
        laplace_draws : int, optional
            When given, ``posterior`` holds this many draws from the Laplace approximation
            around the MAP (:mod:`numpyro_gmm.laplace`) instead of the MAP itself, with their
            pointwise log-likelihood and ``log_p`` / ``log_q`` for
            ``arviz.loo_approximate_posterior``; the MAP moves to the ``map`` group.
        rng_key : int, numpy Generator or JAX PRNG key
            Seed of the Laplace draws.
        component_axes : mapping, optional
            Site -> component axis (None: no component axis), for models where it cannot
            be inferred (see :func:`numpyro_gmm.relabel.component_axes`).
        dims : mapping, optional
            Site -> names of its dims (without ``chain``, ``draw``), overriding the defaults.
        feature_names : sequence of str, optional
            Coordinates of the ``feature`` dim (default ``x0, x1, ...``).

        Returns
        -------
        xarray.DataTree
        """
        return map_result_to_datatree(
            self,
            laplace_draws=laplace_draws,
            rng_key=rng_key,
            component_axes=component_axes,
            dims=dims,
            feature_names=feature_names,
        )

    def init_to_value(self):
        """NumPyro init strategy that starts MCMC (e.g. NUTS) at the MAP."""
        from numpyro.infer import init_to_value

        return init_to_value(values={k: np.asarray(v) for k, v in self.params.items()})

    def __repr__(self) -> str:
        sites = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return (
            f"MAPResult(method={self.method!r}, objective={self.objective:.6g}, "
            f"converged={self.converged}, restarts={self.restarts['objective'].size}, "
            f"params=[{sites}])"
        )


#: What ``sample_stats.lp`` and ``MAPResult.objective`` measure.
OBJECTIVE_CONVENTION = (
    "log joint (log likelihood + log prior) in the constrained parameters, NumPyro "
    "log_density, no Jacobian"
)


def _site_dims(
    name: str,
    shape: tuple[int, ...],
    component_axis: int | None,
    n_features: int,
) -> tuple[str, ...]:
    """Default dims of a latent site: ``component``, ``feature``/``feature_bis``, else generic."""
    dims: list[str] = []
    feature_names = iter(("feature", "feature_bis"))
    for axis, size in enumerate(shape):
        if axis == component_axis:
            dims.append("component")
            continue
        if size == n_features:
            label = next(feature_names, None)
            if label is not None:
                dims.append(label)
                continue
        dims.append(f"{name}_dim_{axis}")
    return tuple(dims)


class PosteriorLayout(NamedTuple):
    """How the latent sites of a fitted model are laid out in a DataTree.

    Attributes
    ----------
    site_dims : dict
        Site name -> dims of one draw (without ``chain``, ``draw``).
    component_axes : dict
        Site name -> component axis (or None), see :func:`numpyro_gmm.relabel.component_axes`.
    features : list of str
        Coordinates of ``feature`` / ``feature_bis``.
    n_components : int
    """

    site_dims: dict[str, tuple[str, ...]]
    component_axes: dict[str, int | None]
    features: list[str]
    n_components: int

    @classmethod
    def of(
        cls,
        result: MAPResult,
        *,
        component_axes: Mapping[str, int | None] | None = None,
        dims: Mapping[str, Sequence[str]] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> PosteriorLayout:
        """The layout of ``result``'s sites (see :func:`map_result_to_datatree`)."""
        from numpyro_gmm.relabel import component_axes as find_component_axes

        x = np.asarray(result.mixture.args[0])
        n_features = 1 if x.ndim < 2 else int(x.shape[-1])
        features = (
            [f"x{i}" for i in range(n_features)]
            if feature_names is None
            else [str(f) for f in feature_names]
        )
        if len(features) != n_features:
            raise ValueError(
                f"feature_names has {len(features)} names; the data have {n_features}."
            )
        axes = find_component_axes(result, axes=component_axes)
        site_dims = {
            name: tuple(dims[name])
            if dims and name in dims
            else _site_dims(name, np.shape(value), axes[name], n_features)
            for name, value in result.params.items()
        }
        for name, names in site_dims.items():
            if len(names) != np.ndim(result.params[name]):
                raise ValueError(
                    f"dims[{name!r}] has {len(names)} names; the site has shape "
                    f"{np.shape(result.params[name])}."
                )
        return cls(site_dims, axes, features, int(result.mixture.n_components))

    def coords(self, dims: Sequence[str]) -> dict[str, Any]:
        """Coordinates of the named dims that have them."""
        coords: dict[str, Any] = {}
        for dim in dims:
            if dim == "component":
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
        return xr.Dataset(variables, coords=coords, attrs=dict(attrs or {}))


def map_result_to_datatree(
    result: MAPResult,
    *,
    laplace_draws: int | None = None,
    rng_key: Any = 0,
    component_axes: Mapping[str, int | None] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    feature_names: Sequence[str] | None = None,
) -> xr.DataTree:
    """Convert a :class:`MAPResult` to an ArviZ 1.x ``xarray.DataTree``.

    Groups (sample dims ``chain`` and ``draw``):

    ``posterior``
        One variable per latent site of the model, named after it, constrained values. The
        component axis is named ``component`` (coords ``0..K-1``), axes of the data's size
        ``D`` are ``feature`` then ``feature_bis``, others ``{site}_dim_{axis}``. Without
        Laplace draws it is the MAP (``chain=1, draw=1``); with ``laplace_draws=S`` it holds
        ``S`` draws (``chain=1, draw=S``).
    ``log_likelihood``
        Pointwise marginal log-likelihood ``log sum_k pi_k p_k(x_n)`` of each posterior
        point, named after the observed site (e.g. ``obs``), over ``(chain, draw, obs_id)``.
    ``sample_stats``
        ``lp``: the log joint (:data:`OBJECTIVE_CONVENTION`). For the MAP also
        ``converged`` and ``n_iter`` of the best restart; for Laplace draws also ``log_p``
        (log joint plus log-Jacobian in the unconstrained space) and ``log_q`` (the Laplace
        log density), the inputs of ``arviz.loo_approximate_posterior``.
    ``map`` (only with Laplace draws)
        The MAP itself, with the ``posterior`` layout and ``chain=1, draw=1``.
    ``observed_data``
        The data, named after the observed site, over ``obs_id`` (and ``feature``).
    ``restarts``
        ``objective``, ``n_iter`` and ``converged`` of every restart over ``restart``.
    ``em_trace``
        ``lower_bound`` over ``(restart, iteration)``: the per-sample log joint of the
        parameters entering each iteration, NaN after a restart stopped.

    Root attrs: ``method``, ``options`` (JSON), ``objective`` and its ``objective_convention``,
    ``best_restart``, ``converged``, ``n_iter``, ``n_components``, ``mixture_site``,
    ``model_style``, ``component_axes`` (JSON), the package version and, with draws, the
    ``laplace_*`` settings.

    Parameters
    ----------
    result : MAPResult
    laplace_draws, rng_key, component_axes, dims, feature_names
        See :meth:`MAPResult.to_datatree`.

    Returns
    -------
    xarray.DataTree
    """
    mixture = result.mixture
    x = np.asarray(mixture.args[0])
    layout = PosteriorLayout.of(
        result, component_axes=component_axes, dims=dims, feature_names=feature_names
    )
    axes, features = layout.component_axes, layout.features
    k = mixture.n_components
    obs_id = np.arange(x.shape[0])

    def sample_dataset(values: Mapping[str, np.ndarray], n_draws: int) -> xr.Dataset:
        return layout.dataset(
            {
                name: np.asarray(value).reshape(1, n_draws, *np.shape(result.params[name]))
                for name, value in values.items()
            },
            attrs=group_attrs,
        )

    version = package_version()
    created_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    group_attrs = _group_attrs(created_at, version)
    sample_coords = {"chain": np.arange(1)}
    best = int(
        np.nanargmax(
            np.where(
                np.isfinite(result.restarts["objective"]), result.restarts["objective"], -np.inf
            )
        )
    )
    map_point = sample_dataset({n: np.asarray(v)[None] for n, v in result.params.items()}, 1)
    site = mixture.mixture_site
    groups: dict[str, xr.Dataset] = {}
    root_attrs: dict[str, Any] = {
        "method": result.method,
        "options": _netcdf_attr(dict(result.options)),
        "objective": float(result.objective),
        "objective_convention": OBJECTIVE_CONVENTION,
        "best_restart": best,
        "converged": int(bool(result.restarts["converged"][best])),
        "n_iter": int(result.restarts["n_iter"][best]),
        "n_components": int(k),
        "mixture_site": site,
        "model_style": mixture.style,
        "component_axes": _netcdf_attr(dict(axes)),
        "numpyro_gmm_version": version,
        **group_attrs,
    }
    if laplace_draws is None:
        ll = result.score_samples(x)[None, None]
        groups["posterior"] = map_point
        groups["sample_stats"] = xr.Dataset(
            {
                "lp": (("chain", "draw"), np.array([[float(result.objective)]])),
                "converged": (("chain", "draw"), np.array([[bool(root_attrs["converged"])]])),
                "n_iter": (("chain", "draw"), np.array([[root_attrs["n_iter"]]], np.int64)),
            },
            coords={**sample_coords, "draw": np.arange(1)},
            attrs=group_attrs,
        )
    else:
        from numpyro_gmm.laplace import LAPLACE_CONVENTION, sample_laplace

        draws = sample_laplace(result, laplace_draws, rng_key)
        n_draws = int(laplace_draws)
        ll = draws.log_likelihood[None]
        groups["posterior"] = sample_dataset(draws.params, n_draws)
        groups["map"] = map_point
        stats = {"lp": draws.log_joint, "log_p": draws.log_p, "log_q": draws.log_q}
        groups["sample_stats"] = xr.Dataset(
            {name: (("chain", "draw"), value[None]) for name, value in stats.items()},
            coords={**sample_coords, "draw": np.arange(n_draws)},
            attrs=group_attrs,
        )
        root_attrs.update(
            laplace_draws=n_draws,
            laplace_convention=LAPLACE_CONVENTION,
            laplace_center="mode",
            laplace_clipped_eigenvalues=int(draws.approximation.n_clipped),
        )
    n_draws = ll.shape[1]
    groups["log_likelihood"] = xr.Dataset(
        {site: (("chain", "draw", "obs_id"), np.asarray(ll, np.float64))},
        coords={**sample_coords, "draw": np.arange(n_draws), "obs_id": obs_id},
        attrs=group_attrs,
    )
    observed_dims = ("obs_id",) if x.ndim == 1 else ("obs_id", "feature")
    observed_coords: dict[str, Any] = {"obs_id": obs_id}
    if x.ndim == 2:
        observed_coords["feature"] = features
    groups["observed_data"] = xr.Dataset(
        {site: (observed_dims, x)},
        coords=observed_coords,
        attrs={k_: v for k_, v in group_attrs.items() if not k_.startswith("inference")},
    )
    restart = np.arange(np.size(result.restarts["objective"]))
    groups["restarts"] = xr.Dataset(
        {
            "objective": (("restart",), np.asarray(result.restarts["objective"], np.float64)),
            "n_iter": (("restart",), np.asarray(result.restarts["n_iter"], np.int64)),
            "converged": (("restart",), np.asarray(result.restarts["converged"], bool)),
        },
        coords={"restart": restart},
        attrs=group_attrs,
    )
    trace = np.asarray(result.trace, np.float64)
    trace = trace.reshape(restart.size, -1) if trace.size else np.empty((restart.size, 0))
    groups["em_trace"] = xr.Dataset(
        {"lower_bound": (("restart", "iteration"), trace)},
        coords={"restart": restart, "iteration": np.arange(1, trace.shape[1] + 1)},
        attrs={**group_attrs, "units": "per-sample log joint"},
    )
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=root_attrs), **groups})
