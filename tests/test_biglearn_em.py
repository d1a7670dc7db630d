"""BigLearn-EM: each matching against an independent numpy EM step, rotations, floor, API."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
from numpyro_gmm.kernels import biglearn_em as bl
from numpyro_gmm.kernels import get_kernel
from numpyro_gmm.mixture.estep import sufficient_statistics
from numpyro_gmm.mixture.mstep import m_step
from numpyro_gmm.mixture.params import GMMParams, precisions_cholesky_from_covariances
from numpyro_gmm.mixture.priors import GaussianMixturePrior


def _tolerances(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)


def _problem(dtype, n_samples=300, n_features=3, n_components=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_components, n_features))
    x = centres[rng.integers(0, n_components, n_samples)] + rng.normal(size=(n_samples, n_features))
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = centres + 0.5 * rng.normal(size=centres.shape)
    factors = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    covariances = factors @ np.swapaxes(factors, -1, -2) + 0.5 * np.eye(n_features)
    x, weights, means, covariances = (
        np.asarray(a, dtype) for a in (x, weights, means, covariances)
    )
    params = GMMParams(
        jnp.asarray(weights),
        jnp.asarray(means),
        precisions_cholesky_from_covariances(jnp.asarray(covariances), "full"),
    )
    state = bl.init(params)
    # The reference works from the state's covariances (its own Cholesky round trip).
    return x, state, (weights, means, np.asarray(state.covariances))


def _numpy_block_em(y, weights, means, covariances, *, reg=0.0, alpha=0.0, tiny=0.0):
    """One EM step of a full-covariance GMM in float64 numpy (the reference's estimator)."""
    y, means, covariances = (np.asarray(a, np.float64) for a in (y, means, covariances))
    n_samples, n_features = y.shape
    log_prob = np.stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(y)
            for w, m, c in zip(np.asarray(weights, np.float64), means, covariances, strict=True)
        ],
        axis=1,
    ).reshape(n_samples, -1)
    log_norm = logsumexp(log_prob, axis=1)
    resp = np.exp(log_prob - log_norm[:, None])
    counts = resp.sum(0)
    floored = np.maximum(counts, n_samples * tiny)
    new_means = resp.T @ y / floored[:, None]
    new_covariances = np.stack(
        [
            (resp[:, k, None] * (y - new_means[k])).T @ (y - new_means[k]) / floored[k]
            + reg * np.eye(n_features)
            for k in range(len(counts))
        ]
    )
    smoothed = counts / n_samples + alpha
    return smoothed / smoothed.sum(), new_means, new_covariances, log_norm.sum()


def _numpy_floor(matrices, eps):
    """``V diag(max(lambda, eps)) V^T`` in numpy."""
    values, vectors = np.linalg.eigh(matrices)
    return vectors * np.maximum(values, eps)[..., None, :] @ np.swapaxes(vectors, -1, -2)


def _matching(kind, mask, rotation, dtype):
    return bl.Matching(
        kind=jnp.asarray(kind, jnp.int32),
        mask=jnp.asarray(mask, bool),
        rotation=jnp.asarray(rotation, dtype),
    )


def _update(x, state, matching, **options):
    options = dict(inner_steps=1, eigenvalue_floor_eps=1e-12, tiny=0.0) | options
    return bl.matching_update(jnp.asarray(x), state, matching, **options)


def test_joint_matching_is_one_em_step(dtype):
    x, state, (weights, means, covariances) = _problem(dtype)
    matching = _matching(bl.JOINT, [True] * 3, np.eye(3), dtype)
    new, log_lik = _update(x, state, matching, weight_smoothing=0.0, reg_covar=1e-6)
    expected = _numpy_block_em(x, weights, means, covariances, reg=1e-6)
    tol = _tolerances(dtype)
    np.testing.assert_allclose(new.params.weights, expected[0], **tol)
    np.testing.assert_allclose(new.params.means, expected[1], **tol)
    np.testing.assert_allclose(new.covariances, expected[2], **tol)
    np.testing.assert_allclose(log_lik, expected[3], rtol=tol["rtol"])
    # And the same as the package's EM M-step (which adds 10 eps to the counts).
    stats = sufficient_statistics(jnp.asarray(x), state.params, "full", x.shape[0])
    em_params, em_covariances = m_step(stats, state.params.means, state.params, "full", 1e-6)
    np.testing.assert_allclose(new.covariances, em_covariances, **tol)
    np.testing.assert_allclose(
        new.params.precisions_cholesky,
        em_params.precisions_cholesky,
        rtol=1e-3 if dtype == np.float32 else 1e-8,
        atol=1e-4,
    )


