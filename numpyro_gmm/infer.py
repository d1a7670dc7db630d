"""MAP inference for NumPyro mixture models: ``fit``, ``MAP`` and the algorithms ``EM``,
``BigLearnEM``, ``GradientEM`` and ``SplitMergeEM``.

``EM(model)`` finds the MAP of the model's own log joint (constrained parameters, no
Jacobian: the objective of NumPyro's ``log_density`` and of SVI with ``AutoDelta``):

- conjugate Gaussian mixtures (Dirichlet weights, Normal / Normal-Inverse-Wishart means,
  Inverse-Wishart or Inverse-Gamma covariances; :mod:`numpyro_gmm.numpyro_bridge.conjugate`
  recognizes them in any model, e.g. those of :func:`numpyro_gmm.models.gaussian_mixture`)
  run the closed-form MAP-EM engine (chunked E-step, vectorized restarts);
- any other mixture model that :func:`~numpyro_gmm.numpyro_bridge.read_model` understands
  (styles A, B, C; Gaussian or not, e.g. Poisson or StudentT components; any continuous
  priors) runs generalized EM: exact E-step, a few L-BFGS steps on ``Q`` in unconstrained
  space as the M-step, accepted only when ``Q`` does not decrease.

Restarts run as one vmapped program and the best (highest log joint) is returned; every
restart's objective is kept.
"""

import copy
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from numpyro_gmm import driver
from numpyro_gmm.fit_result import FitResult, Restarts, choose_restart, warn_about
from numpyro_gmm.fitting import InitialValues, restart_keys
from numpyro_gmm.kernels import get_kernel
from numpyro_gmm.map_result import MAPResult
from numpyro_gmm.mixture.chunking import RowPlan
from numpyro_gmm.mixture.init import kmeans_plusplus_indices, random_from_data_indices
from numpyro_gmm.mixture.params import precisions_cholesky_from_covariances
from numpyro_gmm.numpyro_bridge import MixtureModel, UnsupportedModelError, read_model
from numpyro_gmm.numpyro_bridge.arguments import bind_arguments
from numpyro_gmm.numpyro_bridge.conjugate import ConjugateMixture, match_conjugate
from numpyro_gmm.numpyro_bridge.reader import check_model_call, draw_trace, unwrap
from numpyro_gmm.pipeline import fit_mixture
from numpyro_gmm.program_cache import ProgramCache
from numpyro_gmm.validation import (
    check_data,
    check_n_samples,
    check_options,
    check_reg_covar_scale,
    to_device,
    working_dtype,
)

__all__ = ["EM", "BigLearnEM", "GradientEM", "SplitMergeEM", "MAP", "fit"]


# Seeding of the component means for generalized EM (jitted once per shape).
class _Seeding(NamedTuple):
    """How generalized EM seeds the component locations (static: part of the program's key).

    Attributes
    ----------
    indices : callable
        ``(key, x, K, n_active, rows) -> (K,)`` row indices (k-means++ or random rows).
    site : str or None
        The latent site of the component locations (None: not seeded from the data).
    counted_rows : bool
        Seed only from rows with a positive weight in the log joint (a masked likelihood).
    """

    indices: Any
    site: str | None
    counted_rows: bool


_SEEDING = {
    "k-means++": kmeans_plusplus_indices,
    "random_from_data": random_from_data_indices,
}


class _MAPAlgorithm:
    """What every MAP algorithm shares: the model, the stopping rule and the engine options."""

    def __init__(
        self,
        model,
        *,
        max_iter: int = 1000,
        tol: float = 1e-6,
        reg_covar: float = 1e-6,
        init_params: str = "k-means++",
    ) -> None:
        check_options(
            n_components=1,
            covariance_type="full",
            init_params=init_params,
            reg_covar=reg_covar,
            tol=tol,
            max_iter=max_iter,
            n_init=1,
        )
        self.model = model
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params

    def _options(self) -> dict[str, Any]:
        return {
            "max_iter": self.max_iter,
            "tol": self.tol,
            "reg_covar": self.reg_covar,
            "init_params": self.init_params,
        }


