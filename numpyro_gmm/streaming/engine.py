"""The streaming engine of the pipeline: initialize, stream the passes, build the FitResult.

:func:`run_streamed` is what :func:`numpyro_gmm.pipeline.fit_mixture` runs for a
:class:`~numpyro_gmm.streaming.stream.Stream`. It initializes from the first ``init_rows``
rows of a (shuffled) pass unless complete initial values are given, runs
``stepwise_passes`` stepwise passes (``method="stepwise"``), then up to ``max_iter`` exact
passes that stop when the per-point log joint changes by less than ``tol`` (0 exact passes:
the stepwise estimate is returned as it is).

**Objective convention.** As in the rest of the package, the objective of an exact pass is
the log joint of the parameters that *entered* it; the reported ``objective`` is that of the
last exact pass. A stepwise pass reports the running per-point log-likelihood, the
``log_likelihood`` entry of the running statistics (each block's under the parameters
current when it was read, averaged with the same step sizes): an estimate, not an objective
value.

**One-shot sources.** An iterator can be read once: the initialization's blocks are replayed
in front of the rest of the first pass, and a fit that may need more than one pass is refused
before anything is read.
"""

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_gmm.fit_result import FitResult, Restarts
from numpyro_gmm.fitting import InitialValues
from numpyro_gmm.mixture.chunking import default_chunk_size
from numpyro_gmm.mixture.init import INIT_METHODS
from numpyro_gmm.mixture.params import GMMParams
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.progress import Throttle, report
from numpyro_gmm.streaming import passes
from numpyro_gmm.streaming.sources import ONE_SHOT_ADVICE, _fixed_blocks, _Source
from numpyro_gmm.streaming.stream import Stream
from numpyro_gmm.validation import check_prior, working_dtype

__all__ = ["run_streamed"]


