"""Host-side input checks with messages that say what to do.

Everything here runs on numpy before any device work, so bad input fails early and clearly;
problems that can only appear inside the jitted loop come back as flags (see ``driver``).
"""

import contextlib
import numbers
import warnings

import jax
import numpy as np

from numpyro_gmm.errors import RegularizationWarning
from numpyro_gmm.mixture.covariance import (
    check_covariance_type,
    covariance_shape,
    is_matrix_type,
)
from numpyro_gmm.mixture.init import INIT_METHODS

__all__ = [
    "to_device",
    "check_data",
    "feature_names",
    "check_reg_covar_scale",
    "precision_of",
    "check_float32_precision",
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


def precision_of(dtype) -> contextlib.AbstractContextManager:
    """A scope in which JAX computes in ``dtype``: x64 on for float64, off for float32.

    Scoped (``jax.enable_x64``), so the caller's global setting is left as it was; programs
    compiled inside are cached per precision.
    """
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def to_device(x: np.ndarray) -> jax.Array:
    """Put host data on the default device, without a copy where the platform allows it.

    On CPU, a C-contiguous numpy array aligned to 64 bytes is aliased rather than copied,
    so fitting it costs no second copy of the data (numpy's own allocations are usually
    16-byte aligned, and are copied once).
    """
    # A fresh view of the same memory: JAX reuses an earlier transfer of the same numpy
    # object, in that transfer's dtype (float32 buffers behind a float64 array when the
    # object was first sent with x64 off, e.g. by a NUTS run on the same data).
    return jax.device_put(np.ascontiguousarray(x).view(), may_alias=True)


def check_data(
    x, *, name: str = "X", allow_1d: bool = False, check_precision: bool = True
) -> np.ndarray:
    """Return ``x`` as a finite float array of shape (N, D).

    Accepts anything ``numpy.asarray`` understands (lists, pandas DataFrames, xarray
    DataArrays; integers and booleans are converted to float). A 1-D input is a single
    feature when ``allow_1d``; otherwise it is refused with the reshape hint scikit-learn
    gives. With ``check_precision``, data that would lose their information in JAX's default
    float32 are refused (:func:`check_float32_precision`).
    """
    if type(x).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"{name} is a sparse matrix, but dense data is required: convert it with "
            f"{name}.toarray()."
        )
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} could not be converted to a numeric array: {error}") from error
    if array.dtype == object:  # numbers stored as objects (e.g. a mixed DataFrame's values)
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name} must contain numbers ({error}). Convert or drop the non-numeric "
                "columns (e.g. with pandas: df.select_dtypes('number'))."
            ) from None
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(
            f"Complex data not supported: {name} has dtype {array.dtype}; pass its real part "
            "or its modulus."
        )
    if not (np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)):
        raise TypeError(
            f"{name} must contain numbers, got dtype {array.dtype}. Convert or drop the "
            "non-numeric columns (e.g. with pandas: df.select_dtypes('number'))."
        )
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
    for axis, what in ((0, "sample"), (1, "feature")):
        if array.shape[axis] == 0:  # scikit-learn's wording
            raise ValueError(
                f"{name} is empty: found array with 0 {what}(s) (shape={array.shape}) while a "
                "minimum of 1 is required."
            )
    array = array.astype(np.float64, copy=False) if array.dtype != np.float32 else array
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        row = int(bad_rows[0])
        column = int(np.flatnonzero(~finite[row])[0])
        names = feature_names(x)
        where = f"column {names[column]!r}" if names is not None else f"column {column}"
        kind = "NaN" if np.isnan(array[row, column]) else "infinity"
        raise ValueError(
            f"{name} contains {kind} at row {row}, {where} ({bad_rows.size} row(s) with NaN or "
            f"infinity; first: {bad_rows[:5].tolist()}). Remove or impute the missing values."
        )
    if check_precision:
        check_float32_precision(array, name=name)
    return array


