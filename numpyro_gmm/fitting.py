"""The engine: one kernel over vectorized restarts, initialized, run, polished and scored in
one jitted program.

:func:`fit_gaussian_mixture` runs ONE kernel of :mod:`numpyro_gmm.kernels` (the bare
algorithm, e.g. ``kernel="biglearn_em"`` without standardization or its documented polish;
methods, which add those stages, are recipes of :mod:`numpyro_gmm.pipeline`). Its device
program does, for ``R`` restarts at once: initialize (or take user values), run the kernel
through :mod:`numpyro_gmm.driver`, optionally polish with a second kernel, and score the final
parameters with one more E-step. The host then flags failed restarts, chooses the best one
(:func:`numpyro_gmm.fit_result.choose_restart`) and returns a
:class:`~numpyro_gmm.fit_result.FitResult`; warnings are the pipeline's.

**Several devices.** With ``mesh`` (or data given as :class:`~numpyro_gmm.parallel.ShardedRows`)
the rows are sharded over the devices of a one-axis mesh. The initialization runs as one
global program on the real rows (XLA partitions it; k-means++ and k-means read rows across
devices), then the loop, the polish and the final scoring run inside ``jax.shard_map`` with a
sharded :class:`~numpyro_gmm.mixture.chunking.RowPlan` in their static configuration: every
sum over rows is a per-device chunked sum followed by a ``lax.psum``, and every device takes
the same M-step. The result equals the single-device fit up to float reassociation.
"""

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from numpyro_gmm import driver
from numpyro_gmm._types import Array, CovarianceType
from numpyro_gmm.fit_result import FitResult, Restarts, choose_restart, last_values
from numpyro_gmm.kernels import get_kernel
from numpyro_gmm.mixture.chunking import RowPlan, default_chunk_size, n_rows
from numpyro_gmm.mixture.covariance import check_covariance_type, is_matrix_type
from numpyro_gmm.mixture.estep import component_log_prob, sufficient_statistics
from numpyro_gmm.mixture.init import initialize
from numpyro_gmm.mixture.params import GMMParams, covariances_from_precisions_cholesky
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior
from numpyro_gmm.parallel import DATA_AXIS, ShardedRows, shard_rows
from numpyro_gmm.progress import Every, report

__all__ = [
    "InitialValues",
    "as_rng_key",
    "fit_gaussian_mixture",
    "log_joint",
    "weighted_log_prob",
]


def as_rng_key(rng_key: Any) -> jax.Array:
    """A JAX PRNG key from a key or any integer (Python or numpy)."""
    if isinstance(rng_key, int | np.integer):
        return jax.random.key(int(rng_key))
    if isinstance(rng_key, jax.Array | np.ndarray):
        if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
            return rng_key
        if rng_key.shape == (2,) and rng_key.dtype == np.uint32:  # a raw jax.random.PRNGKey
            return jax.random.wrap_key_data(rng_key)
        if rng_key.shape == () and jnp.issubdtype(rng_key.dtype, jnp.integer):
            return jax.random.key(int(rng_key))
    raise TypeError(
        f"rng_key must be an integer seed or a JAX PRNG key (jax.random.key(0)); got {rng_key!r}."
    )


def restart_keys(rng_key: Any, num_restarts: int, first: int = 0) -> jax.Array:
    """Keys of restarts ``first .. first + num_restarts - 1``: ``fold_in(key, r)``, so restart
    ``r`` starts from the same point whatever the number of restarts, and more restarts never
    give a worse best one."""
    key = as_rng_key(rng_key)
    return jax.vmap(lambda r: jax.random.fold_in(key, r))(first + jnp.arange(num_restarts))


class InitialValues(NamedTuple):
    """User-supplied initial values; ``None`` fields come from the init method.

    Attributes
    ----------
    weights : Array (K,) or None
    means : Array (K, D) or None
    precisions_cholesky : Array or None
        Upper Cholesky factors of the precisions, shaped per covariance type.
    """

    weights: Array | None = None
    means: Array | None = None
    precisions_cholesky: Array | None = None

    @property
    def complete(self) -> bool:
        """Every value is given."""
        return all(value is not None for value in self)

    @property
    def empty(self) -> bool:
        """No value is given."""
        return all(value is None for value in self)


