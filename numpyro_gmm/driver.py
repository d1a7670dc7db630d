"""The one jitted loop shared by every kernel.

A kernel is a pure ``step(rng_key, state, data) -> (state, info)`` whose ``info`` has an
``objective`` (the quantity the algorithm increases, for the state that entered the step) and
an ``is_finite`` flag (whether the new state is usable). The driver runs it in a
``lax.while_loop`` until the per-sample objective changes by less than ``tol`` (as
scikit-learn's ``abs(change) < tol``) or ``max_iter`` steps have run, records the
per-iteration objective, and keeps the last finite state when a step fails. Restarts are a
``jax.vmap`` of the same loop, so ``R`` restarts compile once and run as one program.

The loop can be advanced in segments (``stop_at``) from a saved :class:`RunState`: the host
uses that to report progress on long runs without any callback inside the loop.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_gmm._types import Array, PRNGKey

__all__ = ["RunState", "init_run_state", "advance", "advance_restarts"]


class RunState(NamedTuple):
    """Carry of the driver loop.

    Attributes
    ----------
    kernel_state : Any
        The kernel's own state (the last finite one if a step failed).
    n_iter : Array, shape (), int32
        Steps taken.
    objective : Array, shape ()
        Per-sample objective reported by the last step (``-inf`` before the first).
    converged : Array, shape (), bool
        The last change of the per-sample objective was below ``tol``.
    failed : Array, shape (), bool
        A step produced non-finite parameters; the loop stopped before accepting them.
    trace : Array, shape (max_iter,)
        Per-sample objective of every step, NaN after the last one.
    """

    kernel_state: Any
    n_iter: Array
    objective: Array
    converged: Array
    failed: Array
    trace: Array


def init_run_state(
    kernel_state: Any, max_iter: int, dtype: jnp.dtype, objective: Array | float = -jnp.inf
) -> RunState:
    """Driver carry before the first step.

    ``objective`` is the per-sample objective the first step's value is compared with for
    convergence: ``-inf`` for a fresh start, the previous fit's last value for a warm start
    (as scikit-learn's ``warm_start`` carries ``lower_bound_``).
    """
    return RunState(
        kernel_state=kernel_state,
        n_iter=jnp.zeros((), jnp.int32),
        objective=jnp.asarray(objective, dtype),
        converged=jnp.zeros((), bool),
        failed=jnp.zeros((), bool),
        trace=jnp.full((max_iter,), jnp.nan, dtype),
    )


def advance(
    rng_key: PRNGKey,
    step_fn: Callable[[PRNGKey, Any, Any], tuple[Any, Any]],
    run_state: RunState,
    data: Any,
    *,
    stop_at: Array | int,
    tol: Array | float,
    objective_scale: Array | float,
) -> RunState:
    """Run ``step_fn`` until convergence, failure, or ``n_iter == stop_at``.

    Parameters
    ----------
    rng_key : PRNGKey
        Base key; step ``t`` uses ``fold_in(rng_key, t)``, so a run split into segments
        gives the same result as one uninterrupted run.
    step_fn : callable
        The kernel's pure step.
    run_state : RunState
    data : pytree
        Passed unchanged to every step.
    stop_at : int
        Stop once this many steps have run in total (at most the trace length).
    tol : float
        Convergence threshold on the change of the per-sample objective.
    objective_scale : float
        Multiplies the kernel's objective to make it per-sample (``1 / N``).
    """
    if run_state.trace.shape[0] == 0:  # max_iter = 0: nothing to run
        return run_state
    stop_at = jnp.minimum(stop_at, run_state.trace.shape[0])

    def cond_fn(carry: RunState) -> Array:
        return (carry.n_iter < stop_at) & ~carry.converged & ~carry.failed

    def body_fn(carry: RunState) -> RunState:
        key = jax.random.fold_in(rng_key, carry.n_iter)
        new_state, info = step_fn(key, carry.kernel_state, data)
        objective = (info.objective * objective_scale).astype(carry.objective.dtype)
        usable = info.is_finite & jnp.isfinite(objective)
        kernel_state = jax.tree.map(
            lambda new, old: jnp.where(usable, new, old), new_state, carry.kernel_state
        )
        return RunState(
            kernel_state=kernel_state,
            n_iter=carry.n_iter + usable.astype(jnp.int32),
            objective=jnp.where(usable, objective, carry.objective),
            converged=usable & (jnp.abs(objective - carry.objective) < tol),
            failed=~usable,
            trace=carry.trace.at[carry.n_iter].set(jnp.where(usable, objective, jnp.nan)),
        )

    return lax.while_loop(cond_fn, body_fn, run_state)


def advance_restarts(
    rng_keys: PRNGKey,
    step_fn: Callable[[PRNGKey, Any, Any], tuple[Any, Any]],
    run_states: RunState,
    data: Any,
    *,
    stop_at: Array | int,
    tol: Array | float,
    objective_scale: Array | float,
) -> RunState:
    """:func:`advance` vmapped over restarts (leading axis of keys and states); data shared."""

    def advance_one(rng_key: PRNGKey, run_state: RunState) -> RunState:
        return advance(
            rng_key,
            step_fn,
            run_state,
            data,
            stop_at=stop_at,
            tol=tol,
            objective_scale=objective_scale,
        )

    return jax.vmap(advance_one)(rng_keys, run_states)
