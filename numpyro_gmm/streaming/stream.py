"""A streamed data set: a source of row blocks and how to stream it (:class:`Stream`).

:func:`numpyro_gmm.pipeline.fit_mixture` fits a :class:`Stream` out of core (its engine is
:func:`numpyro_gmm.streaming.engine.run_streamed`); the settings common to every fit (the
number of components, ``max_iter`` as the most exact passes, ``tol``, the initialization,
``reg_covar``, ``prior``, ``chunk_size``) come from the pipeline, the streaming settings from
here.
"""

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from numpyro_gmm.streaming.passes import DEFAULT_KAPPA, DEFAULT_T0
from numpyro_gmm.streaming.sources import _Source

__all__ = ["DEFAULT_BLOCK_SIZE", "Stream"]

DEFAULT_BLOCK_SIZE: int = 65536
"""Rows per block read from the source (the stepwise minibatch)."""

STREAM_METHODS = ("stepwise", "exact")


@dataclass(frozen=True, eq=False)
class Stream:
    """Data streamed block by block from ``source``, and the settings of the streaming fit.

    Parameters
    ----------
    source : array, memmap, xarray.DataArray, callable or iterable
        Where the rows come from (:mod:`numpyro_gmm.streaming.sources`): a numpy array or
        memmap, an ``xarray.DataArray``, a callable returning a fresh iterable of ``(n_i, D)``
        arrays at every pass, or such an iterable (a one-shot iterator allows one pass).
    method : {"stepwise", "exact"}
        ``"stepwise"``: ``stepwise_passes`` passes of stepwise EM, then up to ``max_iter``
        exact passes; ``"exact"``: exact passes only.
    init_rows : int
        Rows read from the start of a (shuffled) pass for the initialization.
    stepwise_passes : int
        Passes of stepwise EM (``method="stepwise"``).
    kappa, t0 : float
        Step sizes ``gamma_t = (t + t0)^(-kappa)`` of stepwise EM, ``kappa`` in (0.5, 1] and
        ``t0 >= 1``.
    shuffle : bool
        Visit the blocks of an indexable source in a random order at each stepwise pass and
        for the initialization sample.
    block_size : int
        Rows per block read from the source (the stepwise minibatch).
    sample_dim : str, optional
        The row dimension of an ``xarray.DataArray`` (default its first).
    progress : float, optional
        Seconds between progress lines on stderr (and one line per pass); ``None`` is silent.

    Attributes
    ----------
    n_samples : int or None
        Rows of an array or DataArray source; ``None`` where only reading tells (callables,
        iterables).
    n_features : int or None
        Columns, where known without reading.
    """

    source: Any
    _: KW_ONLY
    method: Literal["stepwise", "exact"] = "stepwise"
    init_rows: int = 100_000
    stepwise_passes: int = 1
    kappa: float = DEFAULT_KAPPA
    t0: float = DEFAULT_T0
    shuffle: bool = True
    block_size: int = DEFAULT_BLOCK_SIZE
    sample_dim: str | None = None
    progress: float | None = None
    n_samples: int | None = field(init=False, repr=False)
    n_features: int | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.method not in STREAM_METHODS:
            raise ValueError(f"method must be 'stepwise' or 'exact', got {self.method!r}.")
        if not 0.5 < self.kappa <= 1.0:
            raise ValueError(
                f"kappa must lie in (0.5, 1] (Robbins-Monro conditions), got {self.kappa}."
            )
        if not self.t0 >= 1.0:
            raise ValueError(
                f"t0 must be at least 1 (so that every step is at most 1), got {self.t0}."
            )
        for name in ("block_size", "init_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        passes = self.stepwise_passes
        if isinstance(passes, bool) or int(passes) != passes or passes < 0:
            raise ValueError(f"stepwise_passes must be a non-negative integer, got {passes!r}.")
        if self.progress is not None and not self.progress >= 0:
            raise ValueError(f"progress must be None or seconds >= 0, got {self.progress!r}.")
        source = self.open()  # checks the source's type and sample_dim
        object.__setattr__(self, "n_samples", source.n_samples)
        object.__setattr__(self, "n_features", source.n_features)

    @property
    def n_stepwise_passes(self) -> int:
        """Stepwise passes that run (0 with ``method="exact"``)."""
        return int(self.stepwise_passes) if self.method == "stepwise" else 0

    def open(self) -> _Source:
        """A fresh reader of the source (one per fit: it tracks the passes read)."""
        return _Source(self.source, self.sample_dim, int(self.block_size))