class EM(_MAPAlgorithm):
    """EM (closed-form or generalized) as a MAP algorithm for a NumPyro mixture model.

    Parameters
    ----------
    model : callable
        A NumPyro model called as ``model(x, *model_args, **model_kwargs)``.
    max_iter : int
    tol : float
        Stop when the per-sample log joint changes by less than ``tol``.
    reg_covar : float
        Closed-form path only: added to covariance diagonals (keeps them positive definite;
        a departure from the exact MAP of this size).
    init_params : {"k-means++", "random_from_data", "kmeans", "random"}
        How component means start. Closed form: scikit-learn's recipes. Generalized EM: the
        site holding the component means starts at k-means++ points (``"k-means++"``) or
        at random data points (any other value); the weights start uniform and the other
        sites at a draw from their prior.
    m_steps : int
        Generalized EM: L-BFGS iterations per M-step.
    initial_values : dict, optional
        Starting values of latent sites (constrained), for every restart.
    m_step : {"auto", "closed_form", "generalized"}
        ``"auto"``: closed form when the model is conjugate, generalized EM otherwise.
    """

    def __init__(
        self,
        model,
        *,
        max_iter: int = 1000,
        tol: float = 1e-6,
        reg_covar: float = 1e-6,
        init_params: str = "k-means++",
        m_steps: int = 10,
        initial_values: dict | None = None,
        m_step: str = "auto",
    ) -> None:
        super().__init__(
            model, max_iter=max_iter, tol=tol, reg_covar=reg_covar, init_params=init_params
        )
        if m_step not in ("auto", "closed_form", "generalized"):
            raise ValueError(
                f"Unknown m_step {m_step!r}; use 'auto', 'closed_form' or 'generalized'."
            )
        if not isinstance(m_steps, int) or m_steps < 1:
            raise ValueError(f"m_steps must be an integer >= 1, got {m_steps!r}.")
        self.m_step = m_step
        self.m_steps = m_steps
        self.initial_values = initial_values

    def run(self, rng_key, x, num_restarts: int, model_args=(), model_kwargs=None) -> MAPResult:
        """Fit ``num_restarts`` restarts and return the best as a :class:`MAPResult`."""
        x = _check_observations(x)
        mixture = _read_mixture(self.model, x, model_args, model_kwargs)
        conjugate = None if self.m_step == "generalized" else match_conjugate(mixture)
        if conjugate is None and self.m_step == "closed_form":
            raise ValueError(
                "m_step='closed_form' needs a conjugate Gaussian mixture (Dirichlet weights, "
                "Normal means, Inverse-Wishart or Inverse-Gamma covariances, a "
                "MixtureSameFamily likelihood and no other latent sites); this model is not "
                "one. Use m_step='auto' or 'generalized'."
            )
        if conjugate is not None:
            return self._run_closed_form(rng_key, x, num_restarts, conjugate, mixture)
        return self._run_generalized(rng_key, x, num_restarts, mixture)

    # -- closed form: the array engine with the model's conjugate priors -----------------

    def _run_closed_form(
        self, rng_key, x, num_restarts, conjugate: ConjugateMixture, mixture
    ) -> MAPResult:
        initial = None
        if self.initial_values:
            initial = _initial_from_sites(conjugate, self.initial_values, x.dtype)
        return _fit_conjugate(
            "em", self, rng_key, x, num_restarts, conjugate, mixture, initial=initial
        )

    # -- generalized EM on the model's own log density -------------------------------------

    def _run_generalized(self, rng_key, x, num_restarts, mixture: MixtureModel) -> MAPResult:
        keys = restart_keys(rng_key, num_restarts)
        given = {name: jnp.asarray(v) for name, v in (self.initial_values or {}).items()}
        seeding = _Seeding(
            _SEEDING.get(self.init_params, _SEEDING["random_from_data"]),
            _component_location_site(mixture, given),
            mixture.weighs_rows(),
        )
        program = _generalized_program(mixture, self.m_steps, self.max_iter, seeding)
        data = (jnp.asarray(x), *mixture.args[1:])
        run_states, finals, objectives = program(
            keys, data, given, jnp.asarray(self.tol, data[0].dtype)
        )
        objectives = np.asarray(objectives, np.float64)
        finals = {name: np.asarray(value) for name, value in finals.items()}
        # A restart whose parameters overflow (e.g. a scale to inf on a component with ~0
        # weight) can keep a finite objective: it failed all the same.
        finite_params = np.all(
            [np.isfinite(np.reshape(v, (len(keys), -1))).all(axis=1) for v in finals.values()],
            axis=0,
        )
        restarts = Restarts(
            objective=objectives,
            n_iter=np.asarray(run_states.n_iter, np.int64),
            converged=np.asarray(run_states.converged),
            failed=np.asarray(run_states.failed) | ~np.isfinite(objectives) | ~finite_params,
        )
        best = choose_restart(restarts)
        params = {name: value[best] for name, value in finals.items()}
        fit = FitResult(
            params=params,
            objective=float(objectives[best]),
            best_restart=best,
            restarts=restarts,
            trace=np.asarray(run_states.trace),
            method="em",
            n_samples=int(np.shape(x)[0]),
            options={"m_step": "generalized", **self._options()},
        )
        warn_about(fit, max_iter=self.max_iter, stacklevel=4)
        return MAPResult(mixture, params, float(objectives[best]), fit)

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "m_steps": self.m_steps}


