"""Array-level Gaussian-mixture fitting: initialization, restarts and selection, jitted once.

``fit_gaussian_mixture`` is the engine under the scikit-learn facade (and, through the NumPyro
bridge, under :func:`numpyro_gmm.fit`). Its device program does, for ``R`` restarts at once:
initialize (or take user values), run the kernel through :mod:`numpyro_gmm.driver`, and score
the final parameters with one more E-step. The host then picks the best restart by that final
log joint, and turns flags into warnings or errors.

**Several devices.** With ``mesh`` (or data given as :class:`~numpyro_gmm.parallel.ShardedRows`)
the rows are sharded over the devices of a one-axis mesh. The initialization runs as one
global program on the real rows (XLA partitions it; k-means++ and k-means read rows across
devices), then the loop, the polish and the final scoring run inside ``jax.shard_map``: every
sum over rows is a per-device chunked sum followed by a ``lax.psum``
(:mod:`numpyro_gmm.mixture.chunking`), and every device takes the same M-step. The result
equals the single-device fit up to float reassociation.
"""

import functools
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from numpyro_gmm import driver
from numpyro_gmm._types import Array, CovarianceType
from numpyro_gmm.kernels import get_kernel
from numpyro_gmm.mixture.chunking import default_chunk_size, n_rows, sharded_rows
from numpyro_gmm.mixture.estep import component_log_prob, sufficient_statistics
from numpyro_gmm.mixture.init import initialize
from numpyro_gmm.mixture.params import GMMParams, covariances_from_precisions_cholesky
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior
from numpyro_gmm.parallel import DATA_AXIS, ShardedRows, shard_rows
from numpyro_gmm.progress import report

__all__ = [
    "ConvergenceWarning",
    "EmptyComponentWarning",
    "InitialValues",
    "FitResult",
    "fit_gaussian_mixture",
    "log_joint",
    "weighted_log_prob",
]


class ConvergenceWarning(UserWarning):
    """The best restart stopped at ``max_iter`` before its objective settled."""


class EmptyComponentWarning(UserWarning):
    """A fitted component explains (almost) no data."""


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


class FitResult(NamedTuple):
    """Host-side result of :func:`fit_gaussian_mixture` (numpy arrays).

    Attributes
    ----------
    params : GMMParams
        Parameters of the best restart.
    covariances : np.ndarray
        Covariances of the best restart, shaped per covariance type.
    objective : float
        Log joint (log-likelihood plus log prior) of ``params``.
    best_restart : int
    counts : np.ndarray, shape (K,)
        Effective number of points per component of the best restart.
    restart_objective : np.ndarray, shape (R,)
        Final log joint of every restart.
    restart_n_iter, restart_converged, restart_failed : np.ndarray, shape (R,)
    trace : np.ndarray, shape (R, max_iter)
        Per-sample objective of every step (NaN after the last), as the method reports it
        for the state that entered the step.
    polish_trace, polish_n_iter : np.ndarray or None
        The same for the EM polish, shapes (R, polish_iter) and (R,), when one ran.
    restart_converged : np.ndarray
        The method's loop converged, or the polish did.
    """

    params: GMMParams
    covariances: np.ndarray
    objective: float
    best_restart: int
    counts: np.ndarray
    restart_objective: np.ndarray
    restart_n_iter: np.ndarray
    restart_converged: np.ndarray
    restart_failed: np.ndarray
    trace: np.ndarray
    polish_trace: np.ndarray | None = None
    polish_n_iter: np.ndarray | None = None


class _Config(NamedTuple):
    """Static configuration: one compilation per distinct value (and per shapes/dtype)."""

    n_components: int
    covariance_type: CovarianceType
    init_method: str
    max_iter: int
    chunk_size: int
    method: str = "em"
    options: tuple[tuple[str, Any], ...] = ()
    polish_iter: int = 0
    polish_method: str = "em"
    polish_options: tuple[tuple[str, Any], ...] = ()


def _initial_params(key, x, initial: InitialValues, reg_covar, config: _Config) -> GMMParams:
    if all(value is not None for value in initial):
        return GMMParams(*initial)
    params = initialize(
        key,
        x,
        config.n_components,
        config.init_method,
        config.covariance_type,
        reg_covar,
        config.chunk_size,
    )
    pairs = zip(initial, params, strict=True)
    return GMMParams(*(computed if given is None else given for given, computed in pairs))


