"""EM for data that do not fit in memory: exact out-of-core EM and stepwise (online) EM.

The data come as a stream of row blocks from a *source*: a numpy array or ``np.memmap``, an
``xarray.DataArray`` (lazily backed by netCDF or zarr: blocks are read with ``isel``), a
callable that returns a fresh iterable of ``(n_i, D)`` arrays at every pass, or an iterable of
such arrays (re-iterable for several passes; a one-shot iterator allows a single pass). Blocks
of any size are re-cut into blocks of exactly ``block_size`` rows (the last one padded with
zero-weight rows), so the device program compiles once; on the device each block is summed in
chunks of ``chunk_size`` rows (:func:`~numpyro_gmm.mixture.chunking.chunked_sum`), so peak
memory is about one block plus ``O(chunk_size * K * D)``, whatever ``N``.

Two algorithms, both (MAP-)EM with the package's closed-form M-step
(:func:`~numpyro_gmm.mixture.mstep.m_step`, priors included):

**Exact EM** (``method="exact"``). Each pass streams every block, accumulates the sufficient
statistics at the current parameters, then takes one M-step. It is full-batch EM, computed
out of core: the same iterates up to the order of floating-point additions.

**Stepwise EM** (``method="stepwise"``; Cappé & Moulines 2009, Liang & Klein 2009). After each
block ``b`` of ``n_b`` rows, the running per-point statistics ``s`` move towards the block's,

.. math::

    s \\leftarrow (1 - \\gamma_t)\\, s + \\gamma_t \\, \\frac{1}{n_b} S_b(\\theta), \\qquad
    \\gamma_t = (t + t_0)^{-\\kappa}, \\quad t = 0, 1, 2, \\ldots

and the M-step runs on ``N s`` (``N`` the number of rows, so that priors weigh as in the
full-batch posterior). Defaults ``kappa = 0.6`` and ``t0 = 1``: ``gamma_0 = 1`` (the first
block replaces the empty statistics), ``kappa`` in ``(0.5, 1]`` is the range in which the
steps sum to infinity while their squares do not (the Robbins–Monro conditions of the
convergence results); Liang & Klein found ``kappa`` about 0.5–0.7 with blocks of thousands of
rows to match or beat batch EM after one or two passes. The statistics of different blocks are
centred at different means; they are re-centred exactly before averaging
(:func:`~numpyro_gmm.mixture.estep.recentre`). Blocks of an indexable source are visited in a
random order at every stepwise pass (``shuffle``), since stepwise EM assumes exchangeable
blocks (a file sorted by cluster would otherwise drag the fit from one cluster to the next).

After ``stepwise_passes`` stepwise passes, up to ``max_passes`` exact passes polish the fit and
stop when the per-point log joint changes by less than ``tol`` (0 exact passes: the stepwise
estimate is returned as it is). **Documented tolerance:** with its exact passes, stepwise EM
ends within ``1e-3`` nats per point of full-batch EM's objective from the same initial
parameters (tested on well-separated mixtures; both converge to a local optimum, which may
differ on hard problems).

**Objective convention.** As in the rest of the package, the objective of an exact pass is
the log joint of the parameters that *entered* it; the reported ``objective`` is that of the
last exact pass. A stepwise pass reports the running per-point log-likelihood, the
``log_likelihood`` entry of ``s`` (each block's under the parameters current when it was read,
averaged with the same step sizes): an estimate, not an objective value.
"""

import ctypes
import functools
import math
import mmap
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_gmm._types import Array, CovarianceType
from numpyro_gmm.fitting import ConvergenceWarning, InitialValues
from numpyro_gmm.mixture.chunking import chunked_sum, default_chunk_size
from numpyro_gmm.mixture.estep import SufficientStats, chunk_statistics, recentre
from numpyro_gmm.mixture.init import initialize
from numpyro_gmm.mixture.mstep import m_step
from numpyro_gmm.mixture.params import (
    GMMParams,
    all_finite,
    covariances_from_precisions_cholesky,
)
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior
from numpyro_gmm.progress import Throttle, report
from numpyro_gmm.validation import working_dtype

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_KAPPA",
    "DEFAULT_T0",
    "StreamingResult",
    "step_sizes",
    "fit_streaming",
]

