"""Warnings and errors raised by numpyro_gmm (no dependencies beyond the standard library)."""

__all__ = ["ConvergenceWarning", "EmptyComponentWarning", "FitFailedError"]


class ConvergenceWarning(UserWarning):
    """The chosen restart stopped at ``max_iter`` before its objective settled, or some
    restarts failed and were left out."""


class EmptyComponentWarning(UserWarning):
    """A fitted component explains (almost) no data."""


class FitFailedError(ValueError):
    """Every restart of a fit failed (non-finite or not positive definite parameters)."""
