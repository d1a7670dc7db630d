"""Initial parameters: k-means++, random-from-data, random responsibilities and k-means.

Every method produces responsibilities (hard or soft) that an ML M-step turns into
parameters, as scikit-learn's ``GaussianMixture._initialize_parameters`` does: k-means++ and
random-from-data put one point in each component (so the initial covariances are
``reg_covar * I``), k-means assigns every point to its nearest centre, and ``"random"`` draws
uniform responsibilities. All are pure JAX, chunked over rows and safe to ``vmap`` over keys.
"""

import math

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_gmm._types import Array, CovarianceType, PRNGKey
from numpyro_gmm.mixture.chunking import RowPlan, chunked_sum, n_rows
from numpyro_gmm.mixture.covariance import check_covariance_type
from numpyro_gmm.mixture.estep import statistics_from_responsibilities
from numpyro_gmm.mixture.mstep import m_step
from numpyro_gmm.mixture.params import GMMParams

__all__ = [
    "INIT_METHODS",
    "kmeans_plusplus_indices",
    "random_from_data_indices",
    "kmeans_centers",
    "initialize",
]

INIT_METHODS: tuple[str, ...] = ("kmeans", "k-means++", "random", "random_from_data")


def _squared_distances(rows: Array, centers: Array) -> Array:
    """``||x_n - c_k||^2``, shape (C, K), clamped at zero against round-off."""
    cross = rows @ centers.T
    squared = jnp.sum(rows**2, 1)[:, None] - 2.0 * cross + jnp.sum(centers**2, 1)[None, :]
    return jnp.maximum(squared, 0.0)


def _row_mask(x: Array, rows: RowPlan | int) -> Array:
    """True for the real rows of ``x`` (the first ``n_rows(x, rows)``), False for padding."""
    return jnp.arange(x.shape[0]) < n_rows(x, rows)


def _component_mask(n_components: int, n_active: Array | int | None) -> Array:
    """True for the first ``n_active`` of ``n_components`` components (all when ``None``)."""
    n_active = n_components if n_active is None else n_active
    return jnp.arange(n_components) < n_active


def _masked_mean(x: Array, valid: Array) -> Array:
    weights = valid.astype(x.dtype)
    return jnp.sum(x * weights[:, None], axis=0) / jnp.sum(weights)