_PROGRAMS = ProgramCache(maxsize=16)


def _generalized_program(
    mixture: MixtureModel, m_steps: int, max_iter: int, seeding: "_Seeding"
):
    """The jitted program of a generalized EM fit (starts, restarts loop, scores), built once
    per model structure.

    A fresh closure would hash differently on every call and recompile; the program depends
    only on the model function, its sites and the static options, so it is cached on those.
    It closes over the model without its data (passed as arguments): the cache keeps no data.
    """
    options = (m_steps, max_iter, seeding)
    if mixture.kwargs:  # keyword arguments may hold data: built for this call only
        return _build_generalized_program(mixture, *options)
    return _PROGRAMS.get(
        (*mixture.structure_key(), *options),
        lambda: _build_generalized_program(mixture.without_data(), *options),
    )


def _initial_values(
    mixture: MixtureModel, key, data: tuple, given: dict, seeding: "_Seeding"
) -> dict:
    """A restart's start (constrained): :func:`draw_trace`'s random point, the component locations
    ``seeded`` from data points by ``seeding``, equal weights on simplex sites, and the
    user's ``given`` values over all of these."""
    trace = draw_trace(mixture.model, key, *data, **mixture.kwargs)
    values = {name: trace[name]["value"] for name in mixture.latent_sites}
    if seeding.site is not None:
        x = data[0] if data[0].ndim == 2 else data[0][:, None]
        if seeding.counted_rows:
            # Seed from rows the log joint counts: a masked row may hold anything.
            _, row_weights, _ = mixture.weighted_log_probs_and_log_prior(values, data)
            counted = row_weights > 0
            order = jnp.argsort(~counted, stable=True)  # counted rows first
            rows = RowPlan(x.shape[0], None, jnp.sum(counted))
            indices = order[seeding.indices(key, x[order], mixture.n_components, None, rows)]
        else:
            indices = seeding.indices(key, x, mixture.n_components)
        values[seeding.site] = jnp.reshape(x[indices], values[seeding.site].shape)
    for name, value in values.items():
        if mixture.supports[name] is constraints.simplex:
            values[name] = jnp.full_like(value, 1.0 / value.shape[-1])
    return {**values, **given}


def _build_generalized_program(
    mixture: MixtureModel, m_steps: int, max_iter: int, seeding: "_Seeding"
):
    kernel = get_kernel("generalized_em", parameters="pytree")

    def log_probs_and_prior(params, data):
        return mixture.weighted_log_probs_and_log_prior(mixture.constrain(params), data)

    step = kernel.build_kernel(log_probs_and_prior, m_steps=m_steps)

    def start(key, data, given):
        values = _initial_values(mixture, key, data, given, seeding)
        state = kernel.init(mixture.unconstrain(values))
        return driver.init_run_state(state, max_iter, data[0].dtype)

    @jax.jit
    def program(keys, data, given, tol):
        states = jax.vmap(start, in_axes=(0, None, None))(keys, data, given)
        run_states = driver.advance_restarts(
            keys,
            step,
            states,
            data,
            stop_at=max_iter,
            tol=tol,
            objective_scale=1.0 / data[0].shape[0],
        )
        finals = jax.vmap(mixture.constrain)(run_states.kernel_state.params)
        objectives = jax.vmap(lambda params: mixture.log_joint(params, data))(finals)
        return run_states, finals, objectives

    return program