def feature_names(x) -> np.ndarray | None:
    """Column names of a pandas DataFrame or of a 2-D xarray DataArray, else None.

    As in scikit-learn, names are kept only when every column name is a string; the result
    is an object array of the names (for ``feature_names_in_``). For a DataArray the names
    are the coordinate values of its last dimension.
    """
    columns = getattr(x, "columns", None)
    if columns is None and hasattr(x, "dims") and hasattr(x, "coords") and np.ndim(x) == 2:
        last = x.dims[-1]
        columns = x.coords[last].values if last in x.coords else None
    if columns is None:
        return None
    names = list(columns)
    if not names or not all(isinstance(n, str) for n in names):
        return None
    return np.asarray(names, dtype=object)


def check_reg_covar_scale(x: np.ndarray, reg_covar: float, *, name: str = "X") -> None:
    """Warn when ``reg_covar`` would dominate the data's spread.

    ``reg_covar`` is added to every covariance diagonal in the data's own units, so EM is not
    scale-equivariant: on data of spread 1e-8 the default 1e-6 swamps every covariance and
    the fit describes the regularization rather than the data (all components alike,
    arbitrary labels). A :class:`RegularizationWarning` says so when ``reg_covar`` exceeds a
    tenth of the smallest non-zero per-feature variance of ``x`` (the fit goes on, as
    scikit-learn's does); constant features are exempt (their variance is ``reg_covar`` by
    design).
    """
    variances = np.var(np.asarray(x, dtype=np.float64), axis=0)
    spread = np.where(variances > 0, variances, np.inf)
    feature = int(np.argmin(spread))
    smallest = float(spread[feature])
    if np.isfinite(smallest) and reg_covar > 0.1 * smallest:
        warnings.warn(
            f"reg_covar={reg_covar:g} is more than a tenth of the variance {smallest:.3g} of "
            f"feature {feature} of {name}: it dominates that feature's fitted variances. "
            f"Rescale the data (e.g. divide each column by its standard deviation) or use "
            f"reg_covar <= {0.1 * smallest:.3g}.",
            RegularizationWarning,
            stacklevel=3,
        )


def check_float32_precision(x: np.ndarray, *, name: str = "X", dtype=None) -> None:
    """Refuse data that float32 cannot represent to a useful precision.

    JAX computes in float32 unless x64 is enabled; a feature whose offset is large next to
    its spread (e.g. timestamps, or values around 1e8 with unit spread) loses most of its
    information in the conversion itself, before any fitting. This is refused when rounding
    to float32 moves a value by more than 1% of its feature's standard deviation.

    ``dtype`` is the precision the data will be computed in (default: JAX's working dtype
    for ``x``); a caller that converts the data itself (``--float32``) passes float32.
    """
    target = working_dtype(x.dtype) if dtype is None else np.dtype(dtype)
    if target != np.float32 or x.dtype == np.float32:
        return
    spread = np.std(x, axis=0)
    error = np.max(np.abs(x - x.astype(np.float32).astype(np.float64)), axis=0)
    lossy = np.flatnonzero((spread > 0) & (error > 0.01 * spread))
    if lossy.size:
        feature = int(lossy[0])
        raise ValueError(
            f"Feature {feature} of {name} (mean {np.mean(x[:, feature]):.6g}, standard "
            f"deviation {spread[feature]:.3g}) cannot be represented in float32: rounding "
            f"changes values by up to {error[feature]:.3g}. Subtract the column means before "
            "fitting, or enable float64 with jax.config.update('jax_enable_x64', True)."
        )


def check_n_samples(n_samples: int, n_components: int) -> None:
    """At least two samples (one row has no spread to fit), and as many as components."""
    if n_samples < 2:
        raise ValueError(
            f"Expected at least 2 samples to fit, got n_samples = {n_samples}: one row has no "
            "spread, so every covariance would be reg_covar alone. Use more data."
        )
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
    check_covariance_type(covariance_type)
    if init_params not in INIT_METHODS:
        raise ValueError(f"Unknown init_params {init_params!r}; use one of {INIT_METHODS}.")
    _check_real(reg_covar, "reg_covar", minimum=0.0, inclusive=True)
    _check_real(tol, "tol", minimum=0.0, inclusive=True)
    _check_integer(max_iter, "max_iter", 0)
    _check_integer(n_init, "n_init", 1)