def test_marginal_matching_updates_only_the_selected_block(dtype):
    x, state, (weights, means, covariances) = _problem(dtype, n_features=4)
    mask = np.array([True, False, True, False])
    matching = _matching(bl.MARGINAL, mask, np.eye(4), dtype)
    new, log_lik = _update(x, state, matching, weight_smoothing=0.3, tiny=1e-5)
    t = np.flatnonzero(mask)
    expected = _numpy_block_em(
        x[:, t], weights, means[:, t], covariances[:, t][:, :, t], alpha=0.3, tiny=1e-5
    )
    tol = _tolerances(dtype)
    np.testing.assert_allclose(new.params.weights, expected[0], **tol)
    np.testing.assert_allclose(new.params.means[:, t], expected[1], **tol)
    np.testing.assert_allclose(np.asarray(new.covariances)[:, t][:, :, t], expected[2], **tol)
    np.testing.assert_allclose(log_lik, expected[3], rtol=tol["rtol"])
    # Entries outside T (the cross blocks included) are left exactly as they were.
    outside = ~(mask[:, None] & mask[None, :])
    np.testing.assert_array_equal(np.asarray(new.params.means)[:, ~mask], means[:, ~mask])
    np.testing.assert_array_equal(np.asarray(new.covariances)[:, outside], covariances[:, outside])


def test_transformed_matching_is_em_on_rotated_data(dtype):
    x, state, (weights, means, covariances) = _problem(dtype, n_features=4, seed=1)
    rotation = np.asarray(bl.random_orthogonal(jax.random.key(3), 4, dtype))
    mask = np.array([False, True, True, True])
    matching = _matching(bl.TRANSFORMED, mask, rotation, dtype)
    new, log_lik = _update(x, state, matching, weight_smoothing=0.0, inner_steps=1)
    a = rotation.astype(np.float64)
    y = x @ a.T
    rotated_means = means @ a.T
    rotated_covariances = a @ covariances @ a.T
    t = np.flatnonzero(mask)
    expected = _numpy_block_em(
        y[:, t], weights, rotated_means[:, t], rotated_covariances[:, t][:, :, t]
    )
    rotated_means[:, t] = expected[1]
    block = rotated_covariances[:, t][:, :, t]
    rotated_covariances[:, t[:, None], t[None, :]] = expected[2]
    assert block.shape == expected[2].shape
    # Keeping the cross blocks can leave the updated matrix indefinite: the floor clips it.
    rotated_covariances = _numpy_floor(rotated_covariances, 1e-12)
    tol = _tolerances(dtype)
    np.testing.assert_allclose(new.params.weights, expected[0], **tol)
    np.testing.assert_allclose(new.params.means, rotated_means @ a, **tol)
    np.testing.assert_allclose(new.covariances, a.T @ rotated_covariances @ a, **tol)
    np.testing.assert_allclose(log_lik, expected[3], rtol=tol["rtol"])


def test_kernel_step_uses_the_matching_drawn_from_its_key(dtype):
    x, state, _ = _problem(dtype, n_features=4)
    x = jnp.asarray(x)
    step = jax.jit(bl.build_kernel("full", 0.0, 128, p_joint=0.0, p_marginal=0.0))
    key = jax.random.key(7)
    new, info = step(key, state, x)
    matching = bl.sample_matching(key, 4, x.dtype, p_joint=0.0, p_marginal=0.0)
    assert int(info.kind) == bl.TRANSFORMED == int(matching.kind)
    update = jax.jit(functools.partial(bl.matching_update, inner_steps=5, chunk_size=128))
    expected, marginal = update(x, state, matching)
    tol = _tolerances(dtype)
    np.testing.assert_allclose(new.covariances, expected.covariances, **tol)
    np.testing.assert_allclose(new.params.means, expected.params.means, **tol)
    np.testing.assert_allclose(info.marginal_log_likelihood, marginal, rtol=tol["rtol"])
    # The objective is the joint log-likelihood of the parameters that entered the step.
    stats = sufficient_statistics(x, state.params, "full", x.shape[0])
    np.testing.assert_allclose(info.objective, stats.log_likelihood, rtol=tol["rtol"])