class _Config(NamedTuple):
    """Static configuration: one compilation per distinct value (and per shapes/dtype).

    ``max_iter`` itself is a run-time value; only the length of the objective trace it fills
    (:func:`trace_capacity`) is static, so neighbouring values share one program.
    """

    n_components: int
    covariance_type: CovarianceType
    init_params: str
    trace_length: int
    rows: RowPlan
    kernel: str = "em"
    options: tuple[tuple[str, Any], ...] = ()
    polish_iter: int = 0
    polish_kernel: str = "em"
    polish_options: tuple[tuple[str, Any], ...] = ()
    init_rows: RowPlan | None = None
    padded_rows: bool = False


class _Sizes(NamedTuple):
    """The problem's real size inside a padded program (traced: one program per bucket).

    Attributes
    ----------
    n_components : Array, int32
        Components of the model; the program's others are padding (zero weight).
    n_samples : Array, int32
        Real rows of ``x``; with ``_Config.padded_rows`` the rows past it are padding.
    """

    n_components: Array
    n_samples: Array


def _rows(sizes: _Sizes, config: _Config) -> RowPlan:
    """The row plan inside the program: padded rows are masked by the traced row count."""
    if config.padded_rows:
        return config.rows._replace(n_samples=sizes.n_samples)
    return config.rows


def _initial_params(key, x, sizes, initial: InitialValues, reg_covar, config) -> GMMParams:
    if initial.complete:
        return GMMParams(*initial)
    params = initialize(
        key,
        x,
        config.n_components,
        config.init_params,
        config.covariance_type,
        reg_covar,
        config.init_rows or _rows(sizes, config),
        sizes.n_components,
    )
    pairs = zip(initial, params, strict=True)
    return GMMParams(*(computed if given is None else given for given, computed in pairs))


def _step_fn(kernel: str, options, reg_covar, prior, rows: RowPlan, config: _Config):
    return get_kernel(kernel).build_kernel(
        config.covariance_type, reg_covar, rows, prior, **dict(options)
    )


def _start(keys, x, sizes, initial, reg_covar, previous, config: _Config) -> driver.RunState:
    kernel = get_kernel(config.kernel)

    def start_one(key):
        params = _initial_params(key, x, sizes, initial, reg_covar, config)
        return driver.init_run_state(
            kernel.init(params), config.trace_length, x.dtype, objective=previous
        )

    return jax.vmap(start_one)(keys)


def _advance(keys, x, sizes, run_states, stop_at, tol, reg_covar, prior, config: _Config):
    rows = _rows(sizes, config)
    return driver.advance_restarts(
        keys,
        _step_fn(config.kernel, config.options, reg_covar, prior, rows, config),
        run_states,
        x,
        stop_at=stop_at,
        tol=tol[0],
        objective_scale=1.0 / n_rows(x, rows),
    )


class _Final(NamedTuple):
    """Per-restart outcome after the kernel's loop and the optional polish."""

    params: GMMParams
    objective: Array
    counts: Array
    covariances: Array
    polish: driver.RunState | None


def _polish(keys, x, rows, params: GMMParams, max_iter, tol, reg_covar, prior, config: _Config):
    """A few steps of the polish kernel from every restart's parameters, in the same program."""
    kernel = get_kernel(config.polish_kernel)
    step = _step_fn(config.polish_kernel, config.polish_options, reg_covar, prior, rows, config)
    start = jax.vmap(lambda p: driver.init_run_state(kernel.init(p), config.polish_iter, x.dtype))
    return driver.advance_restarts(
        jax.vmap(lambda key: jax.random.fold_in(key, max_iter))(keys),
        step,
        start(params),
        x,
        stop_at=config.polish_iter,
        tol=tol[1],
        objective_scale=1.0 / n_rows(x, rows),
    )


def _score(x, params: GMMParams, prior, covariance_type, rows) -> tuple[Array, Array]:
    """Log joint of ``params`` (log-likelihood of ``x`` plus the log prior) and the counts."""
    stats = sufficient_statistics(x, params, covariance_type, rows)
    objective = stats.log_likelihood
    if prior is not None:
        objective = objective + log_prior(params, prior, covariance_type)
    return objective, stats.counts