def kmeans_plusplus_indices(
    rng_key: PRNGKey,
    x: Array,
    n_components: int,
    n_active: Array | int | None = None,
    rows: RowPlan | int | None = None,
) -> Array:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007), as scikit-learn does it.

    Each new centre is the best, by the resulting potential, of ``2 + floor(log K)`` candidates
    drawn with probability proportional to the squared distance to the nearest chosen centre.

    With ``n_active`` (``K' <= K``) only the first ``K'`` centres are seeded (the rest repeat
    the first) and with a row plan whose ``n_samples`` is below ``len(x)`` the rows past it
    are never chosen: the indices equal those of the unpadded problem, because every random
    draw is made per centre and per candidate, with the rows as its trailing axis.

    Returns
    -------
    Array, shape (K,), int
        Row indices of the chosen centres.
    """
    valid = _row_mask(x, x.shape[0] if rows is None else rows)
    n_active = n_components if n_active is None else n_active
    max_trials = 2 + int(math.log(n_components))
    n_trials = 2 + jnp.floor(jnp.log(jnp.asarray(n_active, jnp.float32))).astype(jnp.int32)
    first_key, loop_key = jax.random.split(rng_key)
    first = jax.random.randint(first_key, (), 0, jnp.sum(valid))
    closest = jnp.where(valid, jnp.sum((x - x[first]) ** 2, axis=1), 0.0)
    indices = jnp.full(n_components, first)

    def body_fn(step: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        indices, closest = carry
        key = jax.random.fold_in(loop_key, step)
        logits = jnp.log(jnp.maximum(closest, jnp.finfo(x.dtype).tiny))
        # If every point coincides with a centre, fall back to a uniform draw.
        logits = jnp.where(jnp.sum(closest) > 0, logits, jnp.zeros_like(logits))
        logits = jnp.where(valid, logits, -jnp.inf)
        trial_keys = jax.vmap(lambda trial: jax.random.fold_in(key, trial))(jnp.arange(max_trials))
        candidates = jax.vmap(lambda k: jax.random.categorical(k, logits))(trial_keys)

        def candidate_potential(candidate: Array) -> tuple[Array, Array]:
            updated = jnp.minimum(closest, jnp.sum((x - x[candidate]) ** 2, axis=1))
            return jnp.sum(updated), updated

        def trial_fn(trial: int, best: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
            potential, updated = candidate_potential(candidates[trial])
            better = (potential < best[0]) & (trial < n_trials)
            return (
                jnp.where(better, potential, best[0]),
                jnp.where(better, candidates[trial], best[1]),
                jnp.where(better, updated, best[2]),
            )

        potential, updated = candidate_potential(candidates[0])
        _, chosen, updated = lax.fori_loop(
            1, max_trials, trial_fn, (potential, candidates[0], updated)
        )
        seeded = step < n_active
        indices = jnp.where(seeded, indices.at[step].set(chosen.astype(indices.dtype)), indices)
        return indices, jnp.where(seeded, updated, closest)

    indices, _ = lax.fori_loop(1, n_components, body_fn, (indices, closest))
    return indices


def random_from_data_indices(
    rng_key: PRNGKey,
    x: Array,
    n_components: int,
    n_active: Array | int | None = None,
    rows: RowPlan | int | None = None,
) -> Array:
    """``K`` distinct row indices, a uniformly random subset in random order.

    Floyd's algorithm draws the subset with ``K`` random integers and no ``N``-sized
    temporary (``jax.random.choice`` without replacement permutes all ``N`` rows). With
    ``n_active`` and a padded row plan (see :func:`kmeans_plusplus_indices`) the first
    ``n_active`` indices equal the unpadded problem's and the rest repeat the first.
    """
    n_samples = n_rows(x, x.shape[0] if rows is None else rows)
    active = _component_mask(n_components, n_active)
    n_active = n_components if n_active is None else n_active
    subset_key, order_key = jax.random.split(rng_key)
    first_candidate = n_samples - n_active
    draws = jax.random.randint(
        subset_key, (n_components,), 0, first_candidate + 1 + jnp.arange(n_components)
    )

    def body_fn(step: int, chosen: Array) -> Array:
        # Unfilled entries are -1, so they never match a candidate.
        candidate = draws[step]
        taken = jnp.any(chosen == candidate)
        pick = jnp.where(taken, first_candidate + step, candidate)
        return chosen.at[step].set(jnp.where(step < n_active, pick, chosen[0]))

    chosen = lax.fori_loop(0, n_components, body_fn, jnp.full(n_components, -1, draws.dtype))
    # A random order of the active indices (padding sorts last).
    order = jnp.argsort(
        jnp.where(active, jax.random.uniform(order_key, (n_components,)), jnp.inf), stable=True
    )
    return chosen[order]


def kmeans_centers(
    rng_key: PRNGKey,
    x: Array,
    n_components: int,
    rows: RowPlan | int,
    max_iter: int = 300,
    tol: float = 1e-4,
    n_active: Array | int | None = None,
) -> Array:
    """Lloyd's k-means from a k-means++ seeding, jitted and chunked over rows.

    Stops when the squared movement of the centres falls below ``tol`` times the mean
    per-feature variance of the data (scikit-learn's criterion) or after ``max_iter`` rounds.
    An empty cluster keeps its previous centre; padding centres (past ``n_active``) and rows
    (past the plan's ``n_samples``) take no part.
    """
    active = _component_mask(n_components, n_active)
    valid = _row_mask(x, rows)
    centers = x[kmeans_plusplus_indices(rng_key, x, n_components, n_active, rows)]
    mean = _masked_mean(x, valid)
    threshold = tol * jnp.mean(_masked_mean((x - mean) ** 2, valid))

    def cluster_sums(centers: Array) -> tuple[Array, Array]:
        def chunk_fn(rows: Array, weights: Array, row_index: Array) -> tuple[Array, Array]:
            del row_index
            distances = jnp.where(active, _squared_distances(rows, centers), jnp.inf)
            nearest = jnp.argmin(distances, axis=1)
            one_hot = jax.nn.one_hot(nearest, n_components, dtype=x.dtype) * weights[:, None]
            return jnp.sum(one_hot, axis=0), one_hot.T @ rows

        return chunked_sum(chunk_fn, x, rows)

    def cond_fn(carry: tuple[int, Array, Array]) -> Array:
        iteration, _, movement = carry
        return (iteration < max_iter) & (movement > threshold)

    def body_fn(carry: tuple[int, Array, Array]) -> tuple[int, Array, Array]:
        iteration, centers, _ = carry
        counts, sums = cluster_sums(centers)
        updated = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centers)
        return iteration + 1, updated, jnp.sum((updated - centers) ** 2)

    init = (jnp.zeros((), jnp.int32), centers, jnp.asarray(jnp.inf, x.dtype))
    _, centers, _ = lax.while_loop(cond_fn, body_fn, init)
    return centers


def _seed_responsibilities(indices: Array, active: Array):
    def responsibilities_fn(rows: Array, row_index: Array) -> Array:
        seeds = (row_index[None, :] == indices[:, None]) & active[:, None]
        return seeds.astype(rows.dtype)

    return responsibilities_fn


def _nearest_center_responsibilities(centers: Array, active: Array):
    def responsibilities_fn(rows: Array, row_index: Array) -> Array:
        del row_index
        distances = jnp.where(active, _squared_distances(rows, centers), jnp.inf)
        nearest = jnp.argmin(distances, axis=1)
        return jax.nn.one_hot(nearest, centers.shape[0], dtype=rows.dtype).T

    return responsibilities_fn


def _uniform_responsibilities(rng_key: PRNGKey, active: Array):
    def responsibilities_fn(rows: Array, row_index: Array) -> Array:
        # One key per row: the draws do not depend on how rows are chunked or padded.
        def row_draws(index: Array) -> Array:
            key = jax.random.fold_in(rng_key, index)
            return jax.random.uniform(key, active.shape, rows.dtype)

        draws = jnp.where(active, jax.vmap(row_draws)(row_index), 0.0).T
        return draws / jnp.sum(draws, axis=0)

    return responsibilities_fn


def initialize(
    rng_key: PRNGKey,
    x: Array,
    n_components: int,
    method: str,
    covariance_type: CovarianceType,
    reg_covar: Array | float,
    rows: RowPlan | int,
    n_active: Array | int | None = None,
) -> GMMParams:
    """Initial parameters by ``method`` (one of :data:`INIT_METHODS`).

    The responsibilities of the method go through the maximum-likelihood M-step with
    ``reg_covar``, as in scikit-learn, so k-means++ and random-from-data start from
    covariances ``reg_covar * I`` centred on the chosen points.

    With ``n_active < n_components`` the components past ``n_active`` are padding: weight
    exactly 0 (see :func:`numpyro_gmm.mixture.mstep.m_step`), and the active ones equal the
    unpadded initialization; so do padded rows (a plan whose ``n_samples`` is below
    ``len(x)``) take no part.
    """
    check_covariance_type(covariance_type)
    active = _component_mask(n_components, n_active)
    # Centre the statistics where each component's points are (the seed or the k-means
    # centre): centred at a distant point, a one-point scatter cancels to round-off and can
    # come out indefinite in float32.
    if method in ("k-means++", "random_from_data"):
        draw = kmeans_plusplus_indices if method == "k-means++" else random_from_data_indices
        indices = draw(rng_key, x, n_components, n_active, rows)
        responsibilities_fn, shift = _seed_responsibilities(indices, active), x[indices]
    elif method == "kmeans":
        shift = kmeans_centers(rng_key, x, n_components, rows, n_active=n_active)
        responsibilities_fn = _nearest_center_responsibilities(shift, active)
    elif method == "random":
        responsibilities_fn = _uniform_responsibilities(rng_key, active)
        mean = _masked_mean(x, _row_mask(x, rows))
        shift = jnp.broadcast_to(mean, (n_components, x.shape[1]))
    else:
        raise ValueError(f"Unknown init method {method!r}; expected one of {INIT_METHODS}.")
    stats = statistics_from_responsibilities(x, responsibilities_fn, shift, covariance_type, rows)
    params, _ = m_step(stats, shift, None, covariance_type, reg_covar, active=active)
    return params