def _step_fn(reg_covar, prior, config: _Config):
    kernel = get_kernel(config.method)
    return kernel.build_kernel(
        config.covariance_type, reg_covar, config.chunk_size, prior, **dict(config.options)
    )


def _start(keys, x, initial, reg_covar, config: _Config) -> driver.RunState:
    kernel = get_kernel(config.method)

    def start_one(key):
        params = _initial_params(key, x, initial, reg_covar, config)
        return driver.init_run_state(kernel.init(params), config.max_iter, x.dtype)

    return jax.vmap(start_one)(keys)


def _advance(keys, x, run_states, stop_at, tol, reg_covar, prior, config: _Config):
    return driver.advance_restarts(
        keys,
        _step_fn(reg_covar, prior, config),
        run_states,
        x,
        stop_at=stop_at,
        tol=tol[0],
        objective_scale=1.0 / n_rows(x),
    )


class _Final(NamedTuple):
    """Per-restart outcome after the method's loop and the optional EM polish."""

    params: GMMParams
    objective: Array
    counts: Array
    covariances: Array
    polish: driver.RunState | None


def _polish(keys, x, params: GMMParams, tol, reg_covar, prior, config: _Config):
    """A few steps of the polish kernel (plain EM by default) from every restart's parameters,
    in the same program."""
    kernel = get_kernel(config.polish_method)
    step = kernel.build_kernel(
        config.covariance_type, reg_covar, config.chunk_size, prior, **dict(config.polish_options)
    )
    start = jax.vmap(lambda p: driver.init_run_state(kernel.init(p), config.polish_iter, x.dtype))
    return driver.advance_restarts(
        jax.vmap(lambda key: jax.random.fold_in(key, config.max_iter))(keys),
        step,
        start(params),
        x,
        stop_at=config.polish_iter,
        tol=tol[1],
        objective_scale=1.0 / n_rows(x),
    )


def _finish(keys, x, run_states, tol, reg_covar, prior, config: _Config) -> _Final:
    params = jax.vmap(get_kernel(config.method).get_params)(run_states.kernel_state)
    polish = None
    if config.polish_iter:
        polish = _polish(keys, x, params, tol, reg_covar, prior, config)
        params = jax.vmap(get_kernel(config.polish_method).get_params)(polish.kernel_state)

    def score_one(params: GMMParams):
        stats = sufficient_statistics(x, params, config.covariance_type, config.chunk_size)
        objective = stats.log_likelihood
        if prior is not None:
            objective = objective + log_prior(params, prior, config.covariance_type)
        covariances = covariances_from_precisions_cholesky(
            params.precisions_cholesky, config.covariance_type
        )
        return objective, stats.counts, covariances

    return _Final(params, *jax.vmap(score_one)(params), polish)


@functools.partial(jax.jit, static_argnames="config")
def _start_program(keys, x, initial, reg_covar, config):
    return _start(keys, x, initial, reg_covar, config)


@functools.partial(jax.jit, static_argnames="config")
def _advance_program(keys, x, run_states, stop_at, tol, reg_covar, prior, config):
    return _advance(keys, x, run_states, stop_at, tol, reg_covar, prior, config)


@functools.partial(jax.jit, static_argnames="config")
def _finish_program(keys, x, run_states, tol, reg_covar, prior, config):
    return _finish(keys, x, run_states, tol, reg_covar, prior, config)


@functools.partial(jax.jit, static_argnames="config")
def _fit_program(keys, x, initial, tol, reg_covar, prior, config):
    """Initialize, run, polish and score every restart in one compiled program."""
    run_states = _start(keys, x, initial, reg_covar, config)
    run_states = _advance(keys, x, run_states, config.max_iter, tol, reg_covar, prior, config)
    return run_states, _finish(keys, x, run_states, tol, reg_covar, prior, config)


class _Programs(NamedTuple):
    """The compiled pieces of a fit, for one data layout (static configuration closed over).

    ``start(keys, x, initial, reg_covar)``, ``advance(keys, x, run_states, stop_at, tol,
    reg_covar, prior)``, ``finish(keys, x, run_states, tol, reg_covar, prior)``, and ``fit(keys,
    x, initial, tol, reg_covar, prior)`` for all of them at once.
    """

    start: Any
    advance: Any
    finish: Any
    fit: Any


def _single_device_programs(config: _Config) -> _Programs:
    return _Programs(
        start=functools.partial(_start_program, config=config),
        advance=functools.partial(_advance_program, config=config),
        finish=functools.partial(_finish_program, config=config),
        fit=functools.partial(_fit_program, config=config),
    )