def test_rotations_are_orthogonal_and_haar(dtype):
    n_draws, d = 4000, 3
    keys = jax.random.split(jax.random.key(0), n_draws)
    a = np.asarray(jax.vmap(lambda k: bl.random_orthogonal(k, d, dtype))(keys), np.float64)
    atol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        a @ np.swapaxes(a, -1, -2), np.broadcast_to(np.eye(d), a.shape), atol=atol
    )
    np.testing.assert_allclose(a.mean(0), 0.0, atol=0.04)
    np.testing.assert_allclose((a**2).mean(0), 1.0 / d, atol=0.03)
    # Uniform columns on the sphere: E[a^4] = 3 / (d (d + 2)).
    np.testing.assert_allclose((a**4).mean(0), 3.0 / (d * (d + 2)), atol=0.03)
    determinants = np.linalg.det(a)
    np.testing.assert_allclose(np.abs(determinants), 1.0, atol=1e-4)
    assert abs(np.mean(determinants > 0) - 0.5) < 0.04
    # Sign symmetry of every entry (fails without the sign correction of R's diagonal,
    # which leaves the diagonal of a Householder QR biased).
    assert np.all(np.abs((a > 0).mean(0) - 0.5) < 0.04)
    # Invariance: A and A B (B a fixed orthogonal matrix) have the same entry moments.
    b = np.linalg.qr(np.random.default_rng(1).normal(size=(d, d)))[0]
    np.testing.assert_allclose(np.abs(a @ b).mean(0), np.abs(a).mean(0), atol=0.03)


def test_matching_kinds_and_subset_sizes(dtype):
    keys = jax.random.split(jax.random.key(1), 2000)
    draw = jax.jit(jax.vmap(lambda k: bl.sample_matching(k, 5, dtype, beta_a=0.3, beta_b=1.0)))
    matchings = draw(keys)
    kinds = np.asarray(matchings.kind)
    np.testing.assert_allclose(
        np.bincount(kinds, minlength=3) / kinds.size, [0.4, 0.1, 0.5], atol=0.04
    )
    sizes = np.asarray(matchings.mask).sum(1)
    joint = kinds == bl.JOINT
    assert np.all(sizes[joint] == 5)
    # |T| = floor(D b), as the reference's int(D * b): often 0 with Beta(0.3, 1), where
    # P(b < 1/5) = (1/5)**0.3.
    assert sizes[~joint].min() == 0 and sizes[~joint].max() <= 5
    np.testing.assert_allclose(np.mean(sizes[~joint] == 0), 0.2**0.3, atol=0.04)
    eye = np.eye(5)
    rotations = np.asarray(matchings.rotation)
    assert np.all(rotations[kinds != bl.TRANSFORMED] == eye)
    assert not np.allclose(rotations[kinds == bl.TRANSFORMED][0], eye)


@pytest.mark.parametrize("kind", [bl.MARGINAL, bl.TRANSFORMED])
def test_empty_subset_only_smooths_the_weights(dtype, kind):
    # The reference's int(D * b) = 0: the E-step on no coordinates gives r_nk = pi_k, so each
    # inner step maps pi to (pi + alpha) / (1 + K alpha) and nothing else moves.
    x, state, (weights, means, covariances) = _problem(dtype, n_features=3)
    rotation = (
        np.eye(3)
        if kind == bl.MARGINAL
        else np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    )
    matching = _matching(kind, np.zeros(3, bool), rotation, dtype)
    alpha, inner = 0.2, 3
    new, _ = _update(x, state, matching, inner_steps=inner, weight_smoothing=alpha)
    expected = np.asarray(weights, np.float64)
    for _ in range(inner):
        expected = (expected + alpha) / (1.0 + 3 * alpha)
    tol = _tolerances(dtype)
    np.testing.assert_allclose(np.asarray(new.params.weights), expected, **tol)
    np.testing.assert_allclose(np.asarray(new.params.means), means, **tol)
    np.testing.assert_allclose(np.asarray(new.covariances), covariances, **tol)