def _finish(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior, config: _Config) -> _Final:
    rows = _rows(sizes, config)
    params = jax.vmap(get_kernel(config.kernel).get_params)(run_states.kernel_state)
    polish = None
    if config.polish_iter:
        polish = _polish(keys, x, rows, params, max_iter, tol, reg_covar, prior, config)
        params = jax.vmap(get_kernel(config.polish_kernel).get_params)(polish.kernel_state)

    def score_one(params: GMMParams):
        objective, counts = _score(x, params, prior, config.covariance_type, rows)
        covariances = covariances_from_precisions_cholesky(
            params.precisions_cholesky, config.covariance_type
        )
        return objective, counts, covariances

    return _Final(params, *jax.vmap(score_one)(params), polish)


class _Programs(NamedTuple):
    """The compiled pieces of a fit, for one data layout (static configuration closed over).

    ``start(keys, x, sizes, initial, reg_covar, previous)``, ``advance(keys, x, sizes,
    run_states, stop_at, tol, reg_covar, prior)``, ``finish(keys, x, sizes, run_states,
    max_iter, tol, reg_covar, prior)``, and ``fit(keys, x, sizes, initial, max_iter, tol,
    reg_covar, prior, previous)`` for all of them at once.
    """

    start: Any
    advance: Any
    finish: Any
    fit: Any


def _fit(keys, x, sizes, initial, max_iter, tol, reg_covar, prior, previous, config: _Config):
    """Initialize, run, polish and score every restart."""
    run_states = _start(keys, x, sizes, initial, reg_covar, previous, config)
    run_states = _advance(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior, config)
    final = _finish(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior, config)
    return run_states, final


def trace_capacity(max_iter: int) -> int:
    """Length of the objective trace compiled for ``max_iter`` steps: the next power of two
    (at least 16), so a sweep over ``max_iter`` or repeated warm starts reuse one program."""
    if max_iter <= 0:
        return 0
    return max(16, 1 << (int(max_iter) - 1).bit_length())


# XLA's optimizing back end (LLVM at -O2) spends about twice as long compiling a fit as at
# level 0, which runs each step about 2.4x slower (N=200000, D=16, K=16). Fits whose whole
# loop costs less than this many multiply-adds compile at level 0: compilation then dominates
# their time, and the slower loop costs them well under the ~1 s saved.
_QUICK_COMPILE_WORK = 2e8
# Padding to a bucket costs up to 8x the work of K = 1 and 2x that of the rows; it pays while
# one program serving a sweep over K, folds and restarts saves more than the work it adds.
_PADDING_WORK = 2e9
_QUICK_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0}


def _work(n_samples, n_features, n_components, covariance_type, steps) -> float:
    """Multiply-adds of ``steps`` EM steps, about ``N K D D_eff`` each (``D_eff = D`` for
    full and tied covariances, 1 otherwise)."""
    per_feature = n_features if is_matrix_type(covariance_type) else 1
    return float(n_samples) * n_components * n_features * per_feature * max(steps, 1)


def compiles_quickly(
    n_samples: int, n_features: int, n_components: int, covariance_type: str, steps: int
) -> bool:
    """Whether a fit of this size compiles at XLA's level 0 (see ``_QUICK_COMPILE_WORK``);
    ``steps`` counts every restart's iterations."""
    work = _work(n_samples, n_features, n_components, covariance_type, steps)
    return work < _QUICK_COMPILE_WORK


def _jit_programs(compiler_options=None) -> _Programs:
    def jit(fn):
        return jax.jit(fn, static_argnames="config", compiler_options=compiler_options)

    return _Programs(start=jit(_start), advance=jit(_advance), finish=jit(_finish), fit=jit(_fit))


_OPTIMIZED_PROGRAMS = _jit_programs()
_QUICK_PROGRAMS = _jit_programs(_QUICK_COMPILE_OPTIONS)


def _single_device_programs(config: _Config, quick: bool) -> _Programs:
    programs = _QUICK_PROGRAMS if quick else _OPTIMIZED_PROGRAMS
    return _Programs(*(functools.partial(program, config=config) for program in programs))


def component_capacity(n_components: int) -> int:
    """Components compiled for a padded fit of ``n_components``: the next power of two, at
    least 8 (a sweep over K = 1..8 compiles one program per covariance type)."""
    return max(8, 1 << (int(n_components) - 1).bit_length())


def row_capacity(n_samples: int) -> int:
    """Rows compiled for a padded fit of ``n_samples``: the next power of two, at least 64
    (cross-validation folds of one data set share a program)."""
    return max(64, 1 << (int(n_samples) - 1).bit_length())