def _data_parallel(fn, mesh: Mesh, n_samples: int, n_args: int):
    """``jit(shard_map(fn))`` with the rows of the 2nd argument sharded, the rest replicated.

    ``fn`` is traced inside :func:`~numpyro_gmm.mixture.chunking.sharded_rows`, so its sums
    over rows are global; its outputs are replicated.
    """

    def body(*args):
        with sharded_rows(DATA_AXIS, n_samples):
            return fn(*args)

    in_specs = [PartitionSpec()] * n_args
    in_specs[1] = PartitionSpec(DATA_AXIS, None)
    return jax.jit(
        jax.shard_map(body, mesh=mesh, in_specs=tuple(in_specs), out_specs=PartitionSpec())
    )


@functools.lru_cache(maxsize=64)
def _sharded_programs(config: _Config, mesh: Mesh, n_samples: int) -> _Programs:
    """Programs over row-sharded, padded data (cached: one compilation per configuration)."""

    def start(keys, x, initial, reg_covar):
        # The init reads the real rows as one global array (k-means++ picks rows anywhere).
        return _start(keys, x[:n_samples], initial, reg_covar, config)

    def advance(keys, x, run_states, stop_at, tol, reg_covar, prior):
        return _advance(keys, x, run_states, stop_at, tol, reg_covar, prior, config)

    def finish(keys, x, run_states, tol, reg_covar, prior):
        return _finish(keys, x, run_states, tol, reg_covar, prior, config)

    def run(keys, x, run_states, tol, reg_covar, prior):
        run_states = _advance(keys, x, run_states, config.max_iter, tol, reg_covar, prior, config)
        return run_states, _finish(keys, x, run_states, tol, reg_covar, prior, config)

    start = jax.jit(start)
    run = _data_parallel(run, mesh, n_samples, 6)

    def fit(keys, x, initial, tol, reg_covar, prior):
        return run(keys, x, start(keys, x, initial, reg_covar), tol, reg_covar, prior)

    return _Programs(
        start=start,
        advance=_data_parallel(advance, mesh, n_samples, 7),
        finish=_data_parallel(finish, mesh, n_samples, 6),
        fit=fit,
    )


def _run_with_progress(
    programs: _Programs, keys, x, initial, tol, reg_covar, prior, config, interval
):
    """Run the same loop in segments of ``interval`` steps, reporting after each."""
    started = time.perf_counter()
    run_states = programs.start(keys, x, initial, reg_covar)
    n_restarts = keys.shape[0]
    report(f"Initialized {n_restarts} restart(s) in {time.perf_counter() - started:.2f} s")
    stop_at = 0
    while stop_at < config.max_iter:
        stop_at = min(stop_at + interval, config.max_iter)
        run_states = programs.advance(keys, x, run_states, stop_at, tol, reg_covar, prior)
        n_iter, objective, done = jax.device_get(
            (run_states.n_iter, run_states.objective, run_states.converged | run_states.failed)
        )
        report(
            f"Iteration {int(n_iter.max())}: best per-sample objective {np.nanmax(objective):.6g}, "
            f"{int(done.sum())}/{n_restarts} restart(s) done, "
            f"{time.perf_counter() - started:.1f} s"
        )
        if done.all():
            break
    return run_states, programs.finish(keys, x, run_states, tol, reg_covar, prior)


def _cast_prior(prior: GaussianMixturePrior, dtype) -> GaussianMixturePrior:
    return GaussianMixturePrior(*(None if v is None else jnp.asarray(v, dtype) for v in prior))


