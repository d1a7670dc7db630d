"""Bad input fails early with a message that says what to do."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from numpyro_gmm import GaussianMixture
from numpyro_gmm.sklearn import NotFittedError

X = np.random.default_rng(0).normal(size=(30, 2))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            np.where(np.arange(60).reshape(30, 2) == 7, np.nan, X),
            ValueError,
            "contains NaN.*impute",
        ),
        (np.where(np.arange(60).reshape(30, 2) == 7, np.inf, X), ValueError, "infinity.*Remove"),
        (X[:, 0], ValueError, r"reshape\(-1, 1\)"),
        (X[None], ValueError, "Expected a 2-D array"),
        (np.empty((0, 2)), ValueError, "empty"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "must contain numbers"),
        (pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]}), TypeError, "select_dtypes"),
        (X + 1j, ValueError, "Complex data not supported"),
        (scipy.sparse.csr_matrix(X), TypeError, r"sparse matrix.*toarray\(\)"),
        (X.astype(object).tolist() + [[{"a": 1}, 2.0]], TypeError, "must contain numbers"),
    ],
)
def test_bad_data(data, error, message):
    with pytest.raises(error, match=message):
        GaussianMixture(2).fit(data)


def test_fewer_samples_than_components():
    with pytest.raises(ValueError, match="n_samples >= n_components.*fewer components"):
        GaussianMixture(5).fit(X[:3])


def test_one_row_is_refused_even_for_one_component():
    """As scikit-learn: one row has no spread; the fit would be reg_covar alone."""
    import numpyro_gmm as ngm

    with pytest.raises(ValueError, match="at least 2 samples.*one row has no spread"):
        GaussianMixture(1).fit(X[:1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        ngm.fit(ngm.models.gaussian_mixture(1, "diag"), X[:1])
    # Scoring one row of a fitted mixture is fine.
    assert np.isfinite(GaussianMixture(1).fit(X[:5]).score(X[:1]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reg_covar": -1e-6}, "reg_covar must be a finite number >= 0"),
        ({"covariance_type": "banana"}, "Unknown covariance_type 'banana'; use one of"),
        ({"init_params": "magic"}, "Unknown init_params 'magic'; use one of"),
        ({"method": "nuts"}, "Unknown method 'nuts'; use one of"),
        ({"n_init": 0}, "n_init must be an integer >= 1"),
        ({"max_iter": -1}, "max_iter must be an integer >= 0"),
        ({"tol": -1.0}, "tol must be a finite number >= 0"),
        ({"n_components": 0}, "n_components must be an integer >= 1"),
        ({"random_state": "seed"}, "random_state must be None, an int"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**{"n_components": 2, **options}).fit(X)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weights_init": [0.2, 0.2]}, "should be normalized"),
        (
            {"weights_init": [1.5, -0.5]},
            r"range \[0, 1\], but got min value -0.50000, max value 1.50000",
        ),
        (
            {"weights_init": [[0.5], [0.5]]},
            r"'weights' should have the shape of \(2,\), but got \(2, 1\)",
        ),
        ({"weights_init": [1.0]}, "should have the shape"),
        ({"means_init": np.zeros((3, 2))}, "should have the shape"),
        ({"precisions_init": -np.eye(2)[None].repeat(2, 0)}, "symmetric, positive-definite"),
        ({"precisions_init": np.eye(3)[None].repeat(2, 0)}, "should have the shape"),
    ],
)
def test_bad_initial_values(options, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(2, **options).fit(X)


def test_use_before_fit_and_feature_mismatch():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixture(2).predict(X)
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features.*expecting 2"):
        gm.predict(np.zeros((4, 3)))


@pytest.mark.parametrize(
    ("covariance_type", "fields", "message"),
    [
        ("full", {"weight_concentration": [0.5, 2.0]}, "must be >= 1"),
        ("full", {"weight_concentration": [1.0, np.nan]}, "NaN or infinity"),
        ("full", {"weight_concentration": [1.0, 1.0, 1.0]}, "should have shape"),
        (
            "full",
            {"mean_loc": [0.0, 0.0], "mean_precision": 1.0, "mean_covariance": np.eye(2)},
            "not both",
        ),
        ("full", {"mean_precision": 1.0}, "needs prior.mean_loc"),
        ("full", {"mean_loc": [0.0, 0.0], "mean_precision": -1.0}, "must be > 0"),
        ("full", {"mean_loc": [0.0, 0.0], "mean_covariance": -np.eye(2)}, "positive definite"),
        ("full", {"covariance_df": 0.5, "covariance_scale": np.eye(2)}, "must be > n_features - 1"),
        ("tied", {"covariance_df": 3.0}, "needs both"),
        (
            "diag",
            {"covariance_df": 3.0, "covariance_scale": np.eye(2)},
            "use variance_concentration",
        ),
        ("full", {"variance_concentration": 1.0, "variance_rate": 1.0}, "use covariance_df"),
        ("spherical", {"variance_concentration": 0.0, "variance_rate": 1.0}, "must be > 0"),
    ],
)
def test_bad_priors(covariance_type, fields, message):
    from numpyro_gmm import GaussianMixturePrior

    prior = GaussianMixturePrior(**fields)
    with pytest.raises(ValueError, match=message):
        GaussianMixture(2, covariance_type=covariance_type, prior=prior).fit(X)


def test_prior_of_the_wrong_type():
    with pytest.raises(TypeError, match="GaussianMixturePrior"):
        GaussianMixture(2, prior={"weight_concentration": [1, 1]}).fit(X)


def test_object_arrays_of_numbers_fit_like_float_arrays():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, (40, 2)), rng.normal(3, 1, (40, 2))])
    as_float = GaussianMixture(2, random_state=0).fit(x)
    as_object = GaussianMixture(2, random_state=0).fit(x.astype(object))
    np.testing.assert_array_equal(as_object.means_, as_float.means_)


def test_predict_refuses_reordered_columns():
    frame = pd.DataFrame(X, columns=["a", "b"])
    gm = GaussianMixture(2, random_state=0).fit(frame)
    with pytest.raises(ValueError, match="same order as they were in fit"):
        gm.predict(frame[["b", "a"]])