def run_streamed(job, options: dict) -> FitResult:
    """Fit ``job.x`` (a :class:`~numpyro_gmm.streaming.stream.Stream`) out of core.

    Parameters
    ----------
    job : numpyro_gmm.pipeline.Job
        ``max_iter`` is the most exact passes and ``tol`` their tolerance; ``num_restarts``
        must be 1. The initialization (``init_params``, ``initial``, ``rng_key``),
        ``reg_covar``, ``prior``, ``covariance_type`` and ``chunk_size`` (rows per on-device
        chunk within a block) are used as in memory.
    options : dict
        Extra method options: streaming takes none (its settings are the Stream's).

    Returns
    -------
    FitResult
        One restart; ``trace`` has one entry per pass, ``n_iter`` counts the passes, and
        ``extras`` holds ``pass_kinds``, ``seconds_per_pass`` and ``stream_method``. No
        warnings are given here (the pipeline gives them).

    Raises
    ------
    ValueError
        For settings streaming cannot honour, and when a covariance stops being positive
        definite.
    """
    stream = job.x
    if not isinstance(stream, Stream):
        raise TypeError(f"Streamed data must be a Stream, got {type(stream).__name__}.")
    _check_job(job, options)
    n_stepwise = stream.n_stepwise_passes
    max_passes = int(job.max_iter)
    source = stream.open()
    if source.one_shot and n_stepwise + max_passes > 1:
        raise ValueError(
            "The source is a one-shot iterator, which can be read only once, and these "
            f"settings need up to {n_stepwise + max_passes} passes ({n_stepwise} stepwise, up "
            f"to {max_passes} exact). Either allow one pass (method='stepwise' with "
            "max_passes=0, or one exact pass), or stream it again: " + ONE_SHOT_ADVICE
        )
    covariance_type = job.covariance_type
    n_components = job.n_components
    block_size = int(stream.block_size)
    init_key, order_key = jax.random.split(job.rng_key)
    order_rng = np.random.default_rng(np.asarray(jax.random.key_data(order_key)).ravel())

    def order(random: bool):
        if not (source.indexable and random and stream.shuffle):
            return None
        return order_rng.permutation(source.n_blocks)

    # As for in-memory fits: float64 only for float64 data with x64 on (unknown for
    # iterables: then float64 whenever x64 is on).
    dtype = working_dtype(source.dtype)
    params, prior = _initialize(job, stream, source, order(True), dtype, init_key)
    n_features = params.means.shape[1]
    chunk_size = job.chunk_size or default_chunk_size(block_size, n_components, n_features)
    chunk_size = int(min(chunk_size, block_size))
    reg = jnp.asarray(job.reg_covar, dtype)
    throttle = Throttle(stream.progress)
    trace, kinds, seconds = [], [], []
    counts = None
    step = 0
    n_samples = source.n_samples

    def blocks(kind: str):
        raw = source.blocks(order(kind == "stepwise"))
        return _fixed_blocks(raw, block_size, n_features, dtype)

    def progress_line(kind, pass_index, n_blocks_done, n_rows_done, started):
        if throttle.due():
            total = f"/{source.n_blocks}" if source.indexable else ""
            elapsed = throttle.elapsed() - started
            report(
                f"pass {pass_index + 1} ({kind}): {n_blocks_done}{total} blocks, "
                f"{n_rows_done / max(elapsed, 1e-9) / 1e6:.2f} M rows/s, "
                f"{throttle.elapsed():.1f} s"
            )

    running = passes.zero_statistics(n_components, n_features, covariance_type, dtype)
    shift = params.means
    for pass_index in range(n_stepwise):
        started = throttle.elapsed()
        n_seen, failed = 0, jnp.zeros((), bool)
        for block_index, (rows, n_valid) in enumerate(blocks("stepwise")):
            scale = n_samples if n_samples is not None else n_seen + n_valid
            gamma = (step + stream.t0) ** (-stream.kappa)
            running, shift, params, finite = passes.stepwise_update(
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
        n_samples = _rows_read(n_seen, source)
        _raise_if_failed(failed)
        trace.append(float(running.log_likelihood))
        kinds.append("stepwise")
        seconds.append(throttle.elapsed() - started)
        counts = np.asarray(running.counts) * n_seen
        if throttle.enabled:
            report(
                f"pass {pass_index + 1} (stepwise) done, {seconds[-1]:.1f} s: stepwise "
                f"average of the blocks' per-point log-likelihood {trace[-1]:.6g} (its first "
                "blocks, from the initial parameters, weigh in; the exact passes score the fit)"
            )

    converged = False
    previous = -np.inf
    objective = trace[-1] * n_samples if trace else -np.inf
    for exact_index in range(max_passes):
        pass_index = n_stepwise + exact_index
        started = throttle.elapsed()
        total = passes.zero_statistics(n_components, n_features, covariance_type, dtype)
        n_seen = 0
        for block_index, (rows, n_valid) in enumerate(blocks("exact")):
            total = passes.accumulate(
                total, jnp.asarray(rows), n_valid, params, covariance_type, chunk_size
            )
            n_seen += n_valid
            progress_line("exact", pass_index, block_index + 1, n_seen, started)
        n_samples = _rows_read(n_seen, source)
        params, _, objective, finite = passes.exact_m_step(
            total, params, reg, prior, covariance_type
        )
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
        converged = abs(trace[-1] - previous) < job.tol
        previous = trace[-1]
        if converged:
            break
    objective = float(objective)
    n_passes = len(trace)
    return FitResult(
        params=GMMParams(*(np.asarray(leaf) for leaf in params)),
        objective=objective,
        best_restart=0,
        restarts=Restarts.single(objective, n_passes, bool(converged)),
        trace=np.asarray(trace, np.float64)[None, :],
        method="em",
        covariance_type=covariance_type,
        covariances=np.asarray(passes.covariances_of(params, covariance_type)),
        counts=counts,
        n_samples=int(n_samples),
        extras={
            "pass_kinds": kinds,
            "seconds_per_pass": seconds,
            "stream_method": stream.method,
        },
    )


def _check_job(job, options: dict) -> None:
    if options:
        raise ValueError(
            f"Unknown option(s) {sorted(options)} for streamed data; streaming EM takes no "
            "method options (its settings are those of Stream(...))."
        )
    if job.num_restarts != 1:
        raise ValueError(
            f"Streaming EM runs a single restart (each restart would cost its own passes over "
            f"the data); got num_restarts={job.num_restarts}. Use num_restarts=1, or fit "
            "several rng_key values and keep the highest objective."
        )
    if job.mesh is not None:
        raise ValueError(
            "Streaming EM runs on one device; fit streamed data without mesh=, or load the "
            "rows and fit them in memory with mesh=."
        )
    if job.progress_interval:
        raise ValueError(
            "Streaming EM reports progress in seconds: set Stream(..., progress=seconds) "
            "instead of progress_interval."
        )
    if isinstance(job.max_iter, bool) or int(job.max_iter) != job.max_iter or job.max_iter < 0:
        raise ValueError(
            f"max_iter (the most exact passes) must be a non-negative integer, got "
            f"{job.max_iter!r}."
        )
    if job.x.n_stepwise_passes + int(job.max_iter) < 1:
        raise ValueError("Nothing to run: give at least one stepwise or exact pass.")
    if not job.initial.complete and job.init_params not in INIT_METHODS:
        raise ValueError(
            f"Unknown init_params {job.init_params!r}; expected one of {INIT_METHODS}."
        )


def _rows_read(n_seen: int, source: _Source) -> int:
    if n_seen == 0:
        hint = " (a one-shot iterator that was already read?)" if source.one_shot else ""
        raise ValueError(f"The source yielded no rows{hint}.")
    return n_seen


def _initialize(job, stream: Stream, source: _Source, order, dtype, key):
    """Initial parameters and the checked prior (cast to ``dtype``).

    The prior is checked as soon as the number of features is known: from complete initial
    values before reading, otherwise after reading the initialization sample and before
    running the initialization on it.
    """
    n_components, covariance_type = job.n_components, job.covariance_type
    initial = InitialValues(*job.initial)
    if initial.complete:
        params = GMMParams(*(jnp.asarray(value, dtype) for value in initial))
        prior = _cast_prior(job, params.means.shape[1], dtype)
        return params, prior
    sample, n_sample = [], 0
    raw = source.sample_blocks(order)
    for rows, n_valid in _fixed_blocks(raw, int(stream.block_size), None, dtype):
        sample.append(rows[:n_valid])
        n_sample += n_valid
        if n_sample >= stream.init_rows:
            break
    if n_sample < n_components:
        raise ValueError(f"The source has {n_sample} rows, fewer than n_components={n_components}.")
    sample = jnp.asarray(np.concatenate(sample))
    prior = _cast_prior(job, sample.shape[1], dtype)
    chunk = default_chunk_size(sample.shape[0], n_components, sample.shape[1])
    params = passes.initialize_program(
        key, sample, n_components, job.init_params, covariance_type, job.reg_covar, chunk
    )
    pairs = zip(initial, params, strict=True)
    params = GMMParams(*(p if v is None else jnp.asarray(v, dtype) for v, p in pairs))
    return params, prior


def _cast_prior(job, n_features: int, dtype) -> GaussianMixturePrior | None:
    if job.prior is None:
        return None
    prior = check_prior(
        job.prior,
        n_components=job.n_components,
        n_features=n_features,
        covariance_type=job.covariance_type,
    )
    return GaussianMixturePrior(*(None if v is None else jnp.asarray(v, dtype) for v in prior))


def _raise_if_failed(failed) -> None:
    if bool(failed):
        raise ValueError(
            "Streaming EM produced a covariance that is not positive definite (for instance a "
            "component collapsed onto a few identical rows). Increase reg_covar, scale the "
            "data, use fewer components, or enable float64 with "
            "jax.config.update('jax_enable_x64', True)."
        )