def _component_location_site(mixture: MixtureModel, given: dict) -> str | None:
    """The latent site whose value is the (K, D) or (K,) array of the component means (None
    when the user gives its initial value, or none is found).

    Found by value in a random start (:func:`draw_trace`): the site equals the mixture's
    component means (styles A, B), or indexed by the sampled assignments it equals the
    observed site's mean (style C).
    """
    trace = draw_trace(mixture.model, 0, *mixture.args, **mixture.kwargs)
    site = trace[mixture.mixture_site]
    fn = site["fn"]
    while hasattr(fn, "base_dist") and not hasattr(fn, "component_mean"):
        fn = fn.base_dist
    if mixture.style == "C":
        target = np.asarray(fn.mean)
        index = np.asarray(trace[mixture.assignment_site]["value"])
    else:
        target, index = np.asarray(fn.component_mean), None
    for name in mixture.latent_sites:
        value = np.asarray(trace[name]["value"])
        if value.ndim == 0 or value.shape[0] != mixture.n_components:
            continue
        candidate = value if index is None else value[index]
        if candidate.shape == target.shape and np.allclose(candidate, target):
            return None if name in given else name
    return None


def _read_mixture(model, x, model_args, model_kwargs) -> MixtureModel:
    """Locate the mixture of ``model(x, ...)`` and check that its MAP can exist.

    Refused: a distribution with invalid parameters (NumPyro's own check, or a non-finite log
    density at a random point of the support when validation is off), and a Dirichlet prior with a
    concentration below 1, whose density is unbounded, so that no MAP exists.
    """
    spec = getattr(model, "spec", None)  # a builder model knows K before it is traced
    if spec is not None and hasattr(spec, "n_components"):
        check_n_samples(x.shape[0], spec.n_components)
    try:
        mixture = read_model(model, x, *model_args, **(model_kwargs or {}))
    except ValueError as error:
        _raise_invalid_parameters(error)
    check_n_samples(x.shape[0], mixture.n_components)
    trace = draw_trace(mixture.model, 0, *mixture.args, **mixture.kwargs)
    values = {name: trace[name]["value"] for name in mixture.latent_sites}
    site_log_priors = mixture.compiled("site_log_priors")(values, mixture.args)
    for name in mixture.latent_sites:
        site = trace[name]
        if not np.isfinite(np.asarray(site_log_priors[name])):
            raise ValueError(
                f"The prior of site {name!r} has a non-finite log density at a point of "
                "its support: give its distribution finite parameters in their valid range."
            )
        fn = unwrap(site["fn"])
        if isinstance(fn, dist.Dirichlet) and np.min(np.asarray(fn.concentration)) < 1.0:
            raise ValueError(
                f"The prior of site {name!r} is a Dirichlet with concentration "
                f"{float(np.min(np.asarray(fn.concentration))):g} < 1: its density is "
                "unbounded at the edge of the simplex, so the MAP does not exist. Use a "
                "concentration >= 1 for MAP fitting (1 is flat, e.g. "
                "gaussian_mixture(..., weight_concentration=1.0)), or sample the model with "
                "NUTS."
            )
    return mixture


def _raise_invalid_parameters(error: ValueError):
    """Re-raise an error of running the model, saying what to do when NumPyro found a
    distribution's parameters invalid."""
    if "got invalid" not in str(error):
        raise error
    raise ValueError(
        f"Running the model failed: {error} Give every distribution in the model finite "
        "parameters in their valid range."
    ) from error


def _check_observations(x) -> np.ndarray:
    """Checked observations in JAX's float precision (float64 with x64 on, float32 off), the
    precision the model's own sites take: parameters, data and helpers (``init_to_value``,
    NUTS warm starts) then share one dtype."""
    array = check_data(x, allow_1d=True)
    array = array.astype(working_dtype(np.float64), copy=False)
    return array[:, 0] if np.ndim(x) == 1 else array


