"""Training methods over arrays, one runner each, shared by the facade, the CLI and
:func:`numpyro_gmm.fit`.

========================  =====================================================================
method                    what runs
========================  =====================================================================
``"em"``                  (MAP-)EM from the chosen initialization, restarts vmapped.
``"biglearn_em"``         BigLearn-EM (:mod:`numpyro_gmm.kernels.biglearn_em`), run on
                          standardized features (choice: its random rotations mix
                          coordinates, so it is not affine-equivariant; ``standardize=False``
                          turns this off; results are mapped back exactly), for exactly
                          ``max_iter`` outer iterations (stochastic: no early stop), then the
                          documented polish: up to ``polish_iter`` (default 50) joint-EM steps
                          that keep the eigenvalue floor and drop the weight smoothing, stopping
                          at ``tol``, per restart, before the best restart is chosen.
``"gradient_em"``         Over-parameterized gradient EM with ``n = ceil(3 m ln m)`` components,
                          prune-and-merge back to ``m'`` components, then an EM polish
                          (:mod:`numpyro_gmm.overparameterized`).
========================  =====================================================================
"""

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from numpyro_gmm.fitting import FitResult, InitialValues, fit_gaussian_mixture, log_joint
from numpyro_gmm.kernels import biglearn_em
from numpyro_gmm.mixture.affine import (
    covariances_from_standard,
    from_standard,
    prior_to_standard,
    standardization,
    to_standard,
)
from numpyro_gmm.mixture.params import GMMParams
from numpyro_gmm.mixture.priors import GaussianMixturePrior

__all__ = ["METHODS", "MethodOutcome", "run_method"]

METHODS: tuple[str, ...] = ("em", "biglearn_em", "gradient_em")

_BIGLEARN_POLISH_ITER = 50
# The kernel's own default, so the polish floor follows it.
_BIGLEARN_DEFAULT_FLOOR = (
    inspect.signature(biglearn_em.build_kernel).parameters["eigenvalue_floor"].default
)


class MethodOutcome(NamedTuple):
    """What a method returns to its callers.

    Attributes
    ----------
    fit : FitResult
        Parameters, objective, restarts and traces (for gradient EM, of the final
        ``m'``-component model).
    extras : dict
        Method-specific results (gradient EM: ``n_components_found``, ``merge_report``,
        ``n_components_fit``).
    """

    fit: FitResult
    extras: dict[str, Any]


def _em(x, n_components, common, options) -> MethodOutcome:
    if options:
        raise ValueError(f"method='em' takes no method options; got {sorted(options)}.")
    return MethodOutcome(fit_gaussian_mixture(x, n_components, **common), {})


def _standardized(runner):
    """Run ``runner`` on ``z = (x - shift) / scale`` and map its result back to ``x``.

    The log joint of every restart and iteration changes by one constant (the Jacobian of
    the map), which is added back, so objectives and traces are those of ``x``.
    """

    def run(x, n_components, common, options) -> MethodOutcome:
        options = dict(options)
        if not options.pop("standardize", True):
            return runner(x, n_components, common, options)
        covariance_type = common["covariance_type"]
        shift, scale = standardization(np.asarray(x), covariance_type)
        z = (x - jnp.asarray(shift, x.dtype)) / jnp.asarray(scale, x.dtype)
        initial = common["initial"]
        if initial is not None and all(value is not None for value in initial):
            initial = InitialValues(
                *to_standard(GMMParams(*initial), shift, scale, covariance_type)
            )
        elif initial is not None and any(value is not None for value in initial):
            raise ValueError(
                "With standardize=True give all of weights, means and precisions as initial "
                "values, or none of them."
            )
        prior = prior_to_standard(common["prior"], shift, scale, covariance_type)
        outcome = runner(z, n_components, {**common, "initial": initial, "prior": prior}, options)
        fit = outcome.fit
        params = from_standard(fit.params, shift, scale, covariance_type)
        objective = log_joint(x, params, covariance_type, common["prior"], mesh=common["mesh"])
        offset = objective - fit.objective
        fit = fit._replace(
            params=GMMParams(*(np.asarray(leaf) for leaf in params)),
            covariances=covariances_from_standard(fit.covariances, scale, covariance_type),
            objective=objective,
            restart_objective=fit.restart_objective + offset,
            trace=fit.trace + offset / x.shape[0],
            polish_trace=None
            if fit.polish_trace is None
            else fit.polish_trace + offset / x.shape[0],
        )
        return MethodOutcome(fit, {**outcome.extras, "standardization": (shift, scale)})

    return run


