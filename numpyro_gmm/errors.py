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


# name -> (bases beside scikit-learn's class of that name, bases without scikit-learn, doc)
_LAZY = {
    "ConvergenceWarning": (
        (FitWarning,),
        (FitWarning,),
        "The chosen restart stopped at ``max_iter`` before its objective settled, or some "
        "restarts failed and were left out.",
    ),
    "NotFittedError": ((), (ValueError, AttributeError), "An estimator is used before ``fit``."),
}


def _create(name: str) -> type:
    """The class ``name`` of :data:`_LAZY`, on scikit-learn's class when it is installed."""
    extra_bases, standalone_bases, doc = _LAZY[name]
    bases = standalone_bases
    if importlib.util.find_spec("sklearn") is not None:
        import sklearn.exceptions

        bases = (getattr(sklearn.exceptions, name), *extra_bases)
    return type(name, bases, {"__module__": __name__, "__doc__": doc})


def __getattr__(name: str):
    if name in _LAZY:
        value = _create(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