def _initial_from_sites(conjugate: ConjugateMixture, values: dict, dtype) -> InitialValues:
    weights, means, covariances = conjugate.from_sites(
        {name: np.asarray(value) for name, value in values.items()}
    )
    factor = precisions_cholesky_from_covariances(
        jnp.asarray(covariances, dtype), conjugate.covariance_type
    )
    return InitialValues(weights, means, np.asarray(factor))


def _fit_conjugate(
    method: str,
    algorithm: "_MAPAlgorithm",
    rng_key,
    x,
    num_restarts: int,
    conjugate: ConjugateMixture,
    mixture: MixtureModel,
    *,
    initial: InitialValues | None = None,
    options: dict | None = None,
) -> MAPResult:
    """Run ``method``'s recipe on a conjugate model with its priors; map back to the sites."""
    xm = x if x.ndim == 2 else x[:, None]
    check_reg_covar_scale(xm, algorithm.reg_covar)
    fit = fit_mixture(
        to_device(xm),
        mixture.n_components,
        method=method,
        covariance_type=conjugate.covariance_type,
        rng_key=rng_key,
        num_restarts=num_restarts,
        init_params=algorithm.init_params,
        initial=initial,
        max_iter=algorithm.max_iter,
        tol=algorithm.tol,
        reg_covar=algorithm.reg_covar,
        prior=conjugate.prior,
        options=options,
        warn=True,
    )
    fit = fit.replace(options={"m_step": "closed_form", **algorithm._options(), **fit.options})
    params = conjugate.to_sites(fit.params.weights, fit.params.means, fit.covariances)
    return MAPResult.from_fit(mixture, params, fit)


class _ConjugateMethod(_MAPAlgorithm):
    """A method of :mod:`numpyro_gmm.pipeline` as a MAP algorithm for conjugate Gaussian
    models (the model's priors go into every stage that takes them)."""

    method = ""

    def __init__(self, model, **options) -> None:
        shared = ("max_iter", "tol", "reg_covar", "init_params")
        super().__init__(model, **{name: options.pop(name) for name in shared if name in options})
        method_options = options
        em_only = sorted({"initial_values", "m_step", "m_steps"} & set(method_options))
        if em_only:
            raise ValueError(
                f"method={self.method!r} takes no {', '.join(em_only)}: it starts from its own "
                "initializations (init_params). Use method='em' for these options."
            )
        self.method_options = method_options

    def run(self, rng_key, x, num_restarts: int, model_args=(), model_kwargs=None) -> MAPResult:
        """Fit ``num_restarts`` restarts and return the best as a :class:`MAPResult`."""
        x = _check_observations(x)
        mixture = _read_mixture(self.model, x, model_args, model_kwargs)
        conjugate = match_conjugate(mixture)
        if conjugate is None:
            raise UnsupportedModelError(
                f"method={self.method!r} runs on conjugate Gaussian mixtures (a "
                "MixtureSameFamily likelihood with Dirichlet weights, Normal means and "
                "Inverse-Wishart or Inverse-Gamma covariances, e.g. "
                f"numpyro_gmm.models.gaussian_mixture); this model is not one"
                f"{_why_not_closed_form(mixture)}. "
                "method='em' fits any mixture model by generalized EM."
            )
        self._check_conjugate(conjugate)
        return _fit_conjugate(
            self.method,
            self,
            rng_key,
            x,
            num_restarts,
            conjugate,
            mixture,
            options=self.method_options,
        )

    def _check_conjugate(self, conjugate: ConjugateMixture) -> None:
        """Refuse a conjugate model this method has no update for (none by default)."""


def _why_not_closed_form(mixture: MixtureModel) -> str:
    """What, besides the sites' distributions, keeps a model off the closed-form path."""
    if mixture.extra_sites:
        return (
            f": its log joint has terms besides the mixture and the priors (factor or other "
            f"observed sites {', '.join(map(repr, mixture.extra_sites))})"
        )
    if mixture.weighs_rows():
        return f": its likelihood site {mixture.mixture_site!r} is masked or scaled"
    return ""


