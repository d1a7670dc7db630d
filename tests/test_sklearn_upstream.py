"""scikit-learn's own GaussianMixture tests, run against ``numpyro_gmm.GaussianMixture``.

The test module ships inside the installed scikit-learn; its test functions are imported from
there (not copied) and the estimator class they use is replaced by ours while they run. They
run with JAX's x64 mode off and on (``jax_mode``): float64 input is fitted in float64 either
way. Tests that exercise private scikit-learn functions only, not the estimator, are left out
below, each with its reason.
"""

import numpy as np
import pytest

pytest.importorskip("sklearn")

import jax  # noqa: E402
from sklearn.mixture.tests import test_gaussian_mixture as upstream  # noqa: E402

import numpyro_gmm  # noqa: E402

# Private scikit-learn internals, not the estimator: the helpers of
# sklearn.mixture._gaussian_mixture (sufficient statistics, log-determinants, log densities,
# parameter checks), mocks of private methods of scikit-learn's class, and the array API
# dispatch of scikit-learn's own implementation.
EXCLUDED = {
    # Public behaviour, but it matches scikit-learn's range message, which swaps the minimum
    # and the maximum ("max value <min>, min value <max>"); ours gives them in order. The
    # other checks of this test (shape, normalization, good weights) are in test_validation.
    "test_check_weights": "asserts a message that swaps min and max",
    # Public, but tied to scikit-learn's KMeans: it pairs precisions computed from the labels
    # of sklearn.cluster.KMeans with our k-means means, and our k-means (in JAX) numbers the
    # clusters differently. The property it guards (precisions_init is used as given) is
    # test_facade.test_precisions_init_from_our_own_init_changes_nothing.
    "test_gaussian_mixture_precisions_init_diag": "pairs scikit-learn's KMeans labels with ours",
    "test_suffstat_sk_full": "private _estimate_gaussian_covariances_full",
    "test_suffstat_sk_tied": "private _estimate_gaussian_covariances_tied",
    "test_suffstat_sk_diag": "private _estimate_gaussian_covariances_diag",
    "test_gaussian_suffstat_sk_spherical": "private _estimate_gaussian_covariances_spherical",
    "test_compute_log_det_cholesky": "private _compute_log_det_cholesky",
    "test_gaussian_mixture_log_probabilities": "private _estimate_log_gaussian_prob",
    "test_gaussian_mixture_estimate_log_prob_resp": "private _estimate_log_prob_resp",
    "test_gaussian_mixture_setting_best_params": "mocks the private _set_parameters",
    "test_gaussian_mixture_precisions_init": "calls the private _set_parameters and _initialize",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "mocks the private _estimate_gaussian_parameters"
    ),
    "test_gaussian_mixture_array_api_compliance": "scikit-learn's array API dispatch",
    "test_gaussian_mixture_raises_where_array_api_not_implemented": (
        "scikit-learn's array API dispatch"
    ),
}

# scikit-learn's tests expect none of our extra warnings (its configuration does not turn
# UserWarnings into errors; ours does): the information they carry is not a failure here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::numpyro_gmm.errors.RegularizationWarning"),
    pytest.mark.filterwarnings("ignore::numpyro_gmm.errors.EmptyComponentWarning"),
]

for _name in dir(upstream):
    if _name.startswith("test_") and _name not in EXCLUDED:
        globals()[_name] = getattr(upstream, _name)


@pytest.fixture(params=["x64 off", "x64 on"], autouse=True)
def jax_mode(request, monkeypatch):
    """Our class in place of scikit-learn's, with JAX's x64 mode off and on."""
    monkeypatch.setattr(upstream, "GaussianMixture", numpyro_gmm.GaussianMixture)
    with jax.enable_x64(request.param == "x64 on"):
        yield


# scikit-learn's conftest.py fixtures that its tests use (its defaults: float32 and float64,
# seed 42).
@pytest.fixture(params=[np.float32, np.float64])
def global_dtype(request):
    return request.param


@pytest.fixture
def global_random_seed():
    return 42
