"""scikit-learn's estimator checks (``parametrize_with_checks``) on the facade, for every
covariance type."""

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from numpyro_gmm import GaussianMixture  # noqa: E402
from numpyro_gmm.mixture.covariance import COVARIANCE_TYPES  # noqa: E402

# Checks that do not apply, with the reason (none so far).
INAPPLICABLE: dict[str, str] = {}


@parametrize_with_checks(
    [GaussianMixture(covariance_type=t, random_state=0) for t in COVARIANCE_TYPES],
    expected_failed_checks=lambda estimator: INAPPLICABLE,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
