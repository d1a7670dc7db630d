"""Host-side input checks with messages that say what to do.

Everything here runs on numpy before any device work, so bad input fails early and clearly;
problems that can only appear inside the jitted loop come back as flags (see ``driver``).
"""

import numbers

import jax
import numpy as np

from numpyro_gmm._types import COVARIANCE_TYPES
from numpyro_gmm.mixture.init import INIT_METHODS

__all__ = [
    "to_device",
    "check_data",
    "check_n_samples",
    "check_options",
    "check_initial_values",
    "check_prior",
    "working_dtype",
]


def working_dtype(dtype: np.dtype) -> np.dtype:
    """The float dtype computations run in: float64 only if JAX has x64 enabled."""
    if jax.config.jax_enable_x64 and np.dtype(dtype) != np.float32:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def to_device(x: np.ndarray) -> jax.Array:
    """Put host data on the default device, without a copy where the platform allows it.

    On CPU, a C-contiguous numpy array aligned to 64 bytes is aliased rather than copied,
    so fitting it costs no second copy of the data (numpy's own allocations are usually
    16-byte aligned, and are copied once).
    """
    return jax.device_put(np.ascontiguousarray(x), may_alias=True)


def check_data(x, *, name: str = "X", allow_1d: bool = False) -> np.ndarray:
    """Return ``x`` as a finite float array of shape (N, D).

    Accepts anything ``numpy.asarray`` understands (lists, pandas DataFrames, xarray
    DataArrays). A 1-D input is a single feature when ``allow_1d``; otherwise it is refused
    with the reshape hint scikit-learn gives.
    """
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} could not be converted to a numeric array: {error}") from error
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise TypeError(
            f"{name} must contain numbers, got dtype {array.dtype}. Convert or drop the "
            "non-numeric columns (e.g. with pandas: df.select_dtypes('number'))."
        )
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real-valued, got dtype {array.dtype}.")
    if array.ndim == 1 and allow_1d:
        array = array[:, None]
    if array.ndim != 2:
        hint = (
            " Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
            if array.ndim == 1
            else ""
        )
        raise ValueError(
            f"Expected a 2-D array of shape (n_samples, n_features) for {name}, got a "
            f"{array.ndim}-D array of shape {array.shape}.{hint}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {array.shape}); at least one sample and one feature are "
            "required."
        )
    array = array.astype(np.float64, copy=False) if array.dtype != np.float32 else array
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        kind = "NaN" if np.isnan(array).any() else "infinity"
        raise ValueError(
            f"{name} contains {kind} in {bad_rows.size} row(s) (first: {bad_rows[:5].tolist()}). "
            "Remove or impute those rows before fitting."
        )
    return array


def check_n_samples(n_samples: int, n_components: int) -> None:
    """At least as many samples as components."""
    if n_samples < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {n_samples}. Use fewer components or more data."
        )


def _check_integer(value, name: str, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _check_real(value, name: str, *, minimum: float, inclusive: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value >= minimum if inclusive else value > minimum)
    if not ok:
        relation = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be a finite number {relation} {minimum}, got {value!r}.")


def check_options(
    *,
    n_components: int,
    covariance_type: str,
    init_params: str,
    reg_covar: float,
    tol: float,
    max_iter: int,
    n_init: int,
) -> None:
    """Validate the scalar options shared by every entry point."""
    _check_integer(n_components, "n_components", 1)
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"Unknown covariance_type {covariance_type!r}; use one of {COVARIANCE_TYPES}."
        )
    if init_params not in INIT_METHODS:
        raise ValueError(f"Unknown init_params {init_params!r}; use one of {INIT_METHODS}.")
    _check_real(reg_covar, "reg_covar", minimum=0.0, inclusive=False)
    _check_real(tol, "tol", minimum=0.0, inclusive=True)
    _check_integer(max_iter, "max_iter", 0)
    _check_integer(n_init, "n_init", 1)


def _check_shape(value: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if value.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape {shape}, but got {value.shape}."
        )