def fit_gaussian_mixture(
    x: Array | ShardedRows,
    n_components: int,
    *,
    covariance_type: CovarianceType = "full",
    rng_key: Array | int = 0,
    n_restarts: int = 1,
    init_method: str = "k-means++",
    initial: InitialValues | None = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    prior: GaussianMixturePrior | None = None,
    chunk_size: int | None = None,
    progress_interval: int | None = None,
    method: str = "em",
    method_options: dict[str, Any] | None = None,
    polish_iter: int = 0,
    polish_method: str = "em",
    polish_options: dict[str, Any] | None = None,
    polish_tol: float | None = None,
    mesh: Mesh | None = None,
) -> FitResult:
    """Fit a Gaussian mixture with a registered kernel and vectorized restarts.

    Inputs are assumed validated (:mod:`numpyro_gmm.validation`); ``x`` is a float array of
    shape (N, D) on the device.

    Parameters
    ----------
    x : Array, shape (N, D), or ShardedRows
        The data; :class:`~numpyro_gmm.parallel.ShardedRows` are already row-sharded over
        their mesh (the multi-host path).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    rng_key : PRNGKey or int
        Restart ``r`` uses ``split(rng_key, R)[r]`` for its initialization.
    n_restarts : int
        Number of restarts ``R``, run as one vmapped program.
    init_method : {"kmeans", "k-means++", "random", "random_from_data"}
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
    progress_interval : int, optional
        If set, report progress on stderr every that many iterations.
    method : str
        A kernel module of :mod:`numpyro_gmm.kernels` (``"em"`` by default).
    method_options : dict, optional
        Keyword options of the method's ``build_kernel`` (static: one compilation each).
    polish_iter : int
        After the method's loop, at most this many steps (``polish_tol``) of the polish kernel
        from every restart's parameters, before scoring and selection.
    polish_method, polish_options : str, dict
        The polish kernel (plain (MAP-)EM by default) and its options.
    polish_tol : float, optional
        Convergence threshold of the polish (default ``tol``); a stochastic method can run its
        own loop with ``tol=0`` and still let the polish stop on convergence.
    mesh : Mesh, optional
        Data parallelism over the devices of a one-axis mesh
        (:func:`numpyro_gmm.parallel.data_mesh`): the rows are sharded over them and the
        sufficient statistics summed across them; the result equals the single-device
        fit up to float reassociation. ``None``: one device (or the mesh of ``ShardedRows``).

    Returns
    -------
    FitResult
    """
    if mesh is not None or isinstance(x, ShardedRows):
        x = shard_rows(x, x.mesh if mesh is None else mesh)
        n_samples, n_features = x.n_samples, x.n_features
    else:
        n_samples, n_features = x.shape
    if chunk_size is None:
        chunk_size = default_chunk_size(n_samples, n_components, n_features)
    config = _Config(
        n_components,
        covariance_type,
        init_method,
        max_iter,
        int(min(chunk_size, n_samples)),
        method,
        tuple(sorted((method_options or {}).items())),
        polish_iter,
        polish_method,
        tuple(sorted((polish_options or {}).items())),
    )
    if isinstance(rng_key, int):
        rng_key = jax.random.key(rng_key)
    keys = jax.random.split(rng_key, n_restarts)
    initial = InitialValues() if initial is None else initial
    dtype = x.dtype
    initial = InitialValues(*(None if v is None else jnp.asarray(v, dtype) for v in initial))
    if prior is not None:
        prior = _cast_prior(prior, dtype)
    # (loop tolerance, polish tolerance), traced: new values do not recompile.
    tol = jnp.asarray([tol, tol if polish_tol is None else polish_tol], dtype)
    reg_covar = jnp.asarray(reg_covar, dtype)
    if isinstance(x, ShardedRows):
        programs = _sharded_programs(config, x.mesh, x.n_samples)
        x = x.array
    else:
        programs = _single_device_programs(config)
    if progress_interval:
        run_states, final = _run_with_progress(
            programs, keys, x, initial, tol, reg_covar, prior, config, progress_interval
        )
    else:
        run_states, final = programs.fit(keys, x, initial, tol, reg_covar, prior)
    return _select_best(
        jax.device_get(run_states), jax.device_get(final), max_iter, covariance_type
    )