def test_same_seed_same_run_other_seed_differs(dtype):
    x, state, _ = _problem(dtype, n_features=3)
    initial = InitialValues(*state.params)

    def fit(seed):
        return fit_gaussian_mixture(
            jnp.asarray(x),
            3,
            rng_key=seed,
            initial=initial,
            max_iter=15,
            tol=0.0,
            kernel="biglearn_em",
            kernel_options={"inner_steps": 2},
        )

    first, again, other = fit(0), fit(0), fit(1)
    for leaf_a, leaf_b in zip(first.params, again.params, strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    np.testing.assert_array_equal(first.trace, again.trace)
    assert not np.array_equal(first.params.means, other.params.means)


def test_eigenvalue_floor(dtype):
    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.normal(size=(4, 3, 3)))[0]
    values = np.array([[1.0, 1e-4, -0.5], [2.0, 1.0, 0.5], [1e-9, 1e-9, 3.0], [0.2, 0.05, 0.01]])
    matrices = np.asarray(vectors * values[:, None, :] @ np.swapaxes(vectors, -1, -2), dtype)
    floored = np.asarray(bl.floor_eigenvalues(jnp.asarray(matrices), 0.1), np.float64)
    eigenvalues = np.linalg.eigvalsh(floored)
    assert eigenvalues.min() >= 0.1 * (1 - 1e-4)
    np.testing.assert_allclose(eigenvalues, np.sort(np.maximum(values, 0.1), axis=1), atol=1e-5)
    # A matrix with no eigenvalue below the floor is returned bit for bit.
    np.testing.assert_array_equal(floored[1], matrices[1])
    # After kernel steps (any kind), every covariance respects the floor.
    x, state, _ = _problem(dtype, n_features=4)
    step = jax.jit(bl.build_kernel("full", 0.0, 300, eigenvalue_floor=0.8, track_objective=False))
    for t in range(6):
        state, info = step(jax.random.key(t), state, jnp.asarray(x))
        # Without tracking, the objective is the free matched-marginal log-likelihood.
        assert info.objective == info.marginal_log_likelihood
        eig = np.linalg.eigvalsh(np.asarray(state.covariances, np.float64))
        assert eig.min() >= 0.8 * (1 - 1e-5)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "tied"])
def test_unsupported_covariance_types_raise(covariance_type):
    with pytest.raises(ValueError, match="covariance_type='full' only.*rotate"):
        bl.build_kernel(covariance_type, 1e-6, 100)


def test_invalid_options_and_priors_raise():
    with pytest.raises(ValueError, match="independent mean prior"):
        bl.build_kernel(
            "full",
            1e-6,
            100,
            GaussianMixturePrior(mean_loc=jnp.zeros(2), mean_covariance=jnp.eye(2)),
        )
    with pytest.raises(ValueError, match="Inverse-Gamma"):
        bl.build_kernel(
            "full", 1e-6, 100, GaussianMixturePrior(variance_concentration=1.0, variance_rate=1.0)
        )
    with pytest.raises(ValueError, match="p_joint"):
        bl.build_kernel("full", 1e-6, 100, p_joint=1.5)
    with pytest.raises(ValueError, match="inner_steps"):
        bl.build_kernel("full", 1e-6, 100, inner_steps=0)
    assert get_kernel("biglearn_em").init is bl.init


def _prior(d, k, dtype):
    return GaussianMixturePrior(
        weight_concentration=jnp.full((k,), 2.0, dtype),
        mean_loc=jnp.full((d,), 0.5, dtype),
        mean_precision=jnp.asarray(0.7, dtype),
        covariance_df=jnp.asarray(d + 2.0, dtype),
        covariance_scale=jnp.asarray(0.3 * np.eye(d) + 0.1, dtype),
    )


def test_prior_joint_matching_is_the_map_em_step(dtype):
    x, state, _ = _problem(dtype, n_features=3)
    prior = _prior(3, 3, dtype)
    matching = _matching(bl.JOINT, [True] * 3, np.eye(3), dtype)
    new, _ = _update(x, state, matching, weight_smoothing=0.0, prior=prior)
    stats = sufficient_statistics(jnp.asarray(x), state.params, "full", x.shape[0])
    expected, covariances = m_step(stats, state.params.means, state.params, "full", 0.0, prior)
    tol = _tolerances(dtype)
    np.testing.assert_allclose(new.params.weights, expected.weights, **tol)
    np.testing.assert_allclose(new.params.means, expected.means, **tol)
    np.testing.assert_allclose(new.covariances, covariances, **tol)