def _precision_shape(covariance_type: str, n_components: int, n_features: int):
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def check_initial_values(
    weights_init,
    means_init,
    precisions_init,
    *,
    n_components: int,
    n_features: int,
    covariance_type: str,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Validate user-supplied initial weights, means and precisions (scikit-learn's rules)."""
    weights = means = precisions = None
    if weights_init is not None:
        weights = check_data(np.asarray(weights_init)[None], name="weights_init")[0]
        _check_shape(weights, (n_components,), "weights_init")
        if (weights < 0).any() or (weights > 1).any():
            raise ValueError(
                "The parameter 'weights_init' should be in the range [0, 1], but got "
                f"min value {weights.min():.5f}, max value {weights.max():.5f}."
            )
        if not np.isclose(weights.sum(), 1.0, atol=1e-6 if weights.dtype == np.float32 else 1e-8):
            raise ValueError(
                "The parameter 'weights_init' should be normalized, but got "
                f"sum(weights) = {weights.sum():.5f}."
            )
    if means_init is not None:
        means = check_data(means_init, name="means_init")
        _check_shape(means, (n_components, n_features), "means_init")
    if precisions_init is not None:
        precisions = np.asarray(precisions_init, dtype=float)
        _check_shape(
            precisions,
            _precision_shape(covariance_type, n_components, n_features),
            "precisions_init",
        )
        if not np.isfinite(precisions).all():
            raise ValueError("'precisions_init' contains NaN or infinity.")
        if covariance_type in ("full", "tied"):
            matrices = precisions.reshape(-1, n_features, n_features)
            symmetric = np.allclose(matrices, np.swapaxes(matrices, -1, -2))
            if not symmetric or (np.linalg.eigvalsh(matrices) <= 0).any():
                raise ValueError("'precisions_init' should be symmetric, positive-definite.")
        elif (precisions <= 0).any():
            raise ValueError("'precisions_init' should be positive.")
    return weights, means, precisions


def _positive_definite(matrix: np.ndarray) -> bool:
    return bool(np.allclose(matrix, matrix.T)) and bool(np.all(np.linalg.eigvalsh(matrix) > 0))


def check_prior(prior, *, n_components: int, n_features: int, covariance_type: str):
    """Validate a :class:`~numpyro_gmm.mixture.priors.GaussianMixturePrior`; return it as numpy.

    The closed-form MAP M-step needs: Dirichlet concentrations >= 1 (below 1 the mode lies on
    the boundary of the simplex), a coupled (``mean_precision``) or an independent
    (``mean_covariance``) mean prior but not both, Inverse-Wishart priors for full and tied
    covariances and Inverse-Gamma priors for diag and spherical variances.
    """
    from numpyro_gmm.mixture.priors import GaussianMixturePrior

    if not isinstance(prior, GaussianMixturePrior):
        raise TypeError(f"prior must be a GaussianMixturePrior, got {type(prior).__name__}.")
    values = {}
    for name, value in prior._asdict().items():
        if value is None:
            values[name] = None
            continue
        array = np.asarray(value, dtype=float)
        if not np.isfinite(array).all():
            raise ValueError(f"prior.{name} contains NaN or infinity; give finite values.")
        values[name] = array
    k, d = n_components, n_features

    def require(name: str, shape: tuple[int, ...], condition, text: str) -> None:
        array = values[name]
        if array.shape != shape:
            raise ValueError(f"prior.{name} should have shape {shape}, got {array.shape}.")
        if not condition(array):
            raise ValueError(f"prior.{name} {text}")

    if values["weight_concentration"] is not None:
        require(
            "weight_concentration",
            (k,),
            lambda a: np.all(a >= 1.0),
            "must be >= 1 for a closed-form MAP M-step (the mode of a Dirichlet with "
            "concentration below 1 lies on the boundary of the simplex).",
        )
    has_coupled = values["mean_precision"] is not None
    has_independent = values["mean_covariance"] is not None
    if has_coupled and has_independent:
        raise ValueError(
            "Give either prior.mean_precision (means ~ N(m0, Sigma_k / kappa0)) "
            "or prior.mean_covariance (means ~ N(m0, V0)), not both."
        )
    if (has_coupled or has_independent) != (values["mean_loc"] is not None):
        raise ValueError(
            "A mean prior needs prior.mean_loc together with prior.mean_precision "
            "or prior.mean_covariance."
        )
    if values["mean_loc"] is not None:
        require("mean_loc", (d,), lambda a: True, "")
    if has_coupled:
        require("mean_precision", (), lambda a: a > 0, "must be > 0.")
    if has_independent:
        require(
            "mean_covariance", (d, d), _positive_definite, "must be symmetric positive definite."
        )
    wishart = values["covariance_df"] is not None or values["covariance_scale"] is not None
    gamma = values["variance_concentration"] is not None or values["variance_rate"] is not None
    if wishart:
        if covariance_type not in ("full", "tied"):
            raise ValueError(
                f"An Inverse-Wishart prior (covariance_df, covariance_scale) applies to full or "
                f"tied covariances; for covariance_type={covariance_type!r} use "
                "variance_concentration and variance_rate (Inverse-Gamma)."
            )
        if values["covariance_df"] is None or values["covariance_scale"] is None:
            raise ValueError(
                "An Inverse-Wishart prior needs both covariance_df and covariance_scale."
            )
        require("covariance_df", (), lambda a: a > d - 1, f"must be > n_features - 1 = {d - 1}.")
        require(
            "covariance_scale", (d, d), _positive_definite, "must be symmetric positive definite."
        )
    if gamma:
        if covariance_type not in ("diag", "spherical"):
            raise ValueError(
                f"An Inverse-Gamma prior (variance_concentration, variance_rate) applies to diag "
                f"or spherical covariances; for covariance_type={covariance_type!r} use "
                "covariance_df and covariance_scale (Inverse-Wishart)."
            )
        if values["variance_concentration"] is None or values["variance_rate"] is None:
            raise ValueError(
                "An Inverse-Gamma prior needs both variance_concentration and variance_rate."
            )
        require("variance_concentration", (), lambda a: a > 0, "must be > 0.")
        rate_shape = (d,) if covariance_type == "diag" and values["variance_rate"].ndim else ()
        require("variance_rate", rate_shape, lambda a: np.all(a > 0), "must be > 0.")
    return GaussianMixturePrior(**values)
