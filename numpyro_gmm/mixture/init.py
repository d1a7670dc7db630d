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
from numpyro_gmm.mixture.chunking import chunked_sum
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


def kmeans_plusplus_indices(rng_key: PRNGKey, x: Array, n_components: int) -> Array:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007), as scikit-learn does it.

    Each new centre is the best, by the resulting potential, of ``2 + floor(log K)`` candidates
    drawn with probability proportional to the squared distance to the nearest chosen centre.

    Returns
    -------
    Array, shape (K,), int
        Row indices of the chosen centres.
    """
    n_samples = x.shape[0]
    n_trials = 2 + int(math.log(n_components))
    first_key, loop_key = jax.random.split(rng_key)
    first = jax.random.randint(first_key, (), 0, n_samples)
    closest = jnp.sum((x - x[first]) ** 2, axis=1)
    indices = jnp.full(n_components, first)

    def body_fn(step: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        indices, closest = carry
        key = jax.random.fold_in(loop_key, step)
        logits = jnp.log(jnp.maximum(closest, jnp.finfo(x.dtype).tiny))
        # If every point coincides with a centre, fall back to a uniform draw.
        logits = jnp.where(jnp.sum(closest) > 0, logits, jnp.zeros_like(logits))
        candidates = jax.random.categorical(key, logits, shape=(n_trials,))

        def candidate_potential(candidate: Array) -> tuple[Array, Array]:
            updated = jnp.minimum(closest, jnp.sum((x - x[candidate]) ** 2, axis=1))
            return jnp.sum(updated), updated

        def trial_fn(trial: int, best: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
            potential, updated = candidate_potential(candidates[trial])
            better = potential < best[0]
            return (
                jnp.where(better, potential, best[0]),
                jnp.where(better, candidates[trial], best[1]),
                jnp.where(better, updated, best[2]),
            )

        potential, updated = candidate_potential(candidates[0])
        _, chosen, closest = lax.fori_loop(
            1, n_trials, trial_fn, (potential, candidates[0], updated)
        )
        return indices.at[step].set(chosen.astype(indices.dtype)), closest

    indices, _ = lax.fori_loop(1, n_components, body_fn, (indices, closest))
    return indices


def random_from_data_indices(rng_key: PRNGKey, x: Array, n_components: int) -> Array:
    """``K`` distinct row indices, a uniformly random subset in random order.

    Floyd's algorithm draws the subset with ``K`` random integers and no ``N``-sized
    temporary (``jax.random.choice`` without replacement permutes all ``N`` rows).
    """
    n_samples = x.shape[0]
    subset_key, order_key = jax.random.split(rng_key)
    first_candidate = n_samples - n_components
    draws = jax.random.randint(
        subset_key, (n_components,), 0, first_candidate + 1 + jnp.arange(n_components)
    )

    def body_fn(step: int, chosen: Array) -> Array:
        # Unfilled entries are -1, so they never match a candidate.
        candidate = draws[step]
        taken = jnp.any(chosen == candidate)
        return chosen.at[step].set(jnp.where(taken, first_candidate + step, candidate))

    chosen = lax.fori_loop(0, n_components, body_fn, jnp.full(n_components, -1, draws.dtype))
    return jax.random.permutation(order_key, chosen)


def kmeans_centers(
    rng_key: PRNGKey,
    x: Array,
    n_components: int,
    chunk_size: int,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> Array:
    """Lloyd's k-means from a k-means++ seeding, jitted and chunked over rows.

    Stops when the squared movement of the centres falls below ``tol`` times the mean
    per-feature variance of the data (scikit-learn's criterion) or after ``max_iter`` rounds.
    An empty cluster keeps its previous centre.
    """
    centers = x[kmeans_plusplus_indices(rng_key, x, n_components)]
    threshold = tol * jnp.mean(jnp.var(x, axis=0))

    def cluster_sums(centers: Array) -> tuple[Array, Array]:
        def chunk_fn(rows: Array, weights: Array, row_index: Array) -> tuple[Array, Array]:
            del row_index
            nearest = jnp.argmin(_squared_distances(rows, centers), axis=1)
            one_hot = jax.nn.one_hot(nearest, n_components, dtype=x.dtype) * weights[:, None]
            return jnp.sum(one_hot, axis=0), one_hot.T @ rows

        return chunked_sum(chunk_fn, x, chunk_size)

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


def _seed_responsibilities(indices: Array):
    def responsibilities_fn(rows: Array, row_index: Array) -> Array:
        return (row_index[None, :] == indices[:, None]).astype(rows.dtype)

    return responsibilities_fn


def _nearest_center_responsibilities(centers: Array):
    def responsibilities_fn(rows: Array, row_index: Array) -> Array:
        del row_index
        nearest = jnp.argmin(_squared_distances(rows, centers), axis=1)
        return jax.nn.one_hot(nearest, centers.shape[0], dtype=rows.dtype).T

    return responsibilities_fn


def _uniform_responsibilities(rng_key: PRNGKey, n_components: int):
    def responsibilities_fn(rows: Array, row_index: Array) -> Array:
        key = jax.random.fold_in(rng_key, row_index[0])
        draws = jax.random.uniform(key, (n_components, rows.shape[0]), rows.dtype)
        return draws / jnp.sum(draws, axis=0)

    return responsibilities_fn


def initialize(
    rng_key: PRNGKey,
    x: Array,
    n_components: int,
    method: str,
    covariance_type: CovarianceType,
    reg_covar: Array | float,
    chunk_size: int,
) -> GMMParams:
    """Initial parameters by ``method`` (one of :data:`INIT_METHODS`).

    The responsibilities of the method go through the maximum-likelihood M-step with
    ``reg_covar``, as in scikit-learn, so k-means++ and random-from-data start from
    covariances ``reg_covar * I`` centred on the chosen points.
    """
    check_covariance_type(covariance_type)
    # Centre the statistics where each component's points are (the seed or the k-means
    # centre): centred at a distant point, a one-point scatter cancels to round-off and can
    # come out indefinite in float32.
    if method in ("k-means++", "random_from_data"):
        draw = kmeans_plusplus_indices if method == "k-means++" else random_from_data_indices
        indices = draw(rng_key, x, n_components)
        responsibilities_fn, shift = _seed_responsibilities(indices), x[indices]
    elif method == "kmeans":
        shift = kmeans_centers(rng_key, x, n_components, chunk_size)
        responsibilities_fn = _nearest_center_responsibilities(shift)
    elif method == "random":
        responsibilities_fn = _uniform_responsibilities(rng_key, n_components)
        shift = jnp.broadcast_to(jnp.mean(x, axis=0), (n_components, x.shape[1]))
    else:
        raise ValueError(f"Unknown init method {method!r}; expected one of {INIT_METHODS}.")
    stats = statistics_from_responsibilities(
        x, responsibilities_fn, shift, covariance_type, chunk_size
    )
    params, _ = m_step(stats, shift, None, covariance_type, reg_covar)
    return params
