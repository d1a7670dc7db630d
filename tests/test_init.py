"""Initializations: distinct seeds, uniform subsets, k-means quality, scikit-learn's recipe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from numpyro_gmm.mixture import init
from numpyro_gmm.mixture.params import covariances_from_precisions_cholesky

from helpers import make_mixture_data


def test_random_from_data_draws_uniform_subsets():
    x = jnp.zeros((6, 1))
    draw = jax.jit(lambda key: init.random_from_data_indices(key, x, 3))
    counts = {}
    for seed in range(3000):
        indices = np.asarray(draw(jax.random.key(seed)))
        assert len(set(indices.tolist())) == 3 and indices.min() >= 0 and indices.max() < 6
        subset = tuple(sorted(indices.tolist()))
        counts[subset] = counts.get(subset, 0) + 1
    # All C(6, 3) = 20 subsets, each with probability 1/20 (150 expected; 5 sd ~ 60).
    assert len(counts) == 20
    assert max(abs(c - 150) for c in counts.values()) < 60


def test_kmeans_plusplus_spreads_seeds_over_clusters():
    x, labels, _ = make_mixture_data(
        np.random.default_rng(0), n_samples=1000, n_features=2, n_components=5, separation=20.0
    )
    hits = 0
    for seed in range(20):
        indices = np.asarray(init.kmeans_plusplus_indices(jax.random.key(seed), jnp.asarray(x), 5))
        assert len(set(indices.tolist())) == 5
        hits += len(set(labels[indices].tolist())) == 5
    assert hits >= 18  # far-apart clusters: k-means++ nearly always seeds each one


def test_kmeans_matches_scikit_learn_inertia(x64):
    x, _, _ = make_mixture_data(
        np.random.default_rng(1), n_samples=1500, n_features=3, n_components=6, separation=5.0
    )
    centers = init.kmeans_centers(jax.random.key(0), jnp.asarray(x), 6, 256)
    inertia = np.sum(np.min(((x[:, None] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1))
    reference = KMeans(6, n_init=10, random_state=0).fit(x).inertia_
    assert inertia <= reference * 1.05


@pytest.mark.parametrize("method", ["k-means++", "random_from_data"])
def test_seed_initializations_follow_scikit_learn_recipe(method, x64):
    """One point per component: means on data points, equal weights, covariance reg_covar I."""
    x = np.random.default_rng(2).normal(size=(200, 3)) + 100.0
    params = init.initialize(jax.random.key(3), jnp.asarray(x), 4, method, "full", 1e-3, 64)
    means = np.asarray(params.means)
    assert all(np.any(np.all(x == m, axis=1)) for m in means)
    np.testing.assert_allclose(params.weights, 0.25, rtol=1e-12)
    covariances = covariances_from_precisions_cholesky(params.precisions_cholesky, "full")
    np.testing.assert_allclose(
        covariances, np.broadcast_to(1e-3 * np.eye(3), (4, 3, 3)), rtol=1e-9, atol=1e-12
    )


def test_seed_initialization_is_finite_in_float32_far_from_the_origin():
    x = np.random.default_rng(4).normal(size=(500, 2)).astype(np.float32) * 0.01 + 1e4
    for method in init.INIT_METHODS:
        params = init.initialize(jax.random.key(0), jnp.asarray(x), 3, method, "full", 1e-6, 128)
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in params), method
