"""EM for data that do not fit in memory: exact out-of-core EM and stepwise (online) EM.

The data come as a stream of row blocks from a *source*: a numpy array or ``np.memmap``, an
``xarray.DataArray`` (lazily backed by netCDF or zarr: blocks are read with ``isel``), a
callable that returns a fresh iterable of ``(n_i, D)`` arrays at every pass, or an iterable of
such arrays (re-iterable for several passes; a one-shot iterator allows a single pass, the
initialization's rows included). Blocks of any size are re-cut into blocks of exactly
``block_size`` rows (the last one padded with zero-weight rows), so the device program
compiles once; on the device each block is summed in chunks of ``chunk_size`` rows, so peak
memory is about one block plus ``O(chunk_size * K * D)``, whatever ``N``.

Two algorithms, both (MAP-)EM with the package's closed-form M-step (the equations are in
:mod:`numpyro_gmm.streaming.passes`):

**Exact EM** (``method="exact"``): each pass accumulates the sufficient statistics of every
block at the current parameters, then takes one M-step: full-batch EM computed out of core,
the same iterates up to the order of floating-point additions.

**Stepwise EM** (``method="stepwise"``; Cappé & Moulines 2009, Liang & Klein 2009): after
each block the running per-point statistics move towards the block's with step
``gamma_t = (t + t0)^(-kappa)`` (defaults ``kappa = 0.6``, ``t0 = 1``), and an M-step runs on
them. Blocks of an indexable source are visited in a random order at every stepwise pass
(``shuffle``), since stepwise EM assumes exchangeable blocks (a file sorted by cluster would
otherwise drag the fit from one cluster to the next).

After ``stepwise_passes`` stepwise passes, up to ``max_passes`` exact passes polish the fit and
stop when the per-point log joint changes by less than ``tol`` (0 exact passes: the stepwise
estimate is returned as it is). **Documented tolerance:** with its exact passes, stepwise EM
ends within ``1e-3`` nats per point of full-batch EM's objective from the same initial
parameters (tested on well-separated mixtures; both converge to a local optimum, which may
differ on hard problems). The objective convention (the log joint of the parameters entering
the last exact pass; running estimates for stepwise passes) is in
:mod:`numpyro_gmm.streaming.engine`.

Modules
-------
:mod:`~numpyro_gmm.streaming.sources`
    Reading a source as fixed-size blocks (checks, re-cutting, memmap page release,
    replaying a one-shot iterator's initialization sample).
:mod:`~numpyro_gmm.streaming.passes`
    The jitted per-block statistics, the exact M-step and the stepwise update.
:mod:`~numpyro_gmm.streaming.stream`
    :class:`Stream`: a source and the streaming settings.
:mod:`~numpyro_gmm.streaming.engine`
    :func:`run_streamed`: the engine :func:`numpyro_gmm.pipeline.fit_mixture` runs for a
    :class:`Stream`, returning a :class:`~numpyro_gmm.fit_result.FitResult`.
:mod:`~numpyro_gmm.streaming.api`
    :func:`fit_streaming`: validate, wrap the source in a :class:`Stream`, run the pipeline.

Usage::

    result = fit_streaming(np.memmap(path, np.float32, "r").reshape(-1, 16), 16)
    # the same fit, through the pipeline every entry point uses:
    result = fit_mixture(Stream(rows, method="stepwise"), 16, init_params="k-means++")
"""

from numpyro_gmm.streaming.api import fit_streaming
from numpyro_gmm.streaming.engine import run_streamed
from numpyro_gmm.streaming.passes import DEFAULT_KAPPA, DEFAULT_T0, step_sizes
from numpyro_gmm.streaming.stream import DEFAULT_BLOCK_SIZE, Stream

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_KAPPA",
    "DEFAULT_T0",
    "Stream",
    "fit_streaming",
    "run_streamed",
    "step_sizes",
]