class BigLearnEM(_ConjugateMethod):
    """BigLearn-EM (Cong & Li 2024) for a conjugate Gaussian NumPyro model.

    The joint, marginal and rotated-marginal matchings use the MAP M-step under the
    model's priors (marginal priors on the matched block), then the documented polish
    (see :mod:`numpyro_gmm.pipeline`). Options are those of
    :func:`numpyro_gmm.kernels.biglearn_em.build_kernel` plus ``polish_iter`` and
    ``standardize``.
    """

    method = "biglearn_em"

    def _check_conjugate(self, conjugate: ConjugateMixture) -> None:
        if conjugate.prior.mean_covariance is not None:
            raise UnsupportedModelError(
                f"method='biglearn_em' needs the means' prior to scale with each covariance "
                f"(Normal-Inverse-Wishart: mu_k ~ N(m0, Sigma_k / kappa), as "
                f"numpyro_gmm.models.gaussian_mixture writes it); the means "
                f"{conjugate.locs_site!r} have a prior independent of the covariances, whose "
                "M-step couples each mean with its whole covariance and has no closed form for "
                "the marginal matchings. Use method='em' or 'gradient_em' for this model."
            )


class GradientEM(_ConjugateMethod):
    """Over-parameterized gradient EM, prune-and-merge, then MAP-EM under the model's priors.

    Gradient EM explores with ``n = ceil(3 m ln m)`` components by maximum likelihood (the
    setting of its theory), prunes and merges back to ``m'`` components, and closed-form
    MAP-EM under the model's priors finishes from the merged parameters
    (:mod:`numpyro_gmm.pipeline`). The ``m'`` components found are merged or split to the
    model's ``K`` (a model has ``K`` components by definition); ``result.fit.extras`` reports
    ``n_components_found``. Options are
    those of the ``"gradient_em"`` method (:func:`numpyro_gmm.pipeline.method_options`).
    """

    method = "gradient_em"


class SplitMergeEM(_ConjugateMethod):
    """MAP-EM under the model's priors, then a greedy split-merge search from the best restart.

    Each round tries every mixture one move away (merge two overlapping components and split
    a poorly fitted one, or give birth to a component at a poorly explained row) by a few EM
    steps, finishes the best few and keeps a move only if it raises the log joint
    (:mod:`numpyro_gmm.split_merge`, :func:`numpyro_gmm.pipeline.split_merge_search`).
    ``result.fit.extras`` lists the ``moves`` kept. Options are those of the
    ``"split_merge_em"`` method (:func:`numpyro_gmm.pipeline.method_options`).
    """

    method = "split_merge_em"


class MAP:
    """Run a MAP algorithm (``EM``, ``BigLearnEM``, ``GradientEM``, ``SplitMergeEM``) with
    vectorized restarts.

    Example
    -------
    >>> result = MAP(EM(model), num_restarts=8).run(jax.random.key(0), x)
    """

    def __init__(self, algorithm, num_restarts: int = 8) -> None:
        if not isinstance(num_restarts, int) or num_restarts < 1:
            raise ValueError(f"num_restarts must be an integer >= 1, got {num_restarts!r}.")
        self.algorithm = algorithm
        self.num_restarts = num_restarts

    def run(self, rng_key, *args, **kwargs) -> MAPResult:
        """Fit the model called as ``model(*args, **kwargs)``, as ``MCMC.run`` takes them.

        The data are the mixture site's observed values, wherever the model takes them
        (first, after covariates, by keyword); the other array arguments may change between
        calls without recompiling, arguments that are not arrays (e.g. a number of
        components) are part of the model's structure.
        """
        algorithm, x, arrays, layout = _bind(self.algorithm, args, kwargs)
        result = algorithm.run(rng_key, x, self.num_restarts, arrays)
        result.arguments = layout
        return result


def _bind(algorithm: "_MAPAlgorithm", args: tuple, kwargs: dict):
    """The algorithm on the model called data first, the data, the other arrays and the
    layout of the user's call (:mod:`numpyro_gmm.numpyro_bridge.arguments`)."""
    candidates = [value for value in (*args, *kwargs.values()) if np.ndim(value) >= 1]
    if candidates:  # the data are usually first: their faults named before the model runs
        _check_observations(candidates[0])
    check_model_call(algorithm.model, args, kwargs)
    try:
        mixture = read_model(algorithm.model, *args, **kwargs)
    except ValueError as error:
        for value in candidates[1:]:  # a fault of the data passed elsewhere, named as such
            _check_observations(value)
        _raise_invalid_parameters(error)
    model, x, arrays, layout = bind_model(mixture, args, kwargs)
    dtype = working_dtype(np.float64)
    arrays = jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, arrays
    )
    bound = copy.copy(algorithm)
    bound.model = model
    return bound, x, arrays, layout