@_standardized
def _biglearn_em(x, n_components, common, options) -> MethodOutcome:
    options = dict(options)
    polish_iter = options.pop("polish_iter", _BIGLEARN_POLISH_ITER)
    # The documented polish: joint EM that keeps the eigenvalue floor, without smoothing.
    polish_options = biglearn_em.floored_em_options(
        options.get("eigenvalue_floor", _BIGLEARN_DEFAULT_FLOOR),
        track_objective=options.get("track_objective", True),
    )
    # The matchings are stochastic: run all max_iter outer iterations, and let only the
    # polish stop on convergence.
    common = {**common, "tol": 0.0, "polish_tol": common["tol"]}
    fit = fit_gaussian_mixture(
        x,
        n_components,
        **common,
        method="biglearn_em",
        method_options=options,
        polish_iter=polish_iter,
        polish_method="biglearn_em",
        polish_options=polish_options,
    )
    return MethodOutcome(fit, {"polish_iter": polish_iter})


def _gradient_em(x, n_components, common, options) -> MethodOutcome:
    from numpyro_gmm.overparameterized import fit_gradient_em

    if common["prior"] is not None:
        raise ValueError(
            "method='gradient_em' fits maximum likelihood (the theory's setting); it takes no "
            "prior. Use method='em' or 'biglearn_em' for MAP fits."
        )
    if any(value is not None for value in common["initial"] or ()):
        raise ValueError(
            "method='gradient_em' starts from n = ceil(3 m ln m) random data points; it takes "
            "no weights_init / means_init / precisions_init."
        )
    # Unit covariances (the theory's setting) make the fit depend on the data's units: learn
    # them unless asked not to, as ngm.fit does.
    options = {"learn_covariance": True, **options}
    result = fit_gradient_em(
        x,
        n_components,
        covariance_type=common["covariance_type"],
        rng_key=common["rng_key"],
        n_restarts=common["n_restarts"],
        max_iter=common["max_iter"],
        # Surplus components keep moving long after the objective settles: the gradient
        # phase runs all max_iter steps and only the polish stops at tol.
        tol=0.0,
        polish_tol=common["tol"],
        reg_covar=common["reg_covar"],
        mesh=common["mesh"],
        **options,
    )
    base = result.polish_fit if result.polish_fit is not None else result.gradient_fit
    fit = base._replace(
        params=result.params, covariances=result.covariances, objective=result.objective
    )
    extras = {
        "n_components_found": result.n_components_found,
        "n_components_fit": result.n_components_fit,
        "merge_report": result.merge_report,
    }
    return MethodOutcome(fit, extras)


_RUNNERS = {"em": _em, "biglearn_em": _biglearn_em, "gradient_em": _gradient_em}


def run_method(
    method: str,
    x: jax.Array,
    n_components: int,
    *,
    covariance_type: str = "full",
    rng_key: jax.Array | int = 0,
    n_restarts: int = 1,
    init_method: str = "k-means++",
    initial: InitialValues | None = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    prior: GaussianMixturePrior | None = None,
    progress_interval: int | None = None,
    options: dict[str, Any] | None = None,
    mesh: Mesh | None = None,
) -> MethodOutcome:
    """Fit ``x`` with ``method`` (one of :data:`METHODS`) and its ``options``.

    The common arguments mean what they mean for
    :func:`~numpyro_gmm.fitting.fit_gaussian_mixture`; ``options`` are the method's own
    (BigLearn-EM: the kernel's options plus ``polish_iter``; gradient EM: those of
    :func:`~numpyro_gmm.overparameterized.fit_gradient_em`). ``mesh`` runs every method
    data-parallel over its devices (:func:`numpyro_gmm.parallel.data_mesh`).
    """
    if method not in _RUNNERS:
        raise ValueError(f"Unknown method {method!r}; use one of {METHODS}.")
    common = {
        "covariance_type": covariance_type,
        "rng_key": rng_key,
        "n_restarts": n_restarts,
        "init_method": init_method,
        "initial": initial,
        "max_iter": max_iter,
        "tol": tol,
        "reg_covar": reg_covar,
        "prior": prior,
        "progress_interval": progress_interval,
        "mesh": mesh,
    }
    return _RUNNERS[method](x, n_components, common, dict(options or {}))
