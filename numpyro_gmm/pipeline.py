"""The one host pipeline under every entry point: validate, run a method's recipe, warn.

A *method* is a recipe: a short chain of stages over one engine call
(:func:`numpyro_gmm.fitting.fit_gaussian_mixture`, or the out-of-core engine of
:mod:`numpyro_gmm.streaming` for streamed data). Each stage receives the :class:`Job` and the
rest of the chain, and may change the job on the way in (standardize the data, ask for more
components) and the :class:`~numpyro_gmm.fit_result.FitResult` on the way out (map it back,
prune and merge, polish). The table :data:`RECIPES` declares them once, so a method name
means the same thing from the scikit-learn facade, the command line, :func:`numpyro_gmm.fit`,
streaming and several devices:

========================  =====================================================================
method                    stages
========================  =====================================================================
``"em"``                  (MAP-)EM from the chosen initialization, restarts vmapped.
``"biglearn_em"``         (1-D diag/spherical as full) -> standardize -> BigLearn-EM
                          (:mod:`numpyro_gmm.kernels.biglearn_em`)
                          for exactly ``max_iter`` outer iterations (stochastic: no early stop)
                          -> polish: up to ``polish_iter`` (default 500) joint-EM steps that keep
                          the eigenvalue floor and drop the weight smoothing, stopping at
                          ``tol``, per restart, before the best restart is chosen. Standardizing
                          is our choice (its random rotations mix coordinates, so it is not
                          affine-equivariant; ``standardize=False`` turns it off; the result is
                          mapped back exactly).
``"split_merge_em"``      (MAP-)EM as ``"em"`` -> a greedy search over split, merge and birth
                          moves from the best restart (:func:`split_merge_search`): every
                          candidate one move away gets ``screen_iter`` EM steps, the best
                          ``n_finish`` run to convergence, and a move is kept only when it raises
                          the log joint by more than ``tol`` per row.
``"gradient_em"``         over-parameterize -> gradient EM with ``n = ceil(3 m ln m)``
                          components from random data points for ``max_iter`` steps -> prune
                          and merge back to ``m'`` components
                          (:mod:`numpyro_gmm.overparameterized`) -> polish with (MAP-)EM.
========================  =====================================================================

The path of a fit::

    facade / CLI / ngm.fit / streaming / mesh
        -> fit_mixture (validate; Job)
        -> RECIPES[method]: stage -> stage -> ... -> engine (one jitted program per call)
        -> FitResult (restart chosen once, failures flagged) -> warnings
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from numpyro_gmm import split_merge, timing
from numpyro_gmm.errors import FitFailedError, FitWarning
from numpyro_gmm.fit_result import FitResult, warn_about
from numpyro_gmm.fitting import InitialValues, as_rng_key, fit_gaussian_mixture, log_joint
from numpyro_gmm.kernels import biglearn_em, get_kernel
from numpyro_gmm.kernels import gradient_em as gradient_em_kernel
from numpyro_gmm.mixture.affine import (
    covariances_from_standard,
    from_standard,
    prior_to_standard,
    standardization,
    to_standard,
)
from numpyro_gmm.mixture.covariance import check_covariance_type, dispatch, is_matrix_type
from numpyro_gmm.mixture.params import GMMParams, precisions_cholesky_from_covariances
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.overparameterized import default_n_components, prune_and_merge, to_n_components
from numpyro_gmm.program_cache import release_compiled_programs_if_crowded
from numpyro_gmm.progress import Every, report

__all__ = ["DEFAULTS", "METHODS", "RECIPES", "Job", "fit_mixture", "method_options"]


@dataclass(frozen=True)
class Defaults:
    """Defaults shared by every entry point (the facade, the CLI and :func:`fit_mixture`)."""

    num_restarts: int = 1
    init_params: str = "kmeans"
    max_iter: int = 100
    tol: float = 1e-3
    reg_covar: float = 1e-6
    covariance_type: str = "full"


DEFAULTS = Defaults()


@dataclass(frozen=True)
class Job:
    """Everything a stage needs: the data and the settings common to every method.

    ``x`` is a device array (N, D), :class:`~numpyro_gmm.parallel.ShardedRows`, or a streaming
    source (:class:`numpyro_gmm.streaming.Stream`).
    """

    x: Any
    n_components: int
    covariance_type: str
    rng_key: jax.Array
    num_restarts: int
    init_params: str
    initial: InitialValues
    max_iter: int
    tol: float
    reg_covar: float
    prior: GaussianMixturePrior | None
    chunk_size: int | None
    progress_interval: int | Every | None
    mesh: Mesh | None
    # A warm start's previous per-sample objective: the first step's convergence test
    # compares with it (scikit-learn's warm_start). Only the kernel stage of "em" uses it.
    previous_objective: float | None = None
    # How the engine ranks restarts (fitting.fit_gaussian_mixture's restart_rule).
    restart_rule: str = "objective"

    @property
    def streamed(self) -> bool:
        return not hasattr(self.x, "shape") and not hasattr(self.x, "array")

    @property
    def n_samples(self) -> int:
        return int(self.x.n_samples if hasattr(self.x, "n_samples") else self.x.shape[0])

    def with_(self, **changes: Any) -> Job:
        return replace(self, **changes)


# A stage is stage(job, options, run_next) -> FitResult, where run_next(job, options) runs the
# rest of the chain; it takes its own options out of ``options`` and passes the rest on.
Stage = Callable[[Job, dict, Callable[[Job, dict], FitResult]], FitResult]


def _engine(job: Job, kernel: str, kernel_options: dict, **polish: Any) -> FitResult:
    """One engine call: the kernel over vectorized restarts (in memory or streamed)."""
    if job.streamed:
        from numpyro_gmm.streaming import run_streamed

        return run_streamed(job, kernel_options)
    _check_kernel_options(kernel, kernel_options)
    return fit_gaussian_mixture(
        job.x,
        job.n_components,
        covariance_type=job.covariance_type,
        rng_key=job.rng_key,
        num_restarts=job.num_restarts,
        init_params=job.init_params,
        initial=job.initial,
        max_iter=job.max_iter,
        tol=job.tol,
        reg_covar=job.reg_covar,
        prior=job.prior,
        chunk_size=job.chunk_size,
        progress_interval=job.progress_interval,
        kernel=kernel,
        kernel_options=kernel_options,
        mesh=job.mesh,
        previous_objective=job.previous_objective,
        restart_rule=job.restart_rule,
        **polish,
    )


def _check_kernel_options(kernel: str, options: Mapping[str, Any]) -> None:
    accepted = _keyword_options(get_kernel(kernel).build_kernel)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for kernel {kernel!r}; it accepts "
            f"{sorted(accepted) or 'none'}."
        )


def _check_plain(options: Mapping[str, Any]) -> None:
    for name, value in options.items():
        # Options are static configuration of the compiled program: JAX needs them hashable.
        try:
            hash(value)
        except TypeError:
            raise TypeError(
                f"Method option {name}={value!r} must be a number, a bool or a string."
            ) from None


def _check_polish_iter(options: Mapping[str, Any]) -> None:
    # Checked here: a negative count would otherwise surface as a shape error when compiling.
    value = options.get("polish_iter")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0
    ):
        raise ValueError(f"polish_iter must be an integer >= 0, got {value!r}.")


def _keyword_options(function: Callable) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


# --------------------------------------------------------------------------- stages


def run_kernel(kernel: str) -> Stage:
    """The terminal stage: the engine with ``kernel`` and the remaining options."""

    def stage(job: Job, options: dict, run_next) -> FitResult:
        del run_next
        return _engine(job, kernel, options)

    return stage


# An upper bound: the polish stops at ``tol``. 50 steps left fits at the default tol of
# ngm.fit (1e-6) unconverged; about 90 reach it on Old Faithful.
_BIGLEARN_POLISH_ITER = 500
_BIGLEARN_KEEP_CONDITIONALS = True
_BIGLEARN_DEFAULT_FLOOR = _keyword_options(biglearn_em.build_kernel)["eigenvalue_floor"]


def run_biglearn(job: Job, options: dict, run_next) -> FitResult:
    """BigLearn-EM for all ``max_iter`` outer iterations, then the floored joint-EM polish."""
    del run_next
    biglearn_em.check_prior(job.prior)  # here, not while tracing: a plain traceback
    # The reference leaves a component's cross blocks as they are when a marginal matching
    # shrinks its block, which can make the component indefinite (then floored to near
    # singular): components died and every restart failed on real data under a proper
    # prior. Keeping each component's conditional given the block cannot.
    options = {"keep_conditionals": _BIGLEARN_KEEP_CONDITIONALS, **options}
    polish_iter = options.pop("polish_iter", _BIGLEARN_POLISH_ITER)
    polish_options = biglearn_em.floored_em_options(
        options.get("eigenvalue_floor", _BIGLEARN_DEFAULT_FLOOR),
        track_objective=options.get("track_objective", True),
    )
    # The matchings are stochastic: run all max_iter outer iterations, and let only the
    # polish stop on convergence.
    result = _engine(
        job.with_(tol=0.0),
        "biglearn_em",
        options,
        polish_iter=polish_iter,
        polish_kernel="biglearn_em",
        polish_options=polish_options,
        polish_tol=job.tol,
    )
    return result.replace(extras={**result.extras, "polish_iter": polish_iter})


def _n_features(x: Any) -> int:
    array = x.array if hasattr(x, "array") else x
    return int(array.shape[1])


def full_in_one_dimension(job: Job, options: dict, run_next) -> FitResult:
    """Run a one-dimensional diag or spherical fit as a full one and map the result back.

    BigLearn-EM's transformed matchings rotate covariances (``A Sigma A^T``), which keeps only
    full covariances. In one dimension a rotation is a sign, and diag and spherical variances
    are 1 x 1 covariances; the Inverse-Gamma prior ``IG(a, b)`` of a variance is the
    Inverse-Wishart ``IW(2a, 2b)`` of the same 1 x 1 matrix, density for density, so the fit,
    its objective and its prior are unchanged. Other non-full fits are refused.
    """
    covariance_type = job.covariance_type
    if covariance_type == "full":
        return run_next(job, options)
    n_features = _n_features(job.x)
    if covariance_type == "tied" or n_features > 1:
        raise ValueError(
            f"method='biglearn_em' fits covariance_type='full', and 'diag' or 'spherical' only "
            f"with one feature; got {covariance_type!r} with {n_features} "
            f"feature{'s' if n_features != 1 else ''}. Its "
            "matchings rotate the covariances (A Sigma A^T), which does not keep diagonal or "
            "spherical structure, and tied covariances would need a pooled update shared by "
            "all components. Use covariance_type='full', or method='em' or 'gradient_em' for "
            f"{covariance_type!r}."
        )
    initial = job.initial
    if initial.precisions_cholesky is not None:
        factor = jnp.reshape(jnp.asarray(initial.precisions_cholesky), (-1, 1, 1))
        initial = initial._replace(precisions_cholesky=factor)
    prior = job.prior
    if prior is not None and prior.variance_concentration is not None:
        prior = prior._replace(
            covariance_df=2.0 * jnp.asarray(prior.variance_concentration),
            covariance_scale=jnp.reshape(2.0 * jnp.asarray(prior.variance_rate), (1, 1)),
            variance_concentration=None,
            variance_rate=None,
        )
    result = run_next(job.with_(covariance_type="full", initial=initial, prior=prior), options)
    shape = (-1, 1) if covariance_type == "diag" else (-1,)
    params = result.params._replace(
        precisions_cholesky=np.reshape(np.asarray(result.params.precisions_cholesky), shape)
    )
    covariances = None if result.covariances is None else np.reshape(result.covariances, shape)
    return result.replace(params=params, covariances=covariances, covariance_type=covariance_type)


def standardize(job: Job, options: dict, run_next) -> FitResult:
    """Run the rest on ``z = (x - shift) / scale`` and map its result back to ``x``.

    The log joint of every restart and iteration changes by one constant (the Jacobian of
    the map), which is added back, so objectives and traces are those of ``x``.
    """
    options = dict(options)
    if not options.pop("standardize", True):
        return run_next(job, options)
    covariance_type = job.covariance_type
    x = job.x
    host = np.asarray(x.array[: x.n_samples] if hasattr(x, "array") else x)
    shift, scale = standardization(host, covariance_type)
    z = (host - shift.astype(host.dtype)) / scale.astype(host.dtype)
    initial = job.initial
    if initial.complete:
        initial = InitialValues(*to_standard(GMMParams(*initial), shift, scale, covariance_type))
    elif not initial.empty:
        raise ValueError(
            "With standardize=True give all of weights, means and precisions as initial "
            "values, or none of them."
        )
    prior = prior_to_standard(job.prior, shift, scale, covariance_type)
    inner = job.with_(x=jnp.asarray(z), initial=initial, prior=prior, previous_objective=None)
    result = run_next(inner, options)
    params = from_standard(result.params, shift, scale, covariance_type)
    objective = log_joint(
        host if job.mesh is None else host, params, covariance_type, job.prior, mesh=job.mesh
    )
    offset = objective - result.objective
    per_sample = offset / host.shape[0]
    return result.replace(
        params=GMMParams(*(np.asarray(leaf) for leaf in params)),
        covariances=covariances_from_standard(result.covariances, scale, covariance_type),
        objective=objective,
        restarts=result.restarts._replace(objective=result.restarts.objective + offset),
        trace=result.trace + per_sample,
        polish_trace=None if result.polish_trace is None else result.polish_trace + per_sample,
        extras={**result.extras, "standardization": (shift, scale)},
    )


_GRADIENT_DEFAULTS = {
    "n_components_fit": None,
    "learn_covariance": True,
    "polish_iter": 100,
    "initial_variance": None,
    "weight_threshold": None,
    "merge_radius": None,
    "linkage": "nearest_heavier",
}


def over_parameterize(job: Job, options: dict, run_next) -> FitResult:
    """Explore with ``n = ceil(3 m ln m)`` components, prune and merge, then polish.

    The exploration is maximum likelihood (the setting of the theory) from ``n`` random data
    points, or, when every restart of that fails and the model has priors, MAP under its
    priors of the means and covariances; surplus components are expected to empty out, and
    the phase runs all ``max_iter`` steps (surplus components keep moving after the objective
    settles). The ``m'`` components found are merged or split to the model's ``m``
    (:func:`~numpyro_gmm.overparameterized.to_n_components`; ``extras`` keeps ``m'`` and what
    was done) and polished by (MAP-)EM under ``job.prior`` (fixed covariances when
    ``learn_covariance=False``: EM for weights and means, the theory's model).
    """
    settings = {**_GRADIENT_DEFAULTS}
    settings.update({name: options.pop(name) for name in list(options) if name in settings})
    learn_covariance = bool(settings["learn_covariance"])
    m = job.n_components
    host = _host_rows(job.x)
    n_features = host.shape[1]
    variance = settings["initial_variance"]
    if variance is None:
        variance = float(np.mean(np.var(host, axis=0))) if learn_covariance else 1.0
    if not variance > 0:
        raise ValueError(f"initial_variance must be positive, got {variance}.")
    extras: dict[str, Any] = {}
    if job.initial.complete:  # warm start: the previous components are the merged ones
        merged = GMMParams(*(np.asarray(v) for v in job.initial))
    else:
        if not job.initial.empty:
            raise ValueError(
                "method='gradient_em' starts from n = ceil(3 m ln m) random data points; give "
                "all of weights, means and precisions (a warm start) or none of them."
            )
        n = (
            default_n_components(m)
            if settings["n_components_fit"] is None
            else int(settings["n_components_fit"])
        )
        if n < m:
            raise ValueError(f"n_components_fit ({n}) must be at least n_components ({m}).")
        if job.n_samples < n:
            raise ValueError(
                f"method='gradient_em' explores with n_components_fit={n} components but the "
                f"data have {job.n_samples} rows; pass a smaller n_components_fit option."
            )
        fixed = _fixed_precisions(job.covariance_type, n, n_features, variance, host.dtype)
        explore = job.with_(
            previous_objective=None,
            n_components=n,
            init_params="random_from_data",
            initial=InitialValues(precisions_cholesky=fixed),
            prior=None,
            tol=0.0,
        )
        explore_options = {**options, "learn_covariance": learn_covariance}
        try:
            gradient_fit = run_next(explore, explore_options)
        except FitFailedError:
            if job.prior is None:
                raise
            # With n > m components in many dimensions maximum likelihood can make every
            # covariance singular (30-D data, m = 2): explore again under the model's priors
            # of the means and covariances (not of its m weights).
            prior = job.prior._replace(weight_concentration=None)
            gradient_fit = run_next(explore.with_(prior=prior), explore_options)
        weights, means, covariances, report = prune_and_merge(
            gradient_fit.params.weights,
            gradient_fit.params.means,
            gradient_fit.covariances,
            job.covariance_type,
            weight_threshold=settings["weight_threshold"],
            merge_radius=settings["merge_radius"],
            n_samples=job.n_samples,
            linkage=settings["linkage"],
        )
        found = report.n_components_found
        # The model has m components: merge or split the m' found down or up to m.
        weights, means, covariances, adjustments = to_n_components(
            weights, means, covariances, job.covariance_type, m
        )
        if learn_covariance:
            precisions = np.asarray(
                precisions_cholesky_from_covariances(
                    jnp.asarray(covariances, host.dtype), job.covariance_type
                )
            )
        else:
            precisions = _fixed_precisions(job.covariance_type, m, n_features, variance, host.dtype)
        merged = GMMParams(weights.astype(host.dtype), means.astype(host.dtype), precisions)
        extras = {
            "n_components_fit": n,
            "n_components_found": found,
            "merge_report": report,
            "adjustments": adjustments,
            "merged_params": merged,
            "exploration": gradient_fit,
        }
    if learn_covariance:
        kernel, kernel_options = "em", {}
    else:
        kernel, kernel_options = "gradient_em", {"mean_update": "em", "step_size": 1.0}
    polish = job.with_(
        num_restarts=1,
        initial=InitialValues(*merged),
        max_iter=int(settings["polish_iter"]),
    )
    result = _engine(polish, kernel, kernel_options)
    exploration = extras.get("exploration")
    if exploration is not None:
        result = _polished_best(exploration, result)
    return result.replace(extras={**extras, "learn_covariance": learn_covariance})


def _host_rows(x: Any) -> np.ndarray:
    """The data as a host array (from a device array or row-sharded rows)."""
    return np.asarray(x.array[: x.n_samples] if hasattr(x, "array") else x)


_SPLIT_MERGE_DEFAULTS = {
    "max_rounds": 20,
    "n_merges": 10,
    "n_deletes": 0,
    "n_splits": 4,
    "n_births": 5,
    "screen_iter": 20,
    "n_finish": 3,
}


def _birth_covariance(prior: GaussianMixturePrior | None, n_features: int) -> np.ndarray | None:
    """The MAP covariance of a component holding one row at its mean under the covariance
    prior (``Psi0 / (1 + nu0 + D + 2)``, or ``2 b / (1 + 2 a + 2)`` per variance), or
    ``None`` without one (maximum likelihood: a one-row component is a singularity)."""
    if prior is None:
        return None
    if prior.covariance_scale is not None:
        df = float(np.asarray(prior.covariance_df))
        return np.asarray(prior.covariance_scale, float) / (1.0 + df + n_features + 2.0)
    if prior.variance_rate is not None:
        # Inverse-Gamma(a, b) per variance: the mode with one row is 2 b / (1 + 2 a + 2).
        a = float(np.asarray(prior.variance_concentration))
        rate = np.broadcast_to(np.asarray(prior.variance_rate, float), (n_features,))
        return np.diag(2.0 * rate / (1.0 + 2.0 * a + 2.0))
    return None


def _check_split_merge_settings(settings: Mapping[str, Any]) -> None:
    minimum = {name: 0 for name in _SPLIT_MERGE_DEFAULTS} | {"n_finish": 1}
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"split_merge_em option {name} must be an integer, got {value!r}.")
        if value < minimum[name]:
            raise ValueError(
                f"split_merge_em option {name} must be >= {minimum[name]}, got {value!r} "
                f"(default {_SPLIT_MERGE_DEFAULTS[name]})."
            )


def _smallest_variance(covariances: np.ndarray, covariance_type: str) -> float:
    """The smallest eigenvalue of any component's covariance."""
    if is_matrix_type(covariance_type):
        return float(np.min(np.linalg.eigvalsh(np.asarray(covariances, float))))
    return float(np.min(covariances))


def split_merge_search(job: Job, options: dict, run_next) -> FitResult:
    """EM, then a greedy search over merge, delete, split and birth moves
    (:mod:`~numpyro_gmm.split_merge`).

    Each round builds every candidate one move away from the current mixture, runs
    ``screen_iter`` EM steps from each, runs the ``n_finish`` best of those to convergence,
    and moves to the best result if it raises the per-row log joint by more than ``tol``;
    the search stops when no candidate does, or after ``max_rounds`` rounds. Options (method
    options of ``"split_merge_em"``, defaults in ``_SPLIT_MERGE_DEFAULTS``): ``max_rounds``,
    ``n_merges``, ``n_deletes``, ``n_splits``, ``n_births``, ``screen_iter``, ``n_finish``.
    Deletions are off by default: on held-out seeds they helped on some sets (Pottery, wine)
    and hurt on others (glass), at a quarter to a third more time.

    Under maximum likelihood the likelihood grows without bound as a component collapses, so
    a candidate is refused when its fit leaves a component fewer than ``D + 1`` rows or a
    covariance eigenvalue below ten times ``reg_covar`` or below a tenth of the smallest one
    of the EM fit the search started from.

    The returned fit is the search's last; for its restart, ``restarts.objective`` is that
    fit's log joint, ``n_iter`` counts the EM steps of the start and of every kept move, and
    ``polish_trace`` is the trace of the last kept move's run. ``extras`` has ``moves`` (the
    moves kept, in order), ``search_rounds``, ``candidates_tried`` and
    ``objective_before_search``.
    """
    settings = {**_SPLIT_MERGE_DEFAULTS}
    settings.update({name: options.pop(name) for name in list(options) if name in settings})
    _check_split_merge_settings(settings)
    start = run_next(job, options)
    host = _host_rows(job.x)
    n_samples, n_features = host.shape
    covariance_type = job.covariance_type
    birth_covariance = _birth_covariance(job.prior, n_features)
    variance_floor = max(
        10.0 * job.reg_covar, 0.1 * _smallest_variance(start.covariances, covariance_type)
    )
    current, moves, rounds, tried = start, [], 0, 0
    n_iter = start.n_iter

    def acceptable(result: FitResult | None) -> bool:
        if result is None or not np.isfinite(result.objective):
            return False
        if birth_covariance is not None:
            return True
        return (
            result.counts.min() >= n_features + 1
            and _smallest_variance(result.covariances, covariance_type) >= variance_floor
        )

    def run_from(initial: InitialValues, max_iter: int) -> FitResult | None:
        """EM from one candidate; ``None`` when a covariance collapses on the way."""
        candidate_job = job.with_(
            num_restarts=1,
            initial=initial,
            max_iter=max_iter,
            previous_objective=None,
            progress_interval=None,
        )
        try:
            return _engine(candidate_job, "em", {})
        except FitFailedError:
            return None

    while job.n_components > 1 and rounds < settings["max_rounds"]:
        rounds += 1
        candidates = split_merge.candidate_moves(
            host,
            current.params,
            current.covariances,
            covariance_type,
            n_merges=settings["n_merges"],
            n_deletes=settings["n_deletes"],
            n_splits=settings["n_splits"],
            n_births=settings["n_births"],
            birth_covariance=birth_covariance,
        )
        screened = []
        for candidate in candidates:
            initial = InitialValues(
                candidate.weights.astype(host.dtype),
                candidate.means.astype(host.dtype),
                split_merge.precisions_of(candidate, covariance_type, host.dtype),
            )
            result = run_from(initial, settings["screen_iter"])
            if acceptable(result):
                screened.append((result.objective, candidate.move, result))
        tried += len(candidates)
        screened.sort(key=lambda item: -item[0])
        best, best_move, best_steps = None, None, 0
        for _, move, result in screened[: settings["n_finish"]]:
            finished = run_from(InitialValues(*result.params), job.max_iter)
            if acceptable(finished) and (best is None or finished.objective > best.objective):
                best, best_move, best_steps = finished, move, result.n_iter + finished.n_iter
        gain = -np.inf if best is None else (best.objective - current.objective) / n_samples
        if job.progress_interval:
            improved = gain > job.tol
            kept = f"kept {best_move!r}" if improved else "no move raises the objective"
            reached = best.objective if improved else current.objective
            report(
                f"split-merge round {rounds}: {len(candidates)} candidates, {kept}, "
                f"objective {reached / n_samples:.6g} per row"
            )
        if gain <= job.tol:
            break
        current, n_iter = best, n_iter + best_steps
        moves.append(best_move)
    chosen = start.best_restart
    restarts = start.restarts
    objective, converged, steps = (
        restarts.objective.copy(),
        restarts.converged.copy(),
        restarts.n_iter.copy(),
    )
    objective[chosen], converged[chosen], steps[chosen] = (
        current.objective,
        current.converged,
        n_iter,
    )
    polish_trace = None
    if moves:
        polish_trace = np.full((objective.size, current.trace.shape[1]), np.nan)
        polish_trace[chosen] = current.trace[0]
    return current.replace(
        restarts=restarts._replace(objective=objective, converged=converged, n_iter=steps),
        best_restart=chosen,
        trace=start.trace,
        polish_trace=polish_trace,
        extras={
            **start.extras,
            "search_rounds": rounds,
            "moves": moves,
            "candidates_tried": tried,
            "objective_before_search": float(start.objective),
        },
    )


def _polished_best(exploration: FitResult, polished: FitResult) -> FitResult:
    """The exploration's restarts, the chosen one carrying its polish.

    ``restarts.objective`` stays the exploration's (``n`` components, maximum likelihood):
    that is what chose the restart; ``objective`` is the polished fit's.
    """
    best = exploration.best_restart
    restarts = exploration.restarts
    converged = restarts.converged.copy()
    n_iter = restarts.n_iter.copy()
    converged[best] = polished.converged
    n_iter[best] += polished.n_iter
    polish_trace = np.full((converged.size, polished.trace.shape[1]), np.nan)
    polish_trace[best] = polished.trace[0]
    return polished.replace(
        restarts=restarts._replace(converged=converged, n_iter=n_iter),
        best_restart=best,
        trace=exploration.trace,
        polish_trace=polish_trace,
    )


def _fixed_precisions(covariance_type: str, n: int, d: int, variance: float, dtype) -> np.ndarray:
    """Precision factors of ``variance * I`` for ``n`` components, shaped per type."""
    covariances = dispatch(
        covariance_type,
        {
            "full": lambda: np.broadcast_to(np.eye(d) * variance, (n, d, d)),
            "tied": lambda: np.eye(d) * variance,
            "diag": lambda: np.full((n, d), variance),
            "spherical": lambda: np.full(n, variance),
        },
    )()
    return np.asarray(
        precisions_cholesky_from_covariances(jnp.asarray(covariances, dtype), covariance_type)
    )


# --------------------------------------------------------------------------- the table

RECIPES: dict[str, tuple[Stage, ...]] = {
    "em": (run_kernel("em"),),
    "biglearn_em": (full_in_one_dimension, standardize, run_biglearn),
    "gradient_em": (over_parameterize, run_kernel("gradient_em")),
    "split_merge_em": (split_merge_search, run_kernel("em")),
}
METHODS: tuple[str, ...] = tuple(RECIPES)


def method_options(method: str) -> dict[str, Any]:
    """The options ``method`` accepts, with their defaults (for documentation and checks)."""
    if method == "em":
        return {}
    if method == "biglearn_em":
        return {
            "standardize": True,
            "polish_iter": _BIGLEARN_POLISH_ITER,
            **_keyword_options(biglearn_em.build_kernel),
            "keep_conditionals": _BIGLEARN_KEEP_CONDITIONALS,
        }
    if method == "gradient_em":
        kernel = _keyword_options(gradient_em_kernel.build_kernel)
        kernel.pop("mean_update", None)
        kernel.pop("learn_covariance", None)
        return {**_GRADIENT_DEFAULTS, **kernel}
    if method == "split_merge_em":
        return dict(_SPLIT_MERGE_DEFAULTS)
    raise ValueError(f"Unknown method {method!r}; use one of {METHODS}.")


def _run_chain(stages: tuple[Stage, ...], job: Job, options: dict) -> FitResult:
    first, rest = stages[0], stages[1:]

    def run_next(next_job: Job, next_options: dict) -> FitResult:
        return _run_chain(rest, next_job, next_options)

    return first(job, dict(options), run_next)


def fit_mixture(
    x: Any,
    n_components: int,
    *,
    method: str = "em",
    covariance_type: str = DEFAULTS.covariance_type,
    rng_key: Any = 0,
    num_restarts: int = DEFAULTS.num_restarts,
    init_params: str = DEFAULTS.init_params,
    initial: InitialValues | None = None,
    max_iter: int = DEFAULTS.max_iter,
    tol: float = DEFAULTS.tol,
    reg_covar: float = DEFAULTS.reg_covar,
    prior: GaussianMixturePrior | None = None,
    options: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    progress_interval: int | Every | None = None,
    mesh: Mesh | None = None,
    warn: bool = True,
    previous_objective: float | None = None,
    restart_rule: str = "objective",
) -> FitResult:
    """Fit a Gaussian mixture to ``x`` by ``method``: the pipeline every entry point calls.

    Parameters
    ----------
    x : Array (N, D), ShardedRows or streaming.Stream
        Validated data on the device (:mod:`numpyro_gmm.validation`), already row-sharded, or
        a stream of row blocks (``method="em"`` only).
    n_components : int
    method : {"em", "biglearn_em", "gradient_em", "split_merge_em"}
        A recipe of :data:`RECIPES` (module docstring).
    covariance_type : {"full", "tied", "diag", "spherical"}
    rng_key : int or PRNGKey
    num_restarts : int
        Restarts, run as one vectorized program.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
    initial : InitialValues, optional
        Initial values (for every restart); complete values are a warm start.
    max_iter, tol, reg_covar : int, float, float
    prior : GaussianMixturePrior, optional
        Conjugate priors (MAP); ``None`` is maximum likelihood.
    options : dict, optional
        The method's own options (:func:`method_options`).
    chunk_size : int, optional
        Rows per E-step chunk.
    progress_interval : int or Every, optional
        Report progress every that many iterations, or as the
        :class:`~numpyro_gmm.progress.Every` says (``Every(seconds=1.0)``: a line about
        every second, and a last line when the loop ends).
    mesh : Mesh, optional
        Run data-parallel over the devices of this one-axis mesh.
    warn : bool
        Give the fit's warnings (failed restarts, no convergence, empty components).
    previous_objective : float, optional
        With complete ``initial`` values (a warm start): the per-sample objective the previous
        fit reached; the first iteration's change is measured from it, so a fit resumed one
        iteration at a time detects convergence as one long fit does.
    restart_rule : {"objective", "lower_bound"}
        Rank restarts by the log joint of their returned parameters (default) or, as
        scikit-learn does, by the objective entering their last iteration.

    Returns
    -------
    FitResult
    """
    if method not in RECIPES:
        raise ValueError(f"Unknown method {method!r}; use one of {METHODS}.")
    if restart_rule not in ("objective", "lower_bound"):
        raise ValueError(
            f"restart_rule must be 'objective' or 'lower_bound', got {restart_rule!r}."
        )
    release_compiled_programs_if_crowded()
    job = Job(
        x=x,
        n_components=int(n_components),
        covariance_type=check_covariance_type(covariance_type),
        rng_key=as_rng_key(rng_key),
        num_restarts=int(num_restarts),
        init_params=init_params,
        initial=InitialValues() if initial is None else initial,
        max_iter=int(max_iter),
        tol=float(tol),
        reg_covar=float(reg_covar),
        prior=prior,
        chunk_size=chunk_size,
        progress_interval=progress_interval,
        mesh=mesh,
        previous_objective=None if previous_objective is None else float(previous_objective),
        restart_rule=restart_rule,
    )
    if job.streamed and method != "em":
        raise ValueError(
            f"Streamed data are fitted by method='em' (exact or stepwise out-of-core EM); "
            f"method={method!r} needs the data in memory."
        )
    options = dict(options or {})
    _check_plain(options)
    _check_polish_iter(options)
    known = method_options(method) if not job.streamed else None
    if known is not None:
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"Unknown option(s) {unknown} for method={method!r}; it accepts "
                f"{sorted(known) or 'none'}."
            )
    with warnings.catch_warnings(), timing.measure() as times:
        # Stages report once, at the end, on the fit they return.
        warnings.simplefilter("ignore", FitWarning)
        result = _run_chain(RECIPES[method], job, options)
    if progress_interval:
        report(f"Fit done in {times.summary()}")
    result = result.replace(method=method, options={**known, **options} if known else options)
    if warn:
        warn_about(result, max_iter=job.max_iter, stacklevel=3)
    return result
