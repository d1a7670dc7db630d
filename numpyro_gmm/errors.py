"""Warnings and errors raised by numpyro_gmm.

When scikit-learn is installed, :class:`ConvergenceWarning` and :class:`NotFittedError` are
subclasses of scikit-learn's classes of the same names, so code written for scikit-learn
(``except sklearn.exceptions.NotFittedError``, ``warnings.filterwarnings("ignore",
category=sklearn.exceptions.ConvergenceWarning)``) handles ours too. Without scikit-learn they
stand alone, on the same built-in bases.
"""

try:
    from sklearn.exceptions import ConvergenceWarning as _ConvergenceWarningBase
    from sklearn.exceptions import NotFittedError as _NotFittedErrorBase

    _NOT_FITTED_BASES: tuple[type, ...] = (_NotFittedErrorBase,)
except ImportError:  # scikit-learn is optional
    _ConvergenceWarningBase = UserWarning
    _NOT_FITTED_BASES = (ValueError, AttributeError)

__all__ = [
    "ConvergenceWarning",
    "EmptyComponentWarning",
    "FitFailedError",
    "NotFittedError",
    "RegularizationWarning",
]


class ConvergenceWarning(_ConvergenceWarningBase):
    """The chosen restart stopped at ``max_iter`` before its objective settled, or some
    restarts failed and were left out."""


class EmptyComponentWarning(UserWarning):
    """A fitted component explains (almost) no data."""


class FitFailedError(ValueError):
    """Every restart of a fit failed (non-finite or not positive definite parameters)."""


class NotFittedError(*_NOT_FITTED_BASES):
    """An estimator is used before ``fit``."""


class RegularizationWarning(UserWarning):
    """``reg_covar`` is large next to the data's spread: it, not the data, sets the fitted
    variances of some feature."""
