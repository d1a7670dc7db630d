"""The scikit-learn facade: protocol, attributes, sampling, warm start, progress."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from numpyro_gmm import GaussianMixture

from helpers import match_components

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
SHAPES = {
    "full": lambda k, d: (k, d, d),
    "tied": lambda k, d: (d, d),
    "diag": lambda k, d: (k, d),
    "spherical": lambda k, d: (k,),
}


@pytest.fixture(scope="module")
def data():
    """Three unit-variance clusters 8 apart: every covariance type is well specified."""
    rng = np.random.default_rng(7)
    means = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    labels = rng.integers(0, 3, 600)
    return means[labels] + rng.normal(size=(600, 2)), labels, means


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_attributes_and_recovery(covariance_type, data):
    x, labels, means = data
    gm = GaussianMixture(3, covariance_type=covariance_type, n_init=4, random_state=0).fit(x)
    k, d = 3, 2
    assert gm.weights_.shape == (k,) and gm.means_.shape == (k, d)
    for name in ("covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(gm, name).shape == SHAPES[covariance_type](k, d)
    assert gm.converged_ and 1 <= gm.n_iter_ == len(gm.lower_bounds_)
    assert gm.lower_bound_ == gm.lower_bounds_[-1]
    assert np.all(np.diff(gm.lower_bounds_) > -1e-4)
    assert gm.restart_objectives_.shape == (4,)
    cluster_means = np.stack([x[labels == j].mean(0) for j in range(3)])
    order = match_components(gm.means_, cluster_means)
    np.testing.assert_allclose(gm.means_[order], cluster_means, atol=0.1)
    proba = gm.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert (gm.predict(x) == proba.argmax(1)).all()
    assert np.mean(np.argsort(order)[gm.predict(x)] == labels) > 0.99
    assert gm.score(x) == pytest.approx(np.mean(gm.score_samples(x)))
    assert gm.objective_ == pytest.approx(gm.score(x) * len(x), rel=1e-4)


def test_sample_follows_the_fitted_mixture(data):
    x, _, _ = data
    gm = GaussianMixture(3, random_state=0, n_init=2).fit(x)
    draws, labels = gm.sample(20000)
    assert draws.shape == (20000, 2) and labels.shape == (20000,)
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / 20000, gm.weights_, atol=0.015)
    for j in range(3):
        np.testing.assert_allclose(draws[labels == j].mean(0), gm.means_[j], atol=0.1)
    with pytest.raises(ValueError, match="Invalid value for .n_samples.: 0"):
        gm.sample(0)


def test_estimator_protocol(data):
    x, _, _ = data
    gm = GaussianMixture(2, covariance_type="diag", n_init=3, random_state=1)
    assert gm.get_params()["covariance_type"] == "diag"
    copy = clone(gm)
    assert copy.get_params() == gm.get_params() and not hasattr(copy, "weights_")
    search = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3, 4]}, cv=3)
    search.fit(x)
    assert search.best_params_["n_components"] >= 3
    with pytest.raises(ValueError, match="Invalid parameter"):
        gm.set_params(banana=1)
    assert "n_init=3" in repr(gm)


def test_warm_start_continues_from_the_previous_solution(data):
    x, _, _ = data
    gm = GaussianMixture(3, warm_start=True, max_iter=1000, random_state=0).fit(x)
    first = gm.objective_
    gm.fit(x)
    # The second fit starts exactly where the first ended, and only improves on it.
    assert gm.lower_bounds_[0] * len(x) == pytest.approx(first, rel=1e-5)
    assert gm.objective_ >= first - 1e-4 * abs(first)
    assert gm.n_iter_ <= 10


def test_same_seed_same_result_and_verbose_progress(data, capsys):
    x, _, _ = data
    a = GaussianMixture(3, n_init=3, init_params="k-means++", random_state=3).fit(x)
    b = GaussianMixture(
        3, n_init=3, init_params="k-means++", random_state=3, verbose=1, verbose_interval=2
    ).fit(x)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.restart_objectives_, b.restart_objectives_)
    err = capsys.readouterr().err
    assert "Initialized restart 1/3" in err and "Initialized restart 3/3" in err
    assert "Iteration 2:" in err and "3/3 restart(s) done" in err


def test_bic_prefers_the_true_number_of_components(data):
    x, _, _ = data
    bics = [GaussianMixture(k, n_init=3, random_state=0).fit(x).bic(x) for k in (1, 2, 3, 4, 5)]
    assert int(np.argmin(bics)) + 1 == 3


def test_map_fit_with_priors_pulls_toward_the_prior(data):
    from numpyro_gmm import GaussianMixturePrior

    x, _, _ = data
    strong = GaussianMixturePrior(
        weight_concentration=np.full(3, 1e4),  # nearly fixes the weights at 1/3
        mean_loc=np.zeros(2),
        mean_precision=1e-3,
        covariance_df=5.0,
        covariance_scale=np.eye(2),
    )
    ml = GaussianMixture(3, n_init=3, random_state=0).fit(x)
    mapped = GaussianMixture(3, n_init=3, random_state=0, prior=strong).fit(x)
    assert np.abs(mapped.weights_ - 1 / 3).max() < np.abs(ml.weights_ - 1 / 3).max()
    np.testing.assert_allclose(mapped.weights_, 1 / 3, atol=0.01)
    # The log joint includes the log prior, so it differs from the log-likelihood.
    assert mapped.objective_ != pytest.approx(mapped.score(x) * len(x), rel=1e-3)


@pytest.mark.filterwarnings("ignore::numpyro_gmm.ConvergenceWarning")  # max_iter=0
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_precisions_init_from_our_own_init_changes_nothing(covariance_type):
    # scikit-learn issue 16944: precisions given as initial values must be used as given.
    # Giving the precisions our init computes must reproduce the fit without them exactly.
    rng = np.random.RandomState(0)
    shifted = rng.randn(300, 2) + np.array([20, 20])
    stretched = rng.randn(300, 2) @ np.array([[0.0, -0.7], [3.5, 0.7]])
    x = np.vstack([shifted, stretched])
    common = dict(covariance_type=covariance_type, random_state=0)
    start = GaussianMixture(2, max_iter=0, **common).fit(x)
    given = GaussianMixture(2, precisions_init=start.precisions_, **common).fit(x)
    default = GaussianMixture(2, **common).fit(x)
    assert given.n_iter_ == default.n_iter_
    np.testing.assert_allclose(given.precisions_cholesky_, default.precisions_cholesky_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=5
@pytest.mark.filterwarnings("ignore::numpyro_gmm.EmptyComponentWarning")
def test_model_selection_tools_give_scikit_learns_numbers(x64):
    """Pipeline, cross_val_score, GridSearchCV, clone and pickle, from the same initial
    parameters as scikit-learn's GaussianMixture: the same scores (float64)."""
    import pickle

    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -1.0]])
    x = np.concatenate([c + rng.normal(size=(100, 3)) for c in centres])
    start = {
        "weights_init": np.full(3, 1 / 3),
        "means_init": np.array([[-1.0, -0.5, 0.0], [1.0, -0.5, 0.5], [-0.5, 1.0, -0.5]]),
        "precisions_init": np.eye(3)[None].repeat(3, 0),
        "tol": 1e-8,
        "max_iter": 500,
    }
    ours = make_pipeline(StandardScaler(), GaussianMixture(3, **start))
    theirs = make_pipeline(StandardScaler(), SkGaussianMixture(3, **start))
    np.testing.assert_allclose(
        cross_val_score(ours, x, cv=5), cross_val_score(theirs, x, cv=5), rtol=1e-9
    )
    grid = {"gaussianmixture__reg_covar": [1e-6, 1e-2], "gaussianmixture__max_iter": [5, 500]}
    searches = [
        GridSearchCV(make_pipeline(StandardScaler(), cls(3, **start)), grid, cv=3).fit(x)
        for cls in (GaussianMixture, SkGaussianMixture)
    ]
    assert searches[0].best_params_ == searches[1].best_params_
    np.testing.assert_allclose(
        searches[0].cv_results_["mean_test_score"],
        searches[1].cv_results_["mean_test_score"],
        rtol=1e-9,
    )
    fitted = GaussianMixture(3, **start).fit(x)
    copy = clone(fitted)
    np.testing.assert_array_equal(copy.get_params()["means_init"], start["means_init"])
    assert not hasattr(copy, "means_")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(x), fitted.predict(x))
    np.testing.assert_array_equal(restored.score_samples(x), fitted.score_samples(x))


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_a_seed_out_of_scikit_learns_range_is_a_clear_error(seed):
    x = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=r"random_state must be an integer between 0 and 2\*\*32"):
        GaussianMixture(2, random_state=seed).fit(x)