class _Layout(NamedTuple):
    """Shapes a single-device fit is compiled for, whether it compiles at level 0, and how
    many restarts one program call runs."""

    n_components: int
    n_samples: int
    quick: bool
    restart_width: int


def _layout(
    n_samples: int,
    n_features: int,
    n_components: int,
    covariance_type: str,
    steps: int,
    n_restarts: int,
    paddable: bool,
) -> _Layout:
    """Small fits (``_PADDING_WORK``), where compilation matters, are padded (where the kernel
    allows: plain maximum-likelihood EM) to :func:`component_capacity` components and
    :func:`row_capacity` rows, with zero-weight components and zero-weight rows, so that
    sweeps over K and cross-validation folds reuse programs; the padded fit's result equals
    the unpadded one's. Padded fits also run their restarts one at a time through one
    program, so ``n_init`` compiles nothing new, each restart stops at its own convergence,
    and restart ``r`` gives the same bits whatever the number of restarts. Large fits run
    their own shapes, all restarts vectorized in one call. The smallest fits
    (``_QUICK_COMPILE_WORK``) compile at XLA's level 0. ``steps`` counts one restart's
    iterations."""
    total_steps = steps * n_restarts
    if paddable:
        n_padded, k_padded = row_capacity(n_samples), component_capacity(n_components)
        shape = (n_padded, n_features, k_padded, covariance_type, total_steps)
        if _work(*shape) < _PADDING_WORK:
            return _Layout(k_padded, n_padded, compiles_quickly(*shape), 1)
    shape = (n_samples, n_features, n_components, covariance_type, total_steps)
    return _Layout(n_components, n_samples, compiles_quickly(*shape), n_restarts)


def _padded_rows(x: Array, n_rows: int) -> Array:
    """``x`` with copies of its first row appended up to ``n_rows`` rows (zero weight in the
    program; copies of a real row keep every padded term finite)."""
    n_samples = x.shape[0]
    if n_rows == n_samples:
        return x
    host = np.asarray(x)
    padding = np.broadcast_to(host[:1], (n_rows - n_samples, host.shape[1]))
    return jax.device_put(np.concatenate([host, padding]))


def _padded_initial(
    initial: InitialValues | None, n_components: int, covariance_type: str, dtype
) -> InitialValues:
    """User initial values as ``dtype`` arrays, padded to ``n_components`` components with
    inactive ones (weight 0, mean 0, unit precision)."""
    initial = InitialValues() if initial is None else initial
    values = [None if v is None else np.asarray(v, dtype) for v in initial]
    weights, means, factors = values
    given = next((v.shape[0] for v in (weights, means) if v is not None), None)
    if given is None and factors is not None and covariance_type != "tied":
        given = factors.shape[0]
    extra = 0 if given is None else n_components - given
    if extra > 0:
        if weights is not None:
            weights = np.concatenate([weights, np.zeros(extra, dtype)])
        if means is not None:
            means = np.concatenate([means, np.zeros((extra, means.shape[1]), dtype)])
        if factors is not None and covariance_type != "tied":
            unit = np.ones((extra, *factors.shape[1:]), dtype)
            if covariance_type == "full":
                unit = np.broadcast_to(np.eye(factors.shape[-1], dtype=dtype), unit.shape)
            factors = np.concatenate([factors, unit])
    # device_put is a transfer; jnp.asarray would compile a small program per shape.
    values = (weights, means, factors)
    return InitialValues(*(None if v is None else jax.device_put(v) for v in values))


def _real_components(final: _Final, n_components: int, covariance_type: str) -> _Final:
    """Drop a padded program's inactive components from every restart's outcome."""
    if final.counts.shape[-1] == n_components:
        return final
    per_component = covariance_type != "tied"

    def take(leaf, indexed=True):
        return leaf[:, :n_components] if indexed else leaf

    params = GMMParams(
        take(final.params.weights),
        take(final.params.means),
        take(final.params.precisions_cholesky, per_component),
    )
    return final._replace(
        params=params,
        counts=take(final.counts),
        covariances=take(final.covariances, per_component),
    )