def test_prior_marginal_matching_uses_the_marginal_prior(dtype):
    """T-block update = MAP-EM on x[:, T] under NIW(m0_T, kappa0, nu0 - (D - |T|), Psi0_TT)."""
    d = 4
    x, state, (weights, means, covariances) = _problem(dtype, n_features=d)
    prior = _prior(d, 3, dtype)
    mask = np.array([True, True, False, True])
    t = np.flatnonzero(mask)
    new, _ = _update(
        x, state, _matching(bl.MARGINAL, mask, np.eye(d), dtype), weight_smoothing=0.0, prior=prior
    )
    sub_params = GMMParams(
        jnp.asarray(weights),
        jnp.asarray(means[:, t]),
        precisions_cholesky_from_covariances(jnp.asarray(covariances[:, t][:, :, t]), "full"),
    )
    sub_prior = GaussianMixturePrior(
        weight_concentration=prior.weight_concentration,
        mean_loc=prior.mean_loc[t],
        mean_precision=prior.mean_precision,
        covariance_df=prior.covariance_df - (d - t.size),
        covariance_scale=prior.covariance_scale[t][:, t],
    )
    x_t = jnp.asarray(x[:, t])
    stats = sufficient_statistics(x_t, sub_params, "full", x.shape[0])
    expected, block = m_step(stats, sub_params.means, sub_params, "full", 0.0, sub_prior)
    tol = _tolerances(dtype)
    np.testing.assert_allclose(new.params.weights, expected.weights, **tol)
    np.testing.assert_allclose(np.asarray(new.params.means)[:, t], expected.means, **tol)
    np.testing.assert_allclose(np.asarray(new.covariances)[:, t][:, :, t], block, **tol)


def test_fit_through_the_engine_with_restarts_and_polish(dtype, blobs):
    x, _, _ = blobs
    x = jnp.asarray(x, dtype)
    result = fit_gaussian_mixture(
        x,
        4,
        rng_key=0,
        num_restarts=3,
        max_iter=30,
        tol=0.0,
        kernel="biglearn_em",
        kernel_options={"weight_smoothing": 0.25},
        polish_iter=5,
    )
    assert result.trace.shape == (3, 30) and result.polish_trace.shape == (3, 5)
    assert np.all(np.isfinite(result.trace)) and np.isfinite(result.objective)
    assert result.best_restart == int(np.argmax(result.restarts.objective))
    np.testing.assert_allclose(np.sum(result.params.weights), 1.0, rtol=1e-5)
    # Well-separated blobs: the polished fit explains the data far better than one Gaussian.
    x64 = np.asarray(x, np.float64)
    single = multivariate_normal(x64.mean(0), np.cov(x64.T)).logpdf(x64).sum()
    assert result.objective > single + 100


def test_floored_em_polish_keeps_the_eigenvalue_floor(dtype):
    # Nearly discrete data: plain EM shrinks covariances far below eps, the floored polish
    # (joint matching, one inner step, no smoothing) keeps every eigenvalue >= eps and equals
    # that many floored EM steps run as a second fit.
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(400, 3)).astype(dtype) / 2.0
    x[:, 2] = x[:, 0]  # a degenerate direction
    eps = 1e-2
    options = bl.floored_em_options(eps, track_objective=False)
    assert options == dict(
        p_joint=1.0,
        inner_steps=1,
        weight_smoothing=0.0,
        eigenvalue_floor=eps,
        track_objective=False,
    )
    common = dict(rng_key=0, tol=0.0, reg_covar=1e-6, init_params="random_from_data")
    biglearn = dict(weight_smoothing=0.25, eigenvalue_floor=eps)
    first = fit_gaussian_mixture(
        jnp.asarray(x), 4, max_iter=10, kernel="biglearn_em", kernel_options=biglearn, **common
    )
    floored = fit_gaussian_mixture(
        jnp.asarray(x),
        4,
        max_iter=10,
        kernel="biglearn_em",
        kernel_options=biglearn,
        polish_iter=5,
        polish_kernel="biglearn_em",
        polish_options=options,
        **common,
    )
    plain = fit_gaussian_mixture(
        jnp.asarray(x),
        4,
        max_iter=10,
        kernel="biglearn_em",
        kernel_options=biglearn,
        polish_iter=5,
        **common,
    )
    assert np.linalg.eigvalsh(floored.covariances).min() >= eps * (1 - 1e-3)
    assert np.linalg.eigvalsh(plain.covariances).min() < 0.1 * eps
    second = fit_gaussian_mixture(
        jnp.asarray(x),
        4,
        max_iter=5,
        initial=InitialValues(*first.params),
        kernel="biglearn_em",
        kernel_options=options,
        **common,
    )
    tol = dict(rtol=1e-3, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-8, atol=1e-8)
    for leaf_a, leaf_b in zip(floored.params, second.params, strict=True):
        np.testing.assert_allclose(np.asarray(leaf_a), np.asarray(leaf_b), **tol)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_one_dimensional_diag_and_spherical_models_reach_the_em_map(covariance_type):
    import numpyro_gmm as ngm
    from numpyro_gmm.models import gaussian_mixture

    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(-4, 1, 100), rng.normal(0, 0.5, 100), rng.normal(5, 2, 100)])
    model = gaussian_mixture(3, covariance_type=covariance_type)
    em = ngm.fit(model, y, method="em", num_restarts=4)
    biglearn = ngm.fit(model, y, method="biglearn_em", num_restarts=4)
    # The Inverse-Gamma prior of a variance is run as the Inverse-Wishart of the same 1 x 1
    # matrix: a wrong conversion would move the mode away from EM's under the model's prior.
    assert biglearn.objective == pytest.approx(em.objective, abs=1e-3 * len(y))
    order_em = np.argsort(np.ravel(em.params["locs"]))
    order_bl = np.argsort(np.ravel(biglearn.params["locs"]))
    for name in ("weights", "locs", "variances"):
        np.testing.assert_allclose(
            np.ravel(biglearn.params[name])[order_bl],
            np.ravel(em.params[name])[order_em],
            rtol=5e-3,
            atol=1e-3,
        )