DEFAULT_BLOCK_SIZE: int = 65536
"""Rows per block read from the source (the stepwise minibatch)."""
DEFAULT_KAPPA: float = 0.6
"""Decay exponent ``kappa`` of the stepwise step size ``(t + t0)^(-kappa)``."""
DEFAULT_T0: float = 1.0
"""Offset ``t0`` of the stepwise step size; 1 makes the first step 1."""


def step_sizes(n_steps: int, kappa: float = DEFAULT_KAPPA, t0: float = DEFAULT_T0) -> np.ndarray:
    """The stepwise-EM schedule ``gamma_t = (t + t0)^(-kappa)`` for ``t = 0 .. n_steps - 1``."""
    return (np.arange(n_steps) + t0) ** (-kappa)


# --------------------------------------------------------------------------- sources


_MADV_DONTNEED = 4


def _release_pages(view: np.ndarray) -> None:
    """Drop the pages of a memmap view from this process's resident memory.

    The pages stay in the OS page cache (a re-read is cheap) but stop counting in the
    process's RSS, so streaming a memmap keeps the RSS at about one block. Linux only; a no-op
    elsewhere.
    """
    if not sys.platform.startswith("linux") or view.nbytes == 0:
        return
    page = mmap.PAGESIZE
    start = view.ctypes.data - view.ctypes.data % page
    length = view.ctypes.data + view.nbytes - start
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_DONTNEED)