def _check_shape(value: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if value.shape != shape:  # scikit-learn's wording, so its users' checks still match
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {value.shape}"
        )


def _initial_array(value, name: str) -> np.ndarray:
    """An initial value as a finite float array of its own shape (object arrays of numbers
    included), float32 kept."""
    try:
        array = np.asarray(value)
        if array.dtype != np.float32:
            array = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The parameter '{name}' must contain numbers: {error}") from None
    if not np.isfinite(array).all():
        raise ValueError(f"The parameter '{name}' contains NaN or infinity.")
    return array


def check_initial_values(
    weights_init,
    means_init,
    precisions_init,
    *,
    n_components: int,
    n_features: int,
    covariance_type: str,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Validate user-supplied initial weights, means and precisions (scikit-learn's rules and
    messages)."""
    check_covariance_type(covariance_type)
    weights = means = precisions = None
    if weights_init is not None:
        weights = _initial_array(weights_init, "weights")
        _check_shape(weights, (n_components,), "weights")
        if (weights < 0).any() or (weights > 1).any():
            raise ValueError(
                "The parameter 'weights' should be in the range [0, 1], but got "
                f"min value {weights.min():.5f}, max value {weights.max():.5f}"
            )
        atol = 1e-6 if weights.dtype == np.float32 else 1e-8
        if not np.isclose(weights.sum(), 1.0, rtol=0.0, atol=atol):
            raise ValueError(
                "The parameter 'weights' should be normalized, but got "
                f"sum(weights) = {weights.sum():.5f}"
            )
    if means_init is not None:
        means = _initial_array(means_init, "means")
        _check_shape(means, (n_components, n_features), "means")
    if precisions_init is not None:
        name = f"{covariance_type} precision"
        precisions = _initial_array(precisions_init, name).astype(np.float64)
        _check_shape(precisions, covariance_shape(covariance_type, n_components, n_features), name)
        if is_matrix_type(covariance_type):
            matrices = precisions.reshape(-1, n_features, n_features)
            symmetric = np.allclose(matrices, np.swapaxes(matrices, -1, -2))
            if not symmetric or (np.linalg.eigvalsh(matrices) <= 0).any():
                raise ValueError(f"'{name}' should be symmetric, positive-definite")
        elif (precisions <= 0).any():
            raise ValueError(f"'{name}' should be positive")
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

    check_covariance_type(covariance_type)
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
    # Each covariance family is a pair of hyperparameters for one kind of covariance.
    families = (
        ("Inverse-Wishart", ("covariance_df", "covariance_scale"), True, "full or tied"),
        ("Inverse-Gamma", ("variance_concentration", "variance_rate"), False, "diag or spherical"),
    )
    for family, names, for_matrices, applies_to in families:
        if all(values[name] is None for name in names):
            continue
        if is_matrix_type(covariance_type) != for_matrices:
            other_names = next(n for f, n, m, _ in families if m != for_matrices)
            raise ValueError(
                f"An {family} prior ({', '.join(names)}) applies to {applies_to} covariances; "
                f"for covariance_type={covariance_type!r} use {' and '.join(other_names)}."
            )
        if any(values[name] is None for name in names):
            raise ValueError(f"An {family} prior needs both {' and '.join(names)}.")
    if values["covariance_df"] is not None:
        require("covariance_df", (), lambda a: a > d - 1, f"must be > n_features - 1 = {d - 1}.")
        require(
            "covariance_scale", (d, d), _positive_definite, "must be symmetric positive definite."
        )
    if values["variance_concentration"] is not None:
        require("variance_concentration", (), lambda a: a > 0, "must be > 0.")
        rate_shape = (d,) if covariance_type == "diag" and values["variance_rate"].ndim else ()
        require("variance_rate", rate_shape, lambda a: np.all(a > 0), "must be > 0.")
    return GaussianMixturePrior(**values)