def _data_parallel(fn, mesh: Mesh, n_args: int):
    """``jit(shard_map(fn))`` with the rows of the 2nd argument sharded, the rest replicated."""
    in_specs = [PartitionSpec()] * n_args
    in_specs[1] = PartitionSpec(DATA_AXIS, None)
    return jax.jit(
        jax.shard_map(fn, mesh=mesh, in_specs=tuple(in_specs), out_specs=PartitionSpec())
    )


@functools.lru_cache(maxsize=16)
def _sharded_programs(config: _Config, mesh: Mesh) -> _Programs:
    """Programs over row-sharded, padded data (``config.rows`` is a sharded plan)."""
    n_samples = config.rows.n_samples

    def start(keys, x, sizes, initial, reg_covar, previous):
        # The init reads the real rows as one global array (k-means++ picks rows anywhere).
        return _start(keys, x[:n_samples], sizes, initial, reg_covar, previous, config)

    def advance(keys, x, sizes, run_states, stop_at, tol, reg_covar, prior):
        return _advance(keys, x, sizes, run_states, stop_at, tol, reg_covar, prior, config)

    def finish(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior):
        return _finish(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior, config)

    def run(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior):
        run_states = _advance(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior, config)
        final = _finish(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior, config)
        return run_states, final

    start = jax.jit(start)
    run = _data_parallel(run, mesh, 8)

    def fit(keys, x, sizes, initial, max_iter, tol, reg_covar, prior, previous):
        run_states = start(keys, x, sizes, initial, reg_covar, previous)
        return run(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior)

    return _Programs(
        start=start,
        advance=_data_parallel(advance, mesh, 8),
        finish=_data_parallel(finish, mesh, 8),
        fit=fit,
    )


def _run_with_progress(
    programs: _Programs,
    keys,
    x,
    sizes,
    initial,
    max_iter,
    tol,
    reg_covar,
    prior,
    previous,
    every: Every,
    batch: tuple[int, int] | None = None,
):
    """Run the same loop in segments, reporting when ``every`` says a line is due, and a
    last line when the loop ends.

    ``batch = (first, total)``: these keys are restarts ``first + 1 ..`` of ``total`` (a fit
    run in batches of restarts).
    """
    started = time.perf_counter()
    run_states = programs.start(keys, x, sizes, initial, reg_covar, previous)
    first, n_restarts = (0, keys.shape[0]) if batch is None else batch
    last = first + keys.shape[0]
    if batch is None:
        which = f"{n_restarts} restart(s)"
    elif last == first + 1:
        which = f"restart {last}/{n_restarts}"
    else:
        which = f"restarts {first + 1}-{last} of {n_restarts}"
    report(f"Initialized {which} in {time.perf_counter() - started:.2f} s")
    throttle = every.throttle()
    stop_at, steps, pace = 0, 0, None
    while stop_at < max_iter:
        steps = every.segment(steps, pace)
        stop_at = min(stop_at + steps, max_iter)
        segment_started = time.perf_counter()
        run_states = programs.advance(keys, x, sizes, run_states, stop_at, tol, reg_covar, prior)
        n_iter, objective, done = jax.device_get(
            (run_states.n_iter, run_states.objective, run_states.converged | run_states.failed)
        )
        pace = (time.perf_counter() - segment_started) / steps
        finished = bool(done.all()) or stop_at >= max_iter
        line = (
            f"Iteration {int(n_iter.max())}: best per-sample objective "
            f"{np.nanmax(objective):.6g}, {first + int(done.sum())}/{n_restarts} restart(s) "
            f"done, {time.perf_counter() - started:.1f} s"
        )
        if finished:
            # The loop's summary line, whether or not a periodic line was due.
            converged = int(np.sum(jax.device_get(run_states.converged)))
            report(f"{line}; {which}: {converged} converged")
            break
        if throttle.due():
            report(line)
    final = programs.finish(keys, x, sizes, run_states, max_iter, tol, reg_covar, prior)
    return run_states, final


def _run_in_batches(run_batch, rng_key, n_restarts: int, width: int):
    """``run_batch(batch_keys, (first, total))`` over consecutive batches of ``width``
    restarts (:func:`restart_keys`), gathered on the host as if one call had run them all."""
    if width >= n_restarts:
        return jax.device_get(run_batch(restart_keys(rng_key, n_restarts), None))
    pieces = []
    for first in range(0, n_restarts, width):
        keys = restart_keys(rng_key, min(width, n_restarts - first), first)
        pieces.append(jax.device_get(run_batch(keys, (first, n_restarts))))
    return jax.tree.map(lambda *leaves: np.concatenate(leaves), *pieces)


