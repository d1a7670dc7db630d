"""The split-merge search (method "split_merge_em"): its moves and its escapes."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import numpyro_gmm as ngm
from numpyro_gmm.component_moves import moment_match, split_along_principal_axis
from numpyro_gmm.fitting import InitialValues, log_joint
from numpyro_gmm.mixture.covariance import expand_to_full
from numpyro_gmm.mixture.params import precisions_cholesky_from_covariances
from numpyro_gmm.pipeline import fit_mixture
from numpyro_gmm.split_merge import candidate_moves

CENTRES = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])


def _three_clusters(seed=0, per_cluster=150):
    rng = np.random.default_rng(seed)
    return np.concatenate([c + rng.normal(size=(per_cluster, 2)) for c in CENTRES])


def _initial(weights, means, covariances, covariance_type="full"):
    factors = precisions_cholesky_from_covariances(jnp.asarray(covariances), covariance_type)
    return InitialValues(np.asarray(weights), np.asarray(means), np.asarray(factors))


# Two components share the first cluster, one covers the other two: an EM fixed point.
BAD_START = (
    np.array([1 / 6, 1 / 6, 2 / 3]),
    np.array([[-0.5, 0.0], [0.5, 0.0], [4.0, 4.0]]),
    np.array([np.eye(2) * 0.8, np.eye(2) * 0.8, np.array([[17.0, -15.0], [-15.0, 17.0]])]),
)


def test_a_split_keeps_the_components_first_two_moments():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3))
    covariance = a @ a.T + np.eye(3)
    mean = rng.normal(size=3)
    half, first, second, child = split_along_principal_axis(0.4, mean, covariance)
    weight, merged_mean, merged = moment_match(
        np.array([half, half]), np.stack([first, second]), np.stack([child, child])
    )
    np.testing.assert_allclose(weight, 0.4)
    np.testing.assert_allclose(merged_mean, mean, atol=1e-12)
    np.testing.assert_allclose(merged, covariance, atol=1e-12)
    assert np.linalg.eigvalsh(child).min() > 0


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_every_candidate_is_a_valid_mixture_of_the_same_size(covariance_type):
    x = _three_clusters()
    fit = fit_mixture(jnp.asarray(x), 3, covariance_type=covariance_type, rng_key=0, max_iter=50)
    birth = np.eye(2) * 0.05
    candidates = candidate_moves(
        x,
        fit.params,
        fit.covariances,
        covariance_type,
        n_merges=10,
        n_deletes=1,
        n_splits=4,
        n_births=2,
        birth_covariance=birth,
    )
    # 3 pairs x (3 splits + 2 births), then the lightest deleted x (2 splits + 2 births)
    assert len(candidates) == 15 + 4
    for candidate in candidates:
        np.testing.assert_allclose(candidate.weights.sum(), 1.0, rtol=1e-6)  # float32 fit
        assert (candidate.weights > 0).all() and candidate.means.shape == (3, 2)
        assert candidate.covariances.shape == fit.covariances.shape
        full = expand_to_full(candidate.covariances, covariance_type, 3, 2)
        assert np.linalg.eigvalsh(full).min() > 0
    births = [c for c in candidates if "birth" in c.move and "merge" in c.move]
    assert len(births) == 6
    # A deletion frees the lightest component's slot; it is refilled, never split itself.
    lightest = int(np.argmin(np.asarray(fit.params.weights)))
    deletions = [c.move for c in candidates if c.move.startswith("delete")]
    assert all(move.startswith(f"delete {lightest},") for move in deletions)
    assert f"split {lightest}" not in " ".join(deletions)
    if covariance_type == "full":
        # The newborn sits on a row with the given covariance.
        newborn = births[0]
        slot = int(newborn.move.split("+")[1].split(",")[0])
        assert any(np.allclose(newborn.means[slot], row) for row in x)
        np.testing.assert_allclose(newborn.covariances[slot], birth)


def test_the_search_escapes_two_on_one_and_one_on_two(dtype):
    """From the bad fixed point, plain EM stays; the search reaches the three clusters."""
    x = jnp.asarray(_three_clusters(), dtype)
    start = _initial(*(np.asarray(v, dtype) for v in BAD_START))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        stuck = fit_mixture(x, 3, initial=start, max_iter=200, tol=1e-8)
        found = fit_mixture(x, 3, method="split_merge_em", initial=start, max_iter=200, tol=1e-8)
    truth_start = ([1 / 3] * 3, CENTRES, np.stack([np.eye(2)] * 3))
    truth = fit_mixture(
        x, 3, initial=_initial(*(np.asarray(v, dtype) for v in truth_start)), tol=1e-8
    )
    rel = 1e-5 if dtype == np.float32 else 1e-9
    assert found.extras["moves"], "no move was kept"
    assert found.extras["objective_before_search"] == pytest.approx(stuck.objective, rel=rel)
    assert found.objective > stuck.objective + 100.0
    assert found.objective == pytest.approx(truth.objective, rel=rel)
    order = np.argsort(found.params.means[:, 0] + 2 * found.params.means[:, 1])
    np.testing.assert_allclose(found.params.means[order], CENTRES, atol=0.3)
    # The reported objective is the returned parameters' log joint.
    assert found.objective == pytest.approx(log_joint(x, found.params, "full"), rel=rel)


def test_deletions_alone_also_escape(x64):
    """Freeing a slot by deleting a component (no merges) reaches the same optimum."""
    x = jnp.asarray(_three_clusters())
    start = _initial(*(np.asarray(v) for v in BAD_START))
    options = {"n_merges": 0, "n_deletes": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        merged = fit_mixture(x, 3, method="split_merge_em", initial=start, tol=1e-8)
        deleted = fit_mixture(
            x, 3, method="split_merge_em", initial=start, tol=1e-8, options=options
        )
    assert deleted.extras["moves"] and deleted.extras["moves"][0].startswith("delete ")
    assert deleted.objective == pytest.approx(merged.objective, rel=1e-9)


def test_without_a_prior_no_component_is_left_on_too_few_rows():
    """Maximum likelihood: no births, and no fit keeps a component on fewer than D + 1
    rows (a near-singular component has an unbounded likelihood)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([_three_clusters(3), rng.normal(scale=20.0, size=(3, 2))])
    result = fit_mixture(jnp.asarray(x), 3, method="split_merge_em", rng_key=0, max_iter=200)
    assert result.counts.min() >= 3
    assert not any("birth" in move for move in result.extras["moves"])
    assert result.objective >= result.extras["objective_before_search"]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_the_builder_models_map_by_search_is_its_log_joint(covariance_type):
    """The search starts from the EM fit of the same key and only keeps improvements; its
    objective is the NumPyro model's own log density at the returned sites."""
    x = _three_clusters(per_cluster=60)
    model = ngm.models.gaussian_mixture(3, covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        result = ngm.fit(model, x, method="split_merge_em", rng_key=0)
        plain = ngm.fit(model, x, method="em", rng_key=0)
    assert result.fit.method == "split_merge_em"
    assert result.fit.extras["objective_before_search"] == pytest.approx(plain.objective, rel=1e-6)
    assert result.objective >= plain.objective - 1e-6 * abs(plain.objective)
    expected = float(log_density(model, (x,), {}, result.params)[0])
    assert result.objective == pytest.approx(expected, rel=2e-5)


def test_under_maximum_likelihood_no_move_collapses_a_component():
    """Duplicated rows let a component sit on a few distinct points with a covariance at
    reg_covar: a higher likelihood, but a singular fit. The search must not move there."""
    import sklearn.datasets

    x = np.repeat(sklearn.datasets.load_iris().data[:30], 5, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        gm = ngm.GaussianMixture(4, method="split_merge_em", random_state=0).fit(x)
    smallest = np.linalg.eigvalsh(gm.covariances_).min()
    start = gm.method_results_["objective_before_search"]
    assert smallest >= 10 * gm.reg_covar or not gm.method_results_["moves"], smallest
    assert gm.objective_ >= start


def test_the_chosen_restart_describes_the_returned_fit(capsys):
    """After kept moves, the chosen restart's objective, n_iter and trace are the search's."""
    x = jnp.asarray(_three_clusters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        found = fit_mixture(
            x,
            3,
            method="split_merge_em",
            initial=_initial(*BAD_START),
            max_iter=200,
            tol=1e-8,
            progress_interval=10,
        )
    assert found.extras["moves"]
    best = found.best_restart
    assert found.restarts.objective[best] == found.objective
    stuck_steps = fit_mixture(x, 3, initial=_initial(*BAD_START), max_iter=200, tol=1e-8).n_iter
    assert found.n_iter > stuck_steps
    assert found.best_trace()[-1] == pytest.approx(found.objective / x.shape[0], rel=1e-5)
    # One progress line per round, not one per candidate.
    lines = [line for line in capsys.readouterr().err.splitlines() if "split-merge round" in line]
    assert len(lines) == found.extras["search_rounds"]
    assert "kept 'merge" in lines[0]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_rounds": -1}, ValueError, "max_rounds must be >= 0"),
        ({"n_finish": 0}, ValueError, "n_finish must be >= 1"),
        ({"max_rounds": 2.5}, TypeError, "max_rounds must be an integer"),
        ({"n_merges": None}, TypeError, "n_merges must be an integer"),
        ({"n_births": True}, TypeError, "n_births must be an integer"),
        ({"n_deletes": -1}, ValueError, "n_deletes must be >= 0"),
    ],
)
def test_bad_search_options_are_named(options, error, match):
    with pytest.raises(error, match=match):
        fit_mixture(jnp.asarray(_three_clusters()), 3, method="split_merge_em", options=options)