def test_one_dimensional_spherical_facade_keeps_its_covariance_layout():
    from numpyro_gmm import GaussianMixture

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-3, 1, (80, 1)), rng.normal(3, 1, (80, 1))])
    gm = GaussianMixture(2, covariance_type="spherical", method="biglearn_em", random_state=0)
    gm.fit(x)
    assert gm.covariances_.shape == (2,) and gm.precisions_cholesky_.shape == (2,)
    np.testing.assert_allclose(np.sort(gm.means_[:, 0]), [-3, 3], atol=0.5)


@pytest.mark.parametrize(
    ("covariance_type", "n_features"), [("diag", 2), ("spherical", 3), ("tied", 1)]
)
def test_other_non_full_models_are_refused_with_what_to_use(covariance_type, n_features):
    from numpyro_gmm import GaussianMixture

    x = np.random.default_rng(2).normal(size=(60, n_features))
    gm = GaussianMixture(2, covariance_type=covariance_type, method="biglearn_em")
    with pytest.raises(
        ValueError, match="'diag' or 'spherical' only with one feature.*method='em'"
    ):
        gm.fit(x)


def _spd(rng, n_components, dim):
    factors = rng.normal(size=(n_components, dim, dim))
    return factors @ np.swapaxes(factors, -1, -2) + 0.5 * np.eye(dim)


@pytest.mark.parametrize("selected", [[1, 3], [], [0, 1, 2, 3]])
def test_a_block_update_keeps_each_components_conditional(selected, x64):
    """``keep_conditionals``: the block is the new one, the conditional of the rest given the
    block (its regression and residual covariance) is the old one, and the component stays
    positive definite even when the block shrinks a hundredfold."""
    rng = np.random.default_rng(0)
    dim, block = 4, np.isin(np.arange(4), selected)
    covariances = _spd(rng, 2, dim)
    means = rng.normal(size=(2, dim))
    new_covariances = _spd(rng, 2, dim) / 100.0
    new_means = rng.normal(size=(2, dim))
    means_out, covs_out = bl._with_block(
        jnp.asarray(means),
        jnp.asarray(covariances),
        jnp.asarray(new_means),
        jnp.asarray(new_covariances),
        jnp.asarray(block),
    )
    means_out, covs_out = np.asarray(means_out), np.asarray(covs_out)
    t, a = np.flatnonzero(block), np.flatnonzero(~block)
    for k in range(2):
        np.testing.assert_allclose(covs_out[k][np.ix_(t, t)], new_covariances[k][np.ix_(t, t)])
        np.testing.assert_allclose(means_out[k][t], new_means[k][t])
        assert np.linalg.eigvalsh(covs_out[k]).min() > 0
        if t.size and a.size:

            def conditional(cov, mean):
                regression = cov[np.ix_(a, t)] @ np.linalg.inv(cov[np.ix_(t, t)])
                residual = cov[np.ix_(a, a)] - regression @ cov[np.ix_(t, a)]
                return regression, residual, mean[a] - regression @ mean[t]

            for before, after in zip(
                conditional(covariances[k], means[k]), conditional(covs_out[k], means_out[k])
            ):
                np.testing.assert_allclose(after, before, atol=1e-10)
        elif not t.size:  # nothing matched: nothing changes
            np.testing.assert_allclose(covs_out[k], covariances[k])
            np.testing.assert_allclose(means_out[k], means[k])
