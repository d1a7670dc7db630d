"""Warnings and errors raised by numpyro_gmm.

When scikit-learn is installed, :class:`ConvergenceWarning` and :class:`NotFittedError` are
subclasses of scikit-learn's classes of the same names, so code written for scikit-learn
(``except sklearn.exceptions.NotFittedError``, ``warnings.filterwarnings("ignore",
category=sklearn.exceptions.ConvergenceWarning)``) handles ours too. Without scikit-learn they
stand alone, on the same built-in bases. Both are created on first use, so that importing the
engine does not import scikit-learn (about a second).
"""

import importlib.util

__all__ = [
    "ConvergenceWarning",  # noqa: F822 (created on first use, below)
    "EmptyComponentWarning",
    "FitFailedError",
    "FitWarning",
    "NotFittedError",  # noqa: F822
    "RegularizationWarning",
]


class FitWarning(UserWarning):
    """Base of the warnings about a fit's outcome (:class:`ConvergenceWarning`,
    :class:`EmptyComponentWarning`)."""


class EmptyComponentWarning(FitWarning):
    """A fitted component explains (almost) no data."""


class FitFailedError(ValueError):
    """Every restart of a fit failed (non-finite or not positive definite parameters)."""


class RegularizationWarning(UserWarning):
    """``reg_covar`` is large next to the data's spread: it, not the data, sets the fitted
    variances of some feature."""


def _sklearn_exceptions():
    if importlib.util.find_spec("sklearn") is None:
        return None
    import sklearn.exceptions

    return sklearn.exceptions


def _convergence_warning() -> type:
    sklearn_exceptions = _sklearn_exceptions()
    bases = (FitWarning,)
    if sklearn_exceptions is not None:
        bases = (sklearn_exceptions.ConvergenceWarning, FitWarning)
    return type(
        "ConvergenceWarning",
        bases,
        {
            "__module__": __name__,
            "__doc__": "The chosen restart stopped at ``max_iter`` before its objective "
            "settled, or some restarts failed and were left out.",
        },
    )


def _not_fitted_error() -> type:
    sklearn_exceptions = _sklearn_exceptions()
    bases = (ValueError, AttributeError)
    if sklearn_exceptions is not None:
        bases = (sklearn_exceptions.NotFittedError,)
    return type(
        "NotFittedError",
        bases,
        {"__module__": __name__, "__doc__": "An estimator is used before ``fit``."},
    )


_LAZY = {"ConvergenceWarning": _convergence_warning, "NotFittedError": _not_fitted_error}


def __getattr__(name: str):
    if name in _LAZY:
        value = _LAZY[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