def _positive_definite(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Per restart: are all its covariances positive definite (checked in float64)?"""
    covariances = np.asarray(covariances, np.float64)
    n_restarts = covariances.shape[0]
    finite = np.isfinite(covariances.reshape(n_restarts, -1)).all(axis=1)
    # A failed restart's non-finite matrices would stop the eigenvalue solver.
    covariances = np.where(finite.reshape((-1,) + (1,) * (covariances.ndim - 1)), covariances, 0.0)
    if covariance_type in ("full", "tied"):
        d = covariances.shape[-1]
        smallest = np.linalg.eigvalsh(covariances.reshape(-1, d, d)).min(axis=-1)
    else:
        smallest = covariances
    return finite & np.reshape(smallest > 0, (n_restarts, -1)).all(axis=1)


def _select_best(run_states, final: _Final, max_iter: int, covariance_type: str) -> FitResult:
    objective, counts, covariances = final.objective, final.counts, final.covariances
    # A covariance rebuilt in float32 from a nearly singular precision (N < D) can have a
    # negative eigenvalue that the loop's Cholesky did not see: that restart failed too.
    failed = np.asarray(run_states.failed) | ~_positive_definite(covariances, covariance_type)
    converged = np.asarray(run_states.converged)
    if final.polish is not None:
        failed = failed | np.asarray(final.polish.failed)
        converged = converged | np.asarray(final.polish.converged)
    if failed.all():
        raise ValueError(
            "Fitting the mixture model failed because some components have ill-defined "
            "empirical covariance (for instance caused by singleton or collapsed samples). "
            "Try to decrease the number of components, increase reg_covar, or scale the "
            "input data (in float32, also try enabling float64 with "
            "jax.config.update('jax_enable_x64', True))."
        )
    if failed.any():
        warnings.warn(
            f"{int(failed.sum())} of {failed.size} restarts stopped early because a covariance "
            "became singular; they keep their last finite parameters. Increase reg_covar or "
            "scale the data to avoid this.",
            ConvergenceWarning,
            stacklevel=3,
        )
    candidates = np.where(failed, -np.inf, objective)
    best = int(np.argmax(candidates))
    params = jax.tree.map(lambda leaf: np.asarray(leaf[best]), final.params)
    if max_iter > 0 and not converged[best]:
        warnings.warn(
            "Best performing initialization did not converge. Try different init parameters, "
            "or increase max_iter, tol, or check for degenerate data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    best_counts = np.asarray(counts[best])
    empty = np.flatnonzero(best_counts < 1.0)
    if empty.size:
        warnings.warn(
            f"Component(s) {empty.tolist()} explain less than one data point "
            f"(effective counts {np.round(best_counts[empty], 4).tolist()}); their parameters "
            "stay finite but are not identified by the data. Consider fewer components.",
            EmptyComponentWarning,
            stacklevel=3,
        )
    return FitResult(
        params=GMMParams(*params),
        covariances=np.asarray(covariances[best]),
        objective=float(objective[best]),
        best_restart=best,
        counts=best_counts,
        restart_objective=np.asarray(objective),
        restart_n_iter=np.asarray(run_states.n_iter),
        restart_converged=converged,
        restart_failed=failed,
        trace=np.asarray(run_states.trace),
        polish_trace=None if final.polish is None else np.asarray(final.polish.trace),
        polish_n_iter=None if final.polish is None else np.asarray(final.polish.n_iter),
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
    bounded and one compilation serves any ``N``.
    """
    n_samples = x.shape[0]
    rows = min(n_samples, _PREDICT_CHUNK_ROWS)
    params = GMMParams(*(jnp.asarray(leaf, x.dtype) for leaf in params))
    pieces = []
    for start in range(0, n_samples, rows):
        chunk = x[start : start + rows]
        valid = chunk.shape[0]
        if valid < rows:
            chunk = np.concatenate([chunk, np.zeros((rows - valid, x.shape[1]), x.dtype)])
        log_prob = _component_log_prob_program(jnp.asarray(chunk), params, covariance_type)
        pieces.append(np.asarray(log_prob)[:valid])
    return np.concatenate(pieces)


def _log_joint_value(x, params, prior, covariance_type, chunk_size):
    stats = sufficient_statistics(x, params, covariance_type, chunk_size)
    if prior is None:
        return stats.log_likelihood
    return stats.log_likelihood + log_prior(params, prior, covariance_type)


_log_joint_program = jax.jit(_log_joint_value, static_argnames=("covariance_type", "chunk_size"))


@functools.lru_cache(maxsize=32)
def _sharded_log_joint_program(covariance_type, chunk_size, mesh: Mesh, n_samples: int):
    def value(params, x, prior):
        return _log_joint_value(x, params, prior, covariance_type, chunk_size)

    program = _data_parallel(value, mesh, n_samples, 3)
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
    sharded = mesh is not None or isinstance(x, ShardedRows)
    if sharded:
        x = shard_rows(x, x.mesh if mesh is None else mesh)
    n_samples, n_features = (x.n_samples, x.n_features) if sharded else x.shape
    chunk_size = default_chunk_size(n_samples, params.means.shape[0], n_features)
    params = GMMParams(*(jnp.asarray(leaf, x.dtype) for leaf in params))
    if prior is not None:
        prior = _cast_prior(prior, x.dtype)
    if sharded:
        program = _sharded_log_joint_program(covariance_type, chunk_size, x.mesh, n_samples)
        return float(program(x.array, params, prior))
    return float(_log_joint_program(x, params, prior, covariance_type, chunk_size))
