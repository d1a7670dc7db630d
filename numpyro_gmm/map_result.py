"""The MAP of a NumPyro mixture model: a :class:`~numpyro_gmm.fit_result.FitResult` plus the
model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp

from numpyro_gmm.fit_result import FitResult

__all__ = ["MAPResult"]


class MAPResult:
    """The MAP of a NumPyro mixture model, with every restart's outcome.

    Attributes
    ----------
    params : dict
        Latent site name -> MAP value (constrained), chosen restart.
    objective : float
        Log joint of ``params`` (NumPyro's own, no Jacobian).
    fit : FitResult
        The pipeline's result: restarts, chosen restart, traces, method, options, extras.
    mixture : MixtureModel
        The model and its data, as read by :mod:`numpyro_gmm.numpyro_bridge`.
    """

    def __init__(self, mixture, params: dict, objective: float, fit: FitResult) -> None:
        #: Where the data and covariates go in the model's own call
        #: (:class:`~numpyro_gmm.numpyro_bridge.arguments.ArgumentLayout`), set by ``fit``.
        self.arguments = None
        self.mixture = mixture
        self.params = params
        self.objective = objective
        self.fit = fit

    @classmethod
    def from_fit(cls, mixture, params: Mapping[str, Any], fit: FitResult) -> MAPResult:
        """Score ``params`` with the model's own log joint."""
        params = {name: np.asarray(value) for name, value in params.items()}
        objective = float(mixture.compiled("log_joint")(params, mixture.args))
        return cls(mixture, params, objective, fit)

    @property
    def method(self) -> str:
        """The method (recipe) that produced the fit."""
        return self.fit.method

    @property
    def options(self) -> dict:
        """The method's options as run."""
        return self.fit.options

    @property
    def restarts(self) -> dict[str, np.ndarray]:
        """``objective``, ``n_iter``, ``converged`` and ``failed`` of every restart."""
        return dict(self.fit.restarts._asdict())

    @property
    def best_restart(self) -> int:
        """The restart whose parameters are ``params``."""
        return self.fit.best_restart

    @property
    def converged(self) -> bool:
        """Whether the chosen restart converged."""
        return self.fit.converged

    @property
    def trace(self) -> np.ndarray:
        """Per-sample log joint of every iteration of every restart, NaN after the last."""
        return self.fit.trace

    def _log_probs(self, *args, **kwargs) -> np.ndarray:
        """(N, K) ``log pi_k + log p_k(x_n)`` for new data, given as the model's own arguments
        (``predict(x)`` alone keeps the fit's other arguments, e.g. its covariates)."""
        import jax.numpy as jnp

        if len(args) == 1 and not kwargs:
            x, arrays = args[0], tuple(self.mixture.args[1:])
            self._check_kept_arrays(x, arrays)
        elif self.arguments is not None:
            x, arrays = self.arguments.split(args, kwargs, _signature(self.mixture.model))
        else:  # a model called data first
            x, arrays = args[0], tuple(args[1:])
        if x is None or any(a is None for a in arrays):
            raise ValueError(
                "Responsibilities and log densities need the values the mixture site "
                f"{self.mixture.mixture_site!r} observes: pass them (not None) with the "
                "model's other arguments."
            )
        data = (jnp.asarray(x), *(jnp.asarray(a) for a in arrays))
        return np.asarray(self.mixture.component_log_probs(_as_jax(self.params), data))

    def _check_kept_arrays(self, x, arrays: tuple) -> None:
        """New data alone keep the fit's other arrays: refuse when those are per row of
        the training data and the new data have another number of rows."""
        n_fit, n_new = np.shape(self.mixture.args[0])[:1], np.shape(x)[:1]
        per_row = [a for a in arrays if np.ndim(a) >= 1 and np.shape(a)[:1] == n_fit]
        if per_row and n_new != n_fit:
            fitted = "" if self.arguments is None else f" ({self.arguments.describe()})"
            raise TypeError(
                f"The model takes per-row arrays besides the values its mixture site "
                f"{self.mixture.mixture_site!r} observes{fitted}; one array is read as those "
                f"values, with the fit's {n_fit[0]} rows of the others. Pass all of the "
                "model's arguments for the new rows, as the fit did, e.g. "
                "predict(covariates_new, y_new)."
            )

    def score_samples(self, *args, **kwargs) -> np.ndarray:
        """Marginal log-likelihood of every row of new data at the MAP; the data (and
        covariates) as the model's arguments, e.g. ``score_samples(x_new)`` or
        ``score_samples(covariates_new, y_new)``."""
        return logsumexp(self._log_probs(*args, **kwargs), axis=1)

    def predict_proba(self, *args, **kwargs) -> np.ndarray:
        """Responsibilities (N, K) at the MAP (arguments as :meth:`score_samples`)."""
        log_probs = self._log_probs(*args, **kwargs)
        return np.exp(log_probs - logsumexp(log_probs, axis=1, keepdims=True))

    def predict(self, *args, **kwargs) -> np.ndarray:
        """Most probable component of every row (arguments as :meth:`score_samples`)."""
        return np.argmax(self._log_probs(*args, **kwargs), axis=1)

    def to_datatree(
        self,
        laplace_draws: int | None = None,
        rng_key: Any = 0,
        *,
        component_axes: Mapping[str, int | None] | None = None,
        dims: Mapping[str, Sequence[str]] | None = None,
        feature_names: Sequence[str] | None = None,
    ):
        """The result as an ArviZ 1.x ``xarray.DataTree`` (:mod:`numpyro_gmm.datatree`).

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
            be inferred (see :func:`numpyro_gmm.relabelling.component_axes`).
        dims : mapping, optional
            Site -> names of its dims (without ``chain``, ``draw``), overriding the defaults:
            the dims ``az.from_numpyro`` gives the same model (its plates' names, then
            ``{site}_dim_{i}``, integer coordinates), so that the MAP's tree and a NUTS
            posterior's line up.
        feature_names : sequence of str, optional
            Names of the data's columns: the sites' dims are then ``component``,
            ``feature`` (with these coordinates) and ``{site}_dim_{i}``.

        Returns
        -------
        xarray.DataTree
        """
        from numpyro_gmm.datatree import LaplaceGroups, build_datatree

        x = np.asarray(self.mixture.args[0])
        trace = self.mixture.trace_at(_as_jax(self.params))
        point = dict(self.params)
        if laplace_draws is None:  # Laplace draws hold the latent sites only
            point.update(_deterministic_sites(trace))
        layout = self.layout(
            component_axes=component_axes,
            dims=dims,
            feature_names=feature_names,
            point=point,
            plate_dims=True,
        )
        observed = x
        other_observed = {}
        if layout.integer_coords:  # as az.from_numpyro: the values the sites observe
            observed = np.asarray(trace[self.mixture.mixture_site]["value"])
            plates = self._numpyro_plates()
            other_observed = {
                name: (_dims_of(plates, name, np.ndim(value)), value)
                for name, value in _observed_sites(trace).items()
                if name != self.mixture.mixture_site
            }
        laplace = None
        if laplace_draws is not None:
            from numpyro_gmm.laplace import LAPLACE_CONVENTION, sample_laplace

            draws = sample_laplace(self, laplace_draws, rng_key)
            laplace = LaplaceGroups(
                params=draws.params,
                log_likelihood=draws.log_likelihood,
                stats={"lp": draws.log_joint, "log_p": draws.log_p, "log_q": draws.log_q},
                attrs={
                    "laplace_draws": int(laplace_draws),
                    "laplace_convention": LAPLACE_CONVENTION,
                    "laplace_center": "mode",
                    "laplace_clipped_eigenvalues": int(draws.approximation.n_clipped),
                },
            )
        return build_datatree(
            self.fit,
            point,
            layout,
            objective=self.objective,
            observed=observed,
            log_likelihood=self.score_samples(x) if laplace is None else np.empty(0),
            observed_name=self.mixture.mixture_site,
            other_observed=other_observed,
            laplace=laplace,
            responsibilities=self.predict_proba(x) if laplace is None else None,
            attrs={
                "mixture_site": self.mixture.mixture_site,
                "model_style": self.mixture.style,
                "data_argument": _slot_name(self.arguments.data if self.arguments else ("arg", 0)),
                "model_arguments": self.arguments.describe() if self.arguments else "the data",
            },
        )

    def layout(
        self,
        *,
        component_axes: Mapping[str, int | None] | None = None,
        dims: Mapping[str, Sequence[str]] | None = None,
        feature_names: Sequence[str] | None = None,
        point: Mapping[str, Any] | None = None,
        plate_dims: bool = False,
    ):
        """How the sites are laid out in a tree (:class:`numpyro_gmm.datatree.PosteriorLayout`);
        ``point`` (default ``params``) may add sites such as deterministic ones. With
        ``plate_dims`` (and neither ``dims`` nor ``feature_names``) the dims are those
        ``az.from_numpyro`` gives the model's sites; otherwise ``component``, ``feature``
        and ``{site}_dim_{i}``."""
        from numpyro_gmm.datatree import PosteriorLayout
        from numpyro_gmm.relabelling import component_axes as find_component_axes

        x = np.asarray(self.mixture.args[0])
        point = self.params if point is None else point
        observed_dims, integer_coords = ("obs_id", "feature"), False
        if plate_dims and dims is None and feature_names is None:
            numpyro_dims = self._numpyro_dims(point)
            if numpyro_dims is not None:
                (dims, observed_dims), integer_coords = numpyro_dims, True
        axes = find_component_axes(self, axes=component_axes)
        return PosteriorLayout.of(
            point,
            axes,
            n_features=1 if x.ndim < 2 else int(x.shape[-1]),
            n_components=self.mixture.n_components,
            dims=dims,
            feature_names=feature_names,
            observed_dims=observed_dims,
            integer_coords=integer_coords,
        )

    def _numpyro_dims(self, point: Mapping[str, Any]):
        """The dims ``az.from_numpyro`` gives the model's sites (its plates' names, then
        ``{site}_dim_{i}``) and the observed data's ``(rows, columns)``; None when ArviZ
        cannot read the model's plates (the generic layout is used)."""
        plates = self._numpyro_plates()
        if plates is None:
            return None
        dims = {name: _dims_of(plates, name, np.ndim(value)) for name, value in point.items()}
        return dims, _dims_of(plates, self.mixture.mixture_site, 2)

    def _numpyro_plates(self) -> dict | None:
        """Site -> the names of the plates it sits in, as ``az.from_numpyro`` reads them."""
        import numpyro.infer.initialization  # noqa: F401 - what infer_dims reads
        import numpyro.ops.pytree  # noqa: F401
        from arviz_base.io_numpyro import infer_dims

        from numpyro_gmm.numpyro_bridge.reader import restore_numpyro_submodules

        restore_numpyro_submodules()
        try:
            return infer_dims(self.mixture.model, self.mixture.args, self.mixture.kwargs)
        except Exception:  # noqa: BLE001 - any failure of ArviZ's reading: generic dims
            return None

    def deterministic_sites(self) -> dict[str, np.ndarray]:
        """The model's ``numpyro.deterministic`` sites at the MAP (as ``az.from_numpyro``
        puts them in the posterior)."""
        return _deterministic_sites(self.mixture.trace_at(_as_jax(self.params)))

    def init_to_value(self):
        """NumPyro init strategy that starts MCMC (e.g. NUTS) at the MAP."""
        from numpyro.infer import init_to_value

        return init_to_value(values={k: np.asarray(v) for k, v in self.params.items()})

    def __repr__(self) -> str:
        sites = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return (
            f"MAPResult(method={self.method!r}, objective={self.objective:.6g}, "
            f"converged={self.converged}, restarts={self.fit.restarts.objective.size}, "
            f"params=[{sites}])"
        )


def _signature(model):
    """The signature of the user's model (through the wrappers that rearrange its call)."""
    import inspect

    try:
        return inspect.signature(model)
    except (TypeError, ValueError):
        return None


def _as_jax(params: Mapping[str, Any]) -> dict:
    import jax.numpy as jnp

    return {name: jnp.asarray(value) for name, value in params.items()}


def _slot_name(slot: tuple[str, int | str]) -> str:
    """Where the model takes its data, as saved in a tree: ``"arg:1"``, ``"kwarg:y"``."""
    return f"{slot[0]}:{slot[1]}"


def _dims_of(plates: Mapping[str, Sequence[str]], name: str, ndim: int) -> tuple[str, ...]:
    """A site's dims as ``az.from_numpyro`` names them: its plates, then ``{name}_dim_{i}``."""
    named = tuple(plates.get(name) or ())[:ndim]
    return (*named, *(f"{name}_dim_{i}" for i in range(ndim - len(named))))


def _observed_sites(trace) -> dict[str, np.ndarray]:
    """Every observed site's value (factors included), as ``az.from_numpyro`` keeps them."""
    return {
        name: np.asarray(site["value"])
        for name, site in trace.items()
        if site["type"] == "sample" and site["is_observed"]
    }


def _deterministic_sites(trace) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(site["value"])
        for name, site in trace.items()
        if site["type"] == "deterministic"
    }
