"""Training methods over arrays, one runner each, shared by the facade, the CLI and
:func:`numpyro_gmm.fit`.

========================  =====================================================================
method                    what runs
========================  =====================================================================
``"em"``                  (MAP-)EM from the chosen initialization, restarts vmapped.
``"biglearn_em"``         BigLearn-EM (:mod:`numpyro_gmm.kernels.biglearn_em`) for exactly
                          ``max_iter`` outer iterations (stochastic: no early stop), then the
                          documented polish: up to ``polish_iter`` (default 50) joint-EM steps
                          that keep the eigenvalue floor and drop the weight smoothing, stopping
                          at ``tol``, per restart, before the best restart is chosen.
``"gradient_em"``         Over-parameterized gradient EM with ``n = ceil(3 m ln m)`` components,
                          prune-and-merge back to ``m'`` components, then an EM polish
                          (:mod:`numpyro_gmm.overparameterized`).
========================  =====================================================================
"""

from typing import Any, NamedTuple

import jax

from numpyro_gmm.fitting import FitResult, InitialValues, fit_gaussian_mixture
from numpyro_gmm.mixture.priors import GaussianMixturePrior

__all__ = ["METHODS", "MethodOutcome", "run_method"]

METHODS: tuple[str, ...] = ("em", "biglearn_em", "gradient_em")

# The documented BigLearn-EM polish: joint matchings only, one inner step, no smoothing.
_BIGLEARN_POLISH = {"p_joint": 1.0, "inner_steps": 1, "weight_smoothing": 0.0}
_BIGLEARN_POLISH_ITER = 50


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


def _biglearn_em(x, n_components, common, options) -> MethodOutcome:
    options = dict(options)
    polish_iter = options.pop("polish_iter", _BIGLEARN_POLISH_ITER)
    polish_options = dict(_BIGLEARN_POLISH)
    if "eigenvalue_floor" in options:
        polish_options["eigenvalue_floor"] = options["eigenvalue_floor"]
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
    result = fit_gradient_em(
        x,
        n_components,
        covariance_type=common["covariance_type"],
        rng_key=common["rng_key"],
        n_restarts=common["n_restarts"],
        max_iter=common["max_iter"],
        tol=common["tol"],
        reg_covar=common["reg_covar"],
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
) -> MethodOutcome:
    """Fit ``x`` with ``method`` (one of :data:`METHODS`) and its ``options``.

    The common arguments mean what they mean for
    :func:`~numpyro_gmm.fitting.fit_gaussian_mixture`; ``options`` are the method's own
    (BigLearn-EM: the kernel's options plus ``polish_iter``; gradient EM: those of
    :func:`~numpyro_gmm.overparameterized.fit_gradient_em`).
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
    }
    return _RUNNERS[method](x, n_components, common, dict(options or {}))