def cast_prior(prior: GaussianMixturePrior | None, dtype) -> GaussianMixturePrior | None:
    """``prior`` with every hyperparameter as a ``dtype`` array."""
    if prior is None:
        return None
    return GaussianMixturePrior(*(None if v is None else jnp.asarray(v, dtype) for v in prior))


def fit_gaussian_mixture(
    x: Array | ShardedRows,
    n_components: int,
    *,
    covariance_type: CovarianceType = "full",
    rng_key: Array | int = 0,
    num_restarts: int = 1,
    init_params: str = "k-means++",
    initial: InitialValues | None = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    prior: GaussianMixturePrior | None = None,
    chunk_size: int | None = None,
    progress_interval: int | Every | None = None,
    kernel: str = "em",
    kernel_options: dict[str, Any] | None = None,
    polish_iter: int = 0,
    polish_kernel: str = "em",
    polish_options: dict[str, Any] | None = None,
    polish_tol: float | None = None,
    mesh: Mesh | None = None,
    previous_objective: float | None = None,
    restart_rule: str = "objective",
) -> FitResult:
    """Run one kernel with vectorized restarts; choose the best restart.

    Inputs are assumed validated (:mod:`numpyro_gmm.validation`); ``x`` is a float array of
    shape (N, D) on the device. Users call :func:`numpyro_gmm.pipeline.fit_mixture` (methods,
    validation, warnings), which calls this.

    Parameters
    ----------
    x : Array, shape (N, D), or ShardedRows
        The data; :class:`~numpyro_gmm.parallel.ShardedRows` are already row-sharded over
        their mesh (the multi-host path).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    rng_key : PRNGKey or int
        Restart ``r`` uses ``split(rng_key, R)[r]`` for its initialization.
    num_restarts : int
        Number of restarts ``R``, run as one vmapped program.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
    initial : InitialValues, optional
        User values that replace the init method's (for every restart).
    max_iter, tol : int, float
        Stop when the per-sample objective changes by less than ``tol``, or after
        ``max_iter`` steps.
    reg_covar : float
        Added to the diagonal of every covariance.
    prior : GaussianMixturePrior, optional
        Conjugate priors (MAP-EM); ``None`` is maximum likelihood.
    chunk_size : int, optional
        Rows per E-step chunk; by default about ``2**20 / (K D)``.
    progress_interval : int or Every, optional
        If set, report progress on stderr every that many iterations, or as the
        :class:`~numpyro_gmm.progress.Every` says (e.g. ``Every(seconds=1.0)``).
    kernel : str
        A kernel module of :mod:`numpyro_gmm.kernels` (``"em"`` by default).
    kernel_options : dict, optional
        Keyword options of the kernel's ``build_kernel`` (static: one compilation each).
    polish_iter : int
        After the kernel's loop, at most this many steps (``polish_tol``) of the polish kernel
        from every restart's parameters, before scoring and selection.
    polish_kernel, polish_options : str, dict
        The polish kernel (plain (MAP-)EM by default) and its options.
    polish_tol : float, optional
        Convergence threshold of the polish (default ``tol``).
    previous_objective : float, optional
        Per-sample objective the first step's change is measured from (a warm start);
        ``None`` (``-inf``) for a fresh start.
    restart_rule : {"objective", "lower_bound"}
        The best restart has the highest log joint of its returned parameters, or (as
        scikit-learn chooses) the highest objective entering its last iteration.
    mesh : Mesh, optional
        Data parallelism over the devices of a one-axis mesh
        (:func:`numpyro_gmm.parallel.data_mesh`). ``None``: one device (or the mesh of
        ``ShardedRows``).

    Returns
    -------
    FitResult
    """
    covariance_type = check_covariance_type(covariance_type)
    sharded = mesh is not None or isinstance(x, ShardedRows)
    if sharded:
        x = shard_rows(x, x.mesh if mesh is None else mesh)
        n_samples, n_features = x.n_samples, x.n_features
        layout = _Layout(n_components, n_samples, False, num_restarts)
    else:
        n_samples, n_features = x.shape
        paddable = kernel == "em" and not polish_iter and prior is None
        layout = _layout(
            n_samples,
            n_features,
            n_components,
            covariance_type,
            max_iter + polish_iter,
            num_restarts,
            paddable,
        )
    if chunk_size is None:
        chunk_size = default_chunk_size(layout.n_samples, layout.n_components, n_features)
    chunk_size = int(min(chunk_size, layout.n_samples))
    if sharded:
        rows, init_rows = RowPlan(chunk_size, DATA_AXIS, n_samples), RowPlan(chunk_size)
    else:
        rows, init_rows = RowPlan(chunk_size), None
    config = _Config(
        layout.n_components,
        covariance_type,
        init_params,
        trace_capacity(max_iter),
        rows,
        kernel,
        tuple(sorted((kernel_options or {}).items())),
        polish_iter,
        polish_kernel,
        tuple(sorted((polish_options or {}).items())),
        init_rows,
        padded_rows=layout.n_samples > n_samples,
    )
    dtype = x.dtype
    initial = _padded_initial(initial, layout.n_components, covariance_type, dtype)
    prior = cast_prior(prior, dtype)
    sizes = _Sizes(jnp.asarray(n_components, jnp.int32), jnp.asarray(n_samples, jnp.int32))
    # (loop tolerance, polish tolerance), traced: new values do not recompile.
    tol = jnp.asarray([tol, tol if polish_tol is None else polish_tol], dtype)
    reg_covar = jnp.asarray(reg_covar, dtype)
    # Traced (-inf: a fresh start), so a warm start does not compile another program.
    previous = jnp.asarray(-np.inf if previous_objective is None else previous_objective, dtype)
    if sharded:
        programs = _sharded_programs(config, x.mesh)
        x = x.array
    else:
        programs = _single_device_programs(config, layout.quick)
        x = _padded_rows(x, layout.n_samples)

    def run_batch(batch_keys, batch):
        if progress_interval:
            return _run_with_progress(
                programs,
                batch_keys,
                x,
                sizes,
                initial,
                max_iter,
                tol,
                reg_covar,
                prior,
                previous,
                Every.of(progress_interval),
                batch,
            )
        max_iter_value = jnp.asarray(max_iter, jnp.int32)
        return programs.fit(
            batch_keys, x, sizes, initial, max_iter_value, tol, reg_covar, prior, previous
        )

    run_states, final = _run_in_batches(run_batch, rng_key, num_restarts, layout.restart_width)
    return _collect(
        run_states,
        _real_components(final, n_components, covariance_type),
        config,
        n_samples=n_samples,
        max_iter=max_iter,
        restart_rule=restart_rule,
    )