class _Source:
    """Uniform access to a source: its size if known, and its raw blocks for one pass."""

    def __init__(self, source: Any, sample_dim: str | None, block_size: int) -> None:
        self.block_size = block_size
        self.n_samples: int | None = None
        self.indexable = False
        self._passes = 0
        if isinstance(source, np.ndarray):
            self.n_samples, self.indexable = int(source.shape[0]), True
        elif hasattr(source, "isel") and hasattr(source, "dims"):  # xarray.DataArray
            dim = source.dims[0] if sample_dim is None else sample_dim
            if dim not in source.dims:
                raise ValueError(f"sample_dim {dim!r} is not a dimension of {source.dims}.")
            source = source.transpose(dim, ...)
            self.n_samples, self.indexable, self._dim = int(source.sizes[dim]), True, dim
        elif not callable(source) and not isinstance(source, Iterable):
            raise TypeError(
                "source must be a numpy array or memmap, an xarray.DataArray, a callable "
                "returning an iterable of (n_i, D) arrays, or such an iterable; got "
                f"{type(source).__name__}."
            )
        self._source = source

    @property
    def dtype(self) -> np.dtype:
        """Element type of the source if it declares one (arrays), else float64."""
        return np.dtype(getattr(self._source, "dtype", np.float64))

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_samples / self.block_size)

    def _read(self, index: int) -> np.ndarray:
        start = index * self.block_size
        stop = min(start + self.block_size, self.n_samples)
        if isinstance(self._source, np.ndarray):
            view = self._source[start:stop]
            block = np.array(view)
            if isinstance(self._source, np.memmap):
                _release_pages(view)
            return block
        return np.asarray(self._source.isel({self._dim: slice(start, stop)}).values)

    def blocks(self, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Raw blocks of one pass (for an indexable source, in ``order`` of block indices)."""
        self._passes += 1
        if self.indexable:
            indices = range(self.n_blocks) if order is None else order
            return (self._read(int(i)) for i in indices)
        if callable(self._source):
            return iter(self._source())
        iterator = iter(self._source)
        if iterator is self._source and self._passes > 1:
            raise ValueError(
                "The source is a one-shot iterator, which allows a single pass, and this fit "
                "needs another. Pass a callable that returns a fresh iterator at every pass "
                "(for example lambda: read_blocks(path)), or a numpy memmap."
            )
        return iterator


def _check_block(block: Any, n_features: int | None, index: int) -> np.ndarray:
    block = np.asarray(block)
    if block.ndim == 1:
        block = block[:, None]
    if block.ndim != 2:
        raise ValueError(
            f"Block {index} of the source has shape {block.shape}; blocks must be (n_i, D) "
            "arrays of rows."
        )
    if not np.issubdtype(block.dtype, np.number) or np.issubdtype(block.dtype, np.complexfloating):
        raise ValueError(f"Block {index} has non-numeric dtype {block.dtype}; give real numbers.")
    if n_features is not None and block.shape[1] != n_features:
        raise ValueError(
            f"Block {index} has {block.shape[1]} columns but earlier blocks have {n_features}; "
            "every block must have the same features."
        )
    if not np.all(np.isfinite(block)):
        raise ValueError(
            f"Block {index} of the source contains NaN or infinite values; remove or impute "
            "them before fitting."
        )
    return block


def _fixed_blocks(
    raw: Iterator[np.ndarray], block_size: int, n_features: int | None, dtype: np.dtype | None
) -> Iterator[tuple[np.ndarray, int]]:
    """Re-cut validated blocks into ``(block_size, D)`` arrays and their numbers of real rows."""
    pending: list[np.ndarray] = []
    n_pending = 0
    for index, block in enumerate(raw):
        block = _check_block(block, n_features, index)
        n_features = block.shape[1]
        dtype = working_dtype(block.dtype) if dtype is None else dtype
        pending.append(block.astype(dtype, copy=False))
        n_pending += block.shape[0]
        while n_pending >= block_size:
            rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield np.ascontiguousarray(rows[:block_size]), block_size
            pending, n_pending = [rows[block_size:]], n_pending - block_size
    if n_pending:
        rows = np.concatenate(pending)
        padding = np.zeros((block_size - n_pending, rows.shape[1]), rows.dtype)
        yield np.concatenate([rows, padding]), n_pending


# --------------------------------------------------------------------------- device programs


def _block_statistics(rows, n_valid, params, covariance_type, chunk_size) -> SufficientStats:
    """Statistics of one padded block, centred at ``params.means`` (rows >= n_valid: weight 0)."""

    def chunk_fn(chunk, weights, row_index):
        weights = weights * (row_index < n_valid).astype(chunk.dtype)
        return chunk_statistics(chunk, weights, params, covariance_type)

    return chunked_sum(chunk_fn, rows, chunk_size)


@functools.partial(jax.jit, static_argnames=("covariance_type", "chunk_size"), donate_argnums=0)
def _accumulate(total, rows, n_valid, params, covariance_type, chunk_size):
    block = _block_statistics(rows, n_valid, params, covariance_type, chunk_size)
    return jax.tree.map(jnp.add, total, block)


def _objective(log_likelihood, params, prior, covariance_type):
    if prior is None:
        return log_likelihood
    return log_likelihood + log_prior(params, prior, covariance_type)


@functools.partial(jax.jit, static_argnames="covariance_type")
def _exact_m_step(stats, params, reg_covar, prior, covariance_type):
    """M-step from the statistics of a full pass; keeps ``params`` if the new ones are not
    finite. Returns (params, covariances, log joint of the entering params, finite flag)."""
    new_params, covariances = m_step(stats, params.means, params, covariance_type, reg_covar, prior)
    finite = all_finite(new_params)
    new_params = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_params, params)
    objective = _objective(stats.log_likelihood, params, prior, covariance_type)
    return new_params, covariances, objective, finite


@functools.partial(jax.jit, static_argnames=("covariance_type", "chunk_size"))
def _stepwise_update(
    running,
    shift,
    rows,
    n_valid,
    params,
    gamma,
    scale,
    reg_covar,
    prior,
    covariance_type,
    chunk_size,
):
    """One stepwise-EM update (module equations). ``running`` is centred at ``shift``."""
    block = _block_statistics(rows, n_valid, params, covariance_type, chunk_size)
    block = jax.tree.map(lambda leaf: leaf / n_valid, block)
    running = recentre(running, shift, params.means, covariance_type)
    running = jax.tree.map(lambda s, b: (1.0 - gamma) * s + gamma * b, running, block)
    scaled = jax.tree.map(lambda leaf: leaf * scale, running)
    new_params, _ = m_step(scaled, params.means, params, covariance_type, reg_covar, prior)
    finite = all_finite(new_params)
    new_params = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_params, params)
    return running, params.means, new_params, finite


_initialize_program = jax.jit(
    initialize, static_argnames=("n_components", "method", "covariance_type", "chunk_size")
)


@functools.partial(jax.jit, static_argnames="covariance_type")
def _covariances(params, covariance_type):
    return covariances_from_precisions_cholesky(params.precisions_cholesky, covariance_type)


# --------------------------------------------------------------------------- result


@dataclass
class StreamingResult:
    """Result of :func:`fit_streaming` (numpy arrays).

    Attributes
    ----------
    params : GMMParams
        Final parameters.
    covariances : np.ndarray
        Final covariances, shaped per covariance type.
    covariance_type : str
    objective : float
        Log joint (log-likelihood plus log prior), summed over the data, of the parameters that
        entered the last exact pass (the stepwise estimate when no exact pass ran).
    objective_per_point : float
        ``objective / n_samples``.
    n_samples : int
    n_passes : int
        Passes over the data (stepwise and exact).
    converged : bool
        The last exact pass changed the per-point objective by less than ``tol``.
    trace : np.ndarray, shape (n_passes,)
        Per-point objective of every pass (module docstring: estimates for stepwise passes).
    pass_kinds : list of str
        ``"stepwise"`` or ``"exact"`` for every pass.
    seconds_per_pass : list of float
        Wall-clock seconds of every pass (reading the source included).
    counts : np.ndarray, shape (K,)
        Effective number of points per component at the last exact pass (or the stepwise
        estimate).
    """

    params: GMMParams
    covariances: np.ndarray
    covariance_type: str
    objective: float
    objective_per_point: float
    n_samples: int
    n_passes: int
    converged: bool
    trace: np.ndarray
    pass_kinds: list[str] = field(default_factory=list)
    seconds_per_pass: list[float] = field(default_factory=list)
    counts: np.ndarray | None = None


# --------------------------------------------------------------------------- fitting


def _zero_statistics(n_components, n_features, covariance_type, dtype) -> SufficientStats:
    second_shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
    }.get(covariance_type, (n_components, n_features))
    return SufficientStats(
        counts=jnp.zeros(n_components, dtype),
        first=jnp.zeros((n_components, n_features), dtype),
        second=jnp.zeros(second_shape, dtype),
        log_likelihood=jnp.zeros((), dtype),
    )


def _initial_params(
    source,
    initial,
    rng_key,
    n_components,
    init_method,
    init_rows,
    covariance_type,
    reg_covar,
    block_size,
    order,
    dtype,
) -> GMMParams:
    if initial is not None and all(value is not None for value in initial):
        return GMMParams(*(jnp.asarray(value, dtype) for value in initial))
    sample, n_sample = [], 0
    for rows, n_valid in _fixed_blocks(source.blocks(order), block_size, None, dtype):
        sample.append(rows[:n_valid])
        n_sample += n_valid
        if n_sample >= init_rows:
            break
    sample = jnp.asarray(np.concatenate(sample))
    if sample.shape[0] < n_components:
        raise ValueError(
            f"The source has {sample.shape[0]} rows, fewer than n_components={n_components}."
        )
    chunk = default_chunk_size(sample.shape[0], n_components, sample.shape[1])
    params = _initialize_program(
        rng_key, sample, n_components, init_method, covariance_type, reg_covar, chunk
    )
    if initial is None:
        return params
    pairs = zip(initial, params, strict=True)
    return GMMParams(*(p if v is None else jnp.asarray(v, dtype) for v, p in pairs))


def fit_streaming(
    source: Any,
    n_components: int,
    *,
    covariance_type: CovarianceType = "full",
    method: Literal["stepwise", "exact"] = "stepwise",
    rng_key: Array | int = 0,
    initial: InitialValues | GMMParams | None = None,
    init_method: str = "k-means++",
    init_rows: int = 100_000,
    stepwise_passes: int = 1,
    max_passes: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    prior: GaussianMixturePrior | None = None,
    kappa: float = DEFAULT_KAPPA,
    t0: float = DEFAULT_T0,
    shuffle: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_size: int | None = None,
    sample_dim: str | None = None,
    progress: float | None = None,
) -> StreamingResult:
    """Fit a Gaussian mixture to data streamed block by block (module docstring).

    Parameters
    ----------
    source : array, memmap, xarray.DataArray, callable or iterable
        Where the rows come from (module docstring).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    method : {"stepwise", "exact"}
        ``"stepwise"``: ``stepwise_passes`` passes of stepwise EM, then up to ``max_passes``
        exact passes; ``"exact"``: exact passes only.
    rng_key : PRNGKey or int
        Seeds the initialization and the block order.
    initial : InitialValues or GMMParams, optional
        Initial values; missing ones come from ``init_method``.
    init_method : {"kmeans", "k-means++", "random", "random_from_data"}
        Run on the first ``init_rows`` rows of a (shuffled) pass.
    init_rows : int
        Rows read for the initialization.
    stepwise_passes : int
        Passes of stepwise EM (``method="stepwise"``).
    max_passes : int
        Most exact passes; they stop earlier when the per-point log joint changes by less than
        ``tol``. With ``method="stepwise"``, 0 returns the stepwise estimate.
    tol : float
    reg_covar : float
    prior : GaussianMixturePrior, optional
        Conjugate priors (MAP), already validated and shaped for the data.
    kappa, t0 : float
        Step sizes ``gamma_t = (t + t0)^(-kappa)`` of stepwise EM, ``kappa`` in (0.5, 1].
    shuffle : bool
        Visit the blocks of an indexable source in a random order at each stepwise pass and
        for the initialization sample.
    block_size : int
        Rows per block read from the source (the stepwise minibatch).
    chunk_size : int, optional
        Rows per on-device chunk within a block (default: about ``2**20 / (K D)``).
    sample_dim : str, optional
        The row dimension of an ``xarray.DataArray`` (default its first).
    progress : float, optional
        Seconds between progress lines on stderr (and one line per pass); ``None`` is silent.

    Returns
    -------
    StreamingResult
    """
    if method not in ("stepwise", "exact"):
        raise ValueError(f"method must be 'stepwise' or 'exact', got {method!r}.")
    if not 0.5 < kappa <= 1.0:
        raise ValueError(f"kappa must lie in (0.5, 1] (Robbins-Monro conditions), got {kappa}.")
    if t0 < 1.0:
        raise ValueError(f"t0 must be at least 1 (so that every step is at most 1), got {t0}.")
    if int(block_size) != block_size or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
    n_stepwise = stepwise_passes if method == "stepwise" else 0
    if n_stepwise + max_passes < 1:
        raise ValueError("Nothing to run: give at least one stepwise or exact pass.")
    source = _Source(source, sample_dim, int(block_size))
    if isinstance(rng_key, int):
        rng_key = jax.random.key(rng_key)
    init_key, order_key = jax.random.split(rng_key)
    order_rng = np.random.default_rng(np.asarray(jax.random.key_data(order_key)).ravel())

    def order(random: bool):
        if not (source.indexable and random and shuffle):
            return None
        return order_rng.permutation(source.n_blocks)

    # As for in-memory fits: float64 only for float64 data with x64 on (unknown for
    # iterables: then float64 whenever x64 is on).
    dtype = working_dtype(source.dtype)
    params = _initial_params(
        source,
        initial,
        init_key,
        n_components,
        init_method,
        init_rows,
        covariance_type,
        reg_covar,
        int(block_size),
        order(True),
        dtype,
    )
    n_features = params.means.shape[1]
    chunk_size = chunk_size or default_chunk_size(int(block_size), n_components, n_features)
    chunk_size = int(min(chunk_size, block_size))
    if prior is not None:
        prior = GaussianMixturePrior(*(None if v is None else jnp.asarray(v, dtype) for v in prior))
    reg = jnp.asarray(reg_covar, dtype)
    throttle = Throttle(progress)
    trace, kinds, seconds = [], [], []
    counts = None
    step = 0
    n_samples = source.n_samples

    def blocks(kind: str):
        return _fixed_blocks(
            source.blocks(order(kind == "stepwise")), int(block_size), n_features, dtype
        )

    def progress_line(kind, pass_index, n_blocks_done, n_rows_done, started):
        if throttle.due():
            total = f"/{source.n_blocks}" if source.indexable else ""
            elapsed = throttle.elapsed() - started
            report(
                f"pass {pass_index + 1} ({kind}): {n_blocks_done}{total} blocks, "
                f"{n_rows_done / max(elapsed, 1e-9) / 1e6:.2f} M rows/s, "
                f"{throttle.elapsed():.1f} s"
            )

    running = _zero_statistics(n_components, n_features, covariance_type, dtype)
    shift = params.means
    for pass_index in range(n_stepwise):
        started = throttle.elapsed()
        n_seen, failed = 0, jnp.zeros((), bool)
        for block_index, (rows, n_valid) in enumerate(blocks("stepwise")):
            scale = n_samples if n_samples is not None else n_seen + n_valid
            gamma = (step + t0) ** (-kappa)
            running, shift, params, finite = _stepwise_update(
                running,
                shift,
                jnp.asarray(rows),
                n_valid,
                params,
                gamma,
                scale,
                reg,
                prior,
                covariance_type,
                chunk_size,
            )
            failed = failed | ~finite
            n_seen += n_valid
            step += 1
            progress_line("stepwise", pass_index, block_index + 1, n_seen, started)
        n_samples = n_seen
        _raise_if_failed(failed)
        trace.append(float(running.log_likelihood))
        kinds.append("stepwise")
        seconds.append(throttle.elapsed() - started)
        counts = np.asarray(running.counts) * n_seen
        if throttle.enabled:
            report(
                f"pass {pass_index + 1} (stepwise) done: running log-likelihood per point "
                f"{trace[-1]:.6g}, {seconds[-1]:.1f} s"
            )

    converged = False
    previous = -np.inf
    objective = trace[-1] * n_samples if trace else -np.inf
    for exact_index in range(max_passes):
        pass_index = n_stepwise + exact_index
        started = throttle.elapsed()
        total = _zero_statistics(n_components, n_features, covariance_type, dtype)
        n_seen = 0
        for block_index, (rows, n_valid) in enumerate(blocks("exact")):
            total = _accumulate(
                total, jnp.asarray(rows), n_valid, params, covariance_type, chunk_size
            )
            n_seen += n_valid
            progress_line("exact", pass_index, block_index + 1, n_seen, started)
        n_samples = n_seen
        params, _, objective, finite = _exact_m_step(total, params, reg, prior, covariance_type)
        _raise_if_failed(~finite)
        objective = float(objective)
        counts = np.asarray(total.counts)
        trace.append(objective / n_samples)
        kinds.append("exact")
        seconds.append(throttle.elapsed() - started)
        if throttle.enabled:
            report(
                f"pass {pass_index + 1} (exact) done: per-point objective {trace[-1]:.6g}, "
                f"{seconds[-1]:.1f} s"
            )
        converged = abs(trace[-1] - previous) < tol
        previous = trace[-1]
        if converged:
            break
    if max_passes > 0 and not converged:
        warnings.warn(
            f"Streaming EM did not converge in {max_passes} exact pass(es) (tol={tol}). "
            "Increase max_passes or tol, or run more stepwise passes first.",
            ConvergenceWarning,
            stacklevel=2,
        )
    params_host = GMMParams(*(np.asarray(leaf) for leaf in params))
    return StreamingResult(
        params=params_host,
        covariances=np.asarray(_covariances(params, covariance_type)),
        covariance_type=covariance_type,
        objective=float(objective),
        objective_per_point=float(objective) / n_samples,
        n_samples=int(n_samples),
        n_passes=len(trace),
        converged=bool(converged),
        trace=np.asarray(trace),
        pass_kinds=kinds,
        seconds_per_pass=seconds,
        counts=counts,
    )


def _raise_if_failed(failed) -> None:
    if bool(failed):
        raise ValueError(
            "Streaming EM produced a covariance that is not positive definite (for instance a "
            "component collapsed onto a few identical rows). Increase reg_covar, scale the "
            "data, use fewer components, or enable float64 with "
            "jax.config.update('jax_enable_x64', True)."
        )