def bind_model(mixture: MixtureModel, args: tuple, kwargs: dict):
    """``(canonical_model, x, arrays, layout)`` of the model read as ``mixture`` from the
    call ``model(*args, **kwargs)`` (:func:`~numpyro_gmm.numpyro_bridge.arguments.bind_arguments`
    with the values its mixture site observes)."""
    trace = draw_trace(mixture.model, 0, *args, **kwargs)
    observed = trace[mixture.mixture_site]["value"]
    return bind_arguments(mixture.model, args, kwargs, observed)


_METHODS = {
    "em": EM,
    "biglearn_em": BigLearnEM,
    "gradient_em": GradientEM,
    "split_merge_em": SplitMergeEM,
}


def fit(
    model,
    *args,
    method: str = "em",
    num_restarts: int = 8,
    rng_key: int | jax.Array = 0,
    max_iter: int = 1000,
    tol: float = 1e-6,
    options: dict | None = None,
    **kwargs,
) -> MAPResult:
    """MAP of a NumPyro mixture model by ``method`` with ``num_restarts`` restarts.

    Parameters
    ----------
    model : callable
        A NumPyro mixture model (see :mod:`numpyro_gmm.numpyro_bridge`).
    *args, **kwargs
        The model's own arguments, as ``MCMC.run(rng_key, *args, **kwargs)`` takes them:
        ``fit(model, x)``, ``fit(model, covariates, y)``, ``fit(model, 3, data=y)``. The data
        are the values the mixture site observes. A keyword that is not a parameter of the
        model but an option of ``method`` (below) is taken as that option.
    method : {"em", "biglearn_em", "gradient_em", "split_merge_em"}
        ``"em"`` handles any supported mixture model; the others need a conjugate
        Gaussian mixture (see :class:`BigLearnEM`, :class:`GradientEM`,
        :class:`SplitMergeEM`).
    num_restarts : int
    rng_key : int or PRNGKey
    max_iter, tol : int, float
    options : dict, optional
        Method options (``"em"``: ``reg_covar``, ``init_params``, ``m_steps``,
        ``initial_values``, ``m_step``; the others: ``reg_covar``, ``init_params`` and the
        method's own options), also accepted as keywords.

    Returns
    -------
    MAPResult
    """
    if method not in _METHODS:
        raise ValueError(f"Unknown method {method!r}; use one of {tuple(_METHODS)}.")
    model_kwargs, keyword_options = _split_keywords(model, method, kwargs)
    options = {**keyword_options, **(options or {})}
    algorithm = _METHODS[method](model, max_iter=max_iter, tol=tol, **options)
    return MAP(algorithm, num_restarts).run(rng_key, *args, **model_kwargs)


def _option_names(method: str) -> set[str]:
    shared = {"reg_covar", "init_params"}
    if method == "em":
        return shared | {"m_steps", "initial_values", "m_step"}
    from numpyro_gmm.pipeline import method_options

    return shared | set(method_options(method))


def _split_keywords(model, method: str, kwargs: dict) -> tuple[dict, dict]:
    """The model's keyword arguments and the method's options among ``fit``'s keywords: a
    parameter of the model is the model's, else an option name is an option."""
    import inspect

    try:
        parameters = inspect.signature(model).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    options = _option_names(method)
    model_kwargs, method_kwargs = {}, {}
    for name, value in kwargs.items():
        if name in parameters and parameters[name].kind is not inspect.Parameter.VAR_KEYWORD:
            model_kwargs[name] = value
        elif name in options:
            method_kwargs[name] = value
        elif takes_any:
            model_kwargs[name] = value
        else:
            raise TypeError(
                f"fit() got the keyword {name!r}, which is neither a parameter of the model "
                f"nor an option of method={method!r} (options: {', '.join(sorted(options))})."
            )
    return model_kwargs, method_kwargs