def _positive_definite(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Per restart: are all its covariances positive definite (checked in float64)?"""
    covariances = np.asarray(covariances, np.float64)
    n_restarts = covariances.shape[0]
    finite = np.isfinite(covariances.reshape(n_restarts, -1)).all(axis=1)
    # A failed restart's non-finite matrices would stop the eigenvalue solver.
    covariances = np.where(finite.reshape((-1,) + (1,) * (covariances.ndim - 1)), covariances, 0.0)
    if is_matrix_type(covariance_type):
        d = covariances.shape[-1]
        smallest = np.linalg.eigvalsh(covariances.reshape(-1, d, d)).min(axis=-1)
    else:
        smallest = covariances
    return finite & np.reshape(smallest > 0, (n_restarts, -1)).all(axis=1)


def _collect(
    run_states,
    final: _Final,
    config: _Config,
    *,
    n_samples: int,
    max_iter: int,
    restart_rule: str,
) -> FitResult:
    """Flag failed restarts, choose the best, and gather everything as numpy."""
    # The trace is compiled longer than max_iter (trace_capacity); its tail is never written.
    run_states = run_states._replace(trace=run_states.trace[:, :max_iter])
    # A covariance rebuilt in float32 from a nearly singular precision (N < D) can have a
    # negative eigenvalue that the loop's Cholesky did not see: that restart failed too.
    objective = np.asarray(final.objective, np.float64)
    failed = (
        np.asarray(run_states.failed)
        | ~_positive_definite(final.covariances, config.covariance_type)
        | ~np.isfinite(objective)
    )
    converged = np.asarray(run_states.converged)
    n_iter = np.asarray(run_states.n_iter, np.int64)
    polish_trace = None
    if final.polish is not None:
        failed = failed | np.asarray(final.polish.failed)
        converged = converged | np.asarray(final.polish.converged)
        n_iter = n_iter + np.asarray(final.polish.n_iter, np.int64)
        polish_trace = np.asarray(final.polish.trace)
    restarts = Restarts(objective=objective, n_iter=n_iter, converged=converged, failed=failed)
    score = last_values(run_states.trace) if restart_rule == "lower_bound" else None
    best = choose_restart(restarts, score)
    params = GMMParams(*(np.asarray(leaf[best]) for leaf in final.params))
    return FitResult(
        params=params,
        objective=float(objective[best]),
        best_restart=best,
        restarts=restarts,
        trace=np.asarray(run_states.trace),
        method=config.kernel,
        covariance_type=config.covariance_type,
        covariances=np.asarray(final.covariances[best]),
        counts=np.asarray(final.counts[best]),
        polish_trace=polish_trace,
        n_samples=int(n_samples),
    )


_PREDICT_CHUNK_ROWS = 1 << 16


@functools.partial(jax.jit, static_argnames="covariance_type")
def _component_log_prob_program(x, params, covariance_type):
    return component_log_prob(x, params, covariance_type)


def weighted_log_prob(
    x: np.ndarray, params: GMMParams, covariance_type: CovarianceType
) -> np.ndarray:
    """``log pi_k + log N(x_n | mu_k, Sigma_k)`` for every row, shape (N, K), as numpy.

    Rows go through the device in fixed-size chunks (the last one padded), so memory stays
    bounded; chunks of :func:`row_capacity` rows and parameters padded to
    :func:`component_capacity` components (zero weight, sliced off) let one compilation serve
    every ``N`` and ``K`` of a bucket.
    """
    covariance_type = check_covariance_type(covariance_type)
    n_samples, n_components = x.shape[0], params.weights.shape[0]
    rows = min(row_capacity(n_samples), _PREDICT_CHUNK_ROWS)
    capacity = component_capacity(n_components)
    initial = _padded_initial(InitialValues(*params), capacity, covariance_type, x.dtype)
    params = GMMParams(*initial)
    pieces = []
    for start in range(0, n_samples, rows):
        chunk = x[start : start + rows]
        valid = chunk.shape[0]
        if valid < rows:
            chunk = np.concatenate([chunk, np.zeros((rows - valid, x.shape[1]), x.dtype)])
        log_prob = _component_log_prob_program(jax.device_put(chunk), params, covariance_type)
        pieces.append(np.asarray(log_prob)[:valid, :n_components])
    return np.concatenate(pieces)


@functools.partial(jax.jit, static_argnames=("covariance_type", "rows"))
def _log_joint_program(x, params, prior, covariance_type, rows):
    return _score(x, params, prior, covariance_type, rows)[0]


@functools.lru_cache(maxsize=16)
def _sharded_log_joint_program(covariance_type, rows: RowPlan, mesh: Mesh):
    def value(params, x, prior):
        return _score(x, params, prior, covariance_type, rows)[0]

    program = _data_parallel(value, mesh, 3)
    return lambda x, params, prior: program(params, x, prior)


def log_joint(
    x: Array | ShardedRows,
    params: GMMParams,
    covariance_type: CovarianceType,
    prior: GaussianMixturePrior | None = None,
    *,
    mesh: Mesh | None = None,
) -> float:
    """Log-likelihood of ``x`` plus the log prior of ``params`` (the engine's objective).

    With ``mesh`` (or ``ShardedRows``) the sum over rows runs data-parallel, as in
    :func:`fit_gaussian_mixture`.
    """
    covariance_type = check_covariance_type(covariance_type)
    sharded = mesh is not None or isinstance(x, ShardedRows)
    if sharded:
        x = shard_rows(x, x.mesh if mesh is None else mesh)
    n_samples, n_features = (x.n_samples, x.n_features) if sharded else x.shape
    chunk_size = default_chunk_size(n_samples, params.means.shape[0], n_features)
    params = GMMParams(*(jnp.asarray(leaf, x.dtype) for leaf in params))
    prior = cast_prior(prior, x.dtype)
    if sharded:
        rows = RowPlan(chunk_size, DATA_AXIS, n_samples)
        program = _sharded_log_joint_program(covariance_type, rows, x.mesh)
        return float(program(x.array, params, prior))
    return float(_log_joint_program(x, params, prior, covariance_type, RowPlan(chunk_size)))
