"""A scikit-learn style ``GaussianMixture`` on the numpyro_gmm engine.

It accepts scikit-learn's constructor arguments with their meaning, plus ``method`` (the
training algorithm) and ``prior`` (conjugate priors for MAP-EM). Differences from
scikit-learn, all deliberate:

- the ``n_init`` restarts run as one vectorized, jitted program; the best is chosen as
  scikit-learn chooses it (the highest lower bound, of the parameters entering the last
  iteration) for ``method="em"``, and by the log joint of the returned parameters for the
  other methods (as :func:`numpyro_gmm.fit` and :func:`numpyro_gmm.fit_mixture` do for every
  method); restart ``r`` starts from the same point whatever ``n_init`` is;
- computations run in the precision of the input: float64 for float64 (or integer) data,
  whatever JAX's global x64 setting (scoped with ``jax.enable_x64``), float32 for float32
  data (about twice as fast; pass ``X.astype(np.float32)`` to choose it);
- ``verbose`` progress goes to stderr, every ``verbose_interval`` iterations;
- ``devices`` runs the fit data-parallel over several devices (rows sharded, sufficient
  statistics summed across devices; same result up to float reassociation).
"""

import inspect
import numbers

import numpy as np
from scipy.special import logsumexp

from numpyro_gmm.errors import NotFittedError
from numpyro_gmm.fit_result import FitResult
from numpyro_gmm.fitting import InitialValues, weighted_log_prob
from numpyro_gmm.mixture.covariance import is_matrix_type
from numpyro_gmm.mixture.params import (
    GMMParams,
    n_parameters,
    precisions_cholesky_from_precisions,
    precisions_from_precisions_cholesky,
)
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.parallel import data_mesh
from numpyro_gmm.pipeline import DEFAULTS, METHODS, fit_mixture
from numpyro_gmm.progress import Every
from numpyro_gmm.validation import (
    check_data,
    check_initial_values,
    check_n_samples,
    check_options,
    check_prior,
    check_reg_covar_scale,
    feature_names,
    precision_of,
    to_device,
)

__all__ = ["GaussianMixture", "METHODS"]

try:  # scikit-learn is optional: with it, the facade is a first-class sklearn estimator.
    from sklearn.base import BaseEstimator, DensityMixin
    from sklearn.utils.validation import validate_data

    _ESTIMATOR_BASES: tuple[type, ...] = (DensityMixin, BaseEstimator)
except ImportError:
    _ESTIMATOR_BASES = ()


def _numpy_random_state(random_state) -> np.random.RandomState | np.random.Generator:
    """scikit-learn's ``check_random_state``, also accepting a numpy Generator."""
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, numbers.Integral):
        return np.random.RandomState(int(random_state))
    if isinstance(random_state, np.random.RandomState | np.random.Generator):
        return random_state
    raise ValueError(
        f"random_state must be None, an int, or a numpy RandomState/Generator; got "
        f"{random_state!r}."
    )


_MAX_SEED = 2**32 - 1


def _seed_from(random_state) -> int:
    """An integer seed for JAX: the int itself, or one drawn from the numpy generator (which
    advances it, as scikit-learn's estimators advance theirs)."""
    if isinstance(random_state, numbers.Integral):
        if not 0 <= int(random_state) <= _MAX_SEED:
            raise ValueError(
                f"random_state must be an integer between 0 and 2**32 - 1 (as in "
                f"scikit-learn), got {int(random_state)}."
            )
        return int(random_state)
    rng = _numpy_random_state(random_state)
    draw = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
    return int(draw(2**31))


class GaussianMixture(*_ESTIMATOR_BASES):
    """Gaussian mixture fitted by EM (or MAP-EM with ``prior``), scikit-learn compatible.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the change of the per-sample log joint.
    reg_covar : float, default=1e-6
        Positive value added to the diagonal of every covariance.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts, run together as one vectorized program.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weights_init, means_init, precisions_init : array-like, optional
        User initial values (scikit-learn shapes); they replace the init method's.
    random_state : int, RandomState, Generator or None
    warm_start : bool, default=False
        Start the next ``fit`` from the current solution (with one restart).
    verbose : int, default=0
        If positive, print progress to stderr every ``verbose_interval`` iterations.
    verbose_interval : int or numpyro_gmm.progress.Every, default=10
        Iterations between progress lines; ``Every(seconds=1.0)`` prints them by elapsed
        time instead (about one a second, whatever the time per iteration).
    method : {"em", "biglearn_em", "gradient_em", "split_merge_em"}, default="em"
        Training algorithm (see :mod:`numpyro_gmm.pipeline`). ``"gradient_em"`` fits
        ``ceil(3 m ln m)`` components, prunes and merges them to the ``m'`` it finds
        (``n_components_found_``), then merges or splits those to ``n_components``. Its
        covariances are learned by default (``method_options={"learn_covariance": False}``
        keeps them at the identity, the setting of its theory, which depends on the data's
        units). ``"biglearn_em"`` fits full covariances, and diag or spherical ones with a
        single feature (its rotated matchings keep no other structure).
        ``"split_merge_em"`` runs EM, then a greedy search from the best restart over
        merge (optionally delete), split and (under a covariance prior) birth moves,
        keeping a move only when it raises the objective; ``method_results_["moves"]``
        lists the moves kept.
    method_options : dict, optional
        Options of the method (e.g. BigLearn-EM's ``p_joint``, ``weight_smoothing``,
        ``eigenvalue_floor``, ``polish_iter``; gradient EM's ``step_size``,
        ``merge_radius``).
    prior : GaussianMixturePrior, optional
        Conjugate priors; with them ``fit`` finds the MAP (the posterior mode).
    devices : int, sequence of devices, jax Mesh or None, default=None
        ``None``: one device. Otherwise fit data-parallel over these devices (an int ``n``:
        the first ``n`` of ``jax.devices()``); see :func:`numpyro_gmm.parallel.data_mesh`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shaped per covariance type: full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
        ``precisions_cholesky_`` is upper-triangular with ``precision = U U^T``.
    converged_ : bool
    n_iter_ : int
        Iterations of the chosen restart (for gradient EM and BigLearn-EM, the method's own
        steps plus those of its polish, so it can exceed ``max_iter``).
    lower_bound_ : float
        Per-sample log joint of the parameters entering the last iteration of the best
        restart.
    lower_bounds_ : list of float
        The same, for every iteration of the best restart.
    objective_ : float
        Log joint (log-likelihood plus log prior) of the fitted parameters.
    restart_objectives_ : ndarray of shape (n_init,)
        Final log joint of every restart.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        Names of the features seen in ``fit`` (string column names of a DataFrame, or the
        last coordinate of a DataArray); not set otherwise.
    n_components_found_ : int
        Components the method found before landing on ``n_components`` (gradient EM's
        prune-and-merge; ``n_components`` for the other methods).
    method_results_ : dict
        Method-specific results (gradient EM: ``merge_report``, ``n_components_fit``,
        ``adjustments``, the merges or splits from the ``m'`` found to ``n_components``).
    fit_result_ : FitResult
        Everything the fit produced (every restart's objective, n_iter, converged and failed
        flags, the chosen restart, traces); :meth:`to_datatree` writes it.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = DEFAULTS.covariance_type,
        tol: float = DEFAULTS.tol,
        reg_covar: float = DEFAULTS.reg_covar,
        max_iter: int = DEFAULTS.max_iter,
        n_init: int = DEFAULTS.num_restarts,
        init_params: str = DEFAULTS.init_params,
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: "int | Every" = 10,
        method: str = "em",
        method_options: dict | None = None,
        prior: GaussianMixturePrior | None = None,
        devices=None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.method = method
        self.method_options = method_options
        self.prior = prior
        self.devices = devices

    # -- scikit-learn estimator protocol -------------------------------------------------

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments, as scikit-learn's ``BaseEstimator.get_params``."""
        del deep
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "GaussianMixture":
        """Set constructor arguments, as scikit-learn's ``BaseEstimator.set_params``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r}; valid parameters: {valid}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not (
                isinstance(value, str | int | float | bool | type(None))
                and value == defaults[name].default
            )
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- fitting ---------------------------------------------------------------------------

    def _validate(self) -> None:
        check_options(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            init_params=self.init_params,
            reg_covar=self.reg_covar,
            tol=self.tol,
            max_iter=self.max_iter,
            n_init=self.n_init,
        )
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; use one of {METHODS}.")

    def _prepare(self, X, *, reset: bool = False) -> np.ndarray:
        """``X`` checked as a float array (float32 kept, anything else float64); with
        ``reset`` its feature names and count are recorded, otherwise checked against fit's."""
        # Computed in the input's own precision (precision_of), so nothing is lost to float32.
        x = check_data(X, check_precision=False)
        if _ESTIMATOR_BASES:  # scikit-learn's own checks and messages for feature names
            validate_data(self, X, reset=reset, skip_check_array=True)
        elif not reset and x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        if reset:
            self.n_features_in_ = x.shape[1]
            names = feature_names(X)
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        return x

    def _initial_values(self, n_features: int) -> InitialValues:
        if self.warm_start and hasattr(self, "weights_"):
            return InitialValues(self.weights_, self.means_, self.precisions_cholesky_)
        weights, means, precisions = check_initial_values(
            self.weights_init,
            self.means_init,
            self.precisions_init,
            n_components=self.n_components,
            n_features=n_features,
            covariance_type=self.covariance_type,
        )
        precisions_cholesky = None
        if precisions is not None:
            precisions_cholesky = np.asarray(
                precisions_cholesky_from_precisions(precisions, self.covariance_type)
            )
        return InitialValues(weights, means, precisions_cholesky)

    def fit(self, X, y=None) -> "GaussianMixture":
        """Estimate the parameters from ``X`` of shape (n_samples, n_features)."""
        del y
        self._validate()
        x = self._prepare(X, reset=True)
        check_n_samples(x.shape[0], self.n_components)
        check_reg_covar_scale(x, self.reg_covar)
        with precision_of(x.dtype):
            self._fit(x)
        return self

    def _fit(self, x: np.ndarray) -> None:
        initial = self._initial_values(x.shape[1])
        prior = None
        if self.prior is not None:
            prior = check_prior(
                self.prior,
                n_components=self.n_components,
                n_features=x.shape[1],
                covariance_type=self.covariance_type,
            )
        warm = self.warm_start and hasattr(self, "weights_")
        result = fit_mixture(
            to_device(x),
            self.n_components,
            method=self.method,
            covariance_type=self.covariance_type,
            rng_key=_seed_from(self.random_state),
            num_restarts=1 if warm else self.n_init,
            init_params=self.init_params,
            initial=initial,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            prior=prior,
            progress_interval=self.verbose_interval if self.verbose else None,
            options=self.method_options,
            mesh=None if self.devices is None else data_mesh(self.devices),
            previous_objective=self.lower_bound_ if warm else None,
            restart_rule="lower_bound" if self.method == "em" else "objective",
        )
        self._store(result)

    def _store(self, result: FitResult) -> None:
        self.weights_ = result.params.weights
        self.means_ = result.params.means
        self.precisions_cholesky_ = result.params.precisions_cholesky
        self.precisions_ = np.asarray(
            precisions_from_precisions_cholesky(self.precisions_cholesky_, self.covariance_type)
        )
        self.covariances_ = result.covariances
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bounds_ = result.best_trace().tolist()
        self.lower_bound_ = self.lower_bounds_[-1] if self.lower_bounds_ else -np.inf
        self.objective_ = result.objective
        self.restart_objectives_ = result.restarts.objective
        self.method_results_ = result.extras
        self.n_components_found_ = int(result.extras.get("n_components_found", result.n_components))
        self.fit_result_ = result

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then return the most likely component of every row of ``X``."""
        return self.fit(X, y).predict(X)

    # -- inference -------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _weighted_log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        x = self._prepare(X)
        # In the fit's precision: float64 parameters are not rounded to float32.
        dtype = np.result_type(x.dtype, np.asarray(self.means_).dtype)
        with precision_of(dtype):
            params = GMMParams(self.weights_, self.means_, self.precisions_cholesky_)
            return np.asarray(weighted_log_prob(x.astype(dtype), params, self.covariance_type))

    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood ``log p(x_n)`` of every row, shape (n_samples,)."""
        return logsumexp(self._weighted_log_prob(X), axis=1)

    def score(self, X, y=None) -> float:
        """Mean per-sample log-likelihood."""
        del y
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities, shape (n_samples, n_components)."""
        log_prob = self._weighted_log_prob(X)
        return np.exp(log_prob - logsumexp(log_prob, axis=1, keepdims=True))

    def predict(self, X) -> np.ndarray:
        """Most likely component of every row."""
        return np.argmax(self._weighted_log_prob(X), axis=1)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` points and their component labels."""
        self._check_fitted()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}; it must be an integer >= 1."
            )
        # scikit-learn's draws, in its order: the same parameters and random_state give the
        # same sample.
        rng = _numpy_random_state(self.random_state)
        weights = np.asarray(self.weights_, np.float64)
        counts = rng.multinomial(n_samples, weights / weights.sum())
        means = np.asarray(self.means_, np.float64)
        covariances = np.asarray(self.covariances_, np.float64)
        if is_matrix_type(self.covariance_type):
            shared = self.covariance_type == "tied"
            draws = [
                rng.multivariate_normal(mean, covariances if shared else covariances[k], int(c))
                for k, (mean, c) in enumerate(zip(means, counts, strict=True))
            ]
        else:
            scales = np.sqrt(covariances)
            draws = [
                mean + rng.standard_normal(size=(int(c), means.shape[1])) * scale
                for mean, scale, c in zip(means, scales, counts, strict=True)
            ]
        labels = np.concatenate([np.full(c, k, dtype=int) for k, c in enumerate(counts)])
        return np.vstack(draws), labels

    def to_datatree(self, X=None, *, feature_names=None, attrs=None):
        """The fit as an ArviZ 1.x ``xarray.DataTree`` (:mod:`numpyro_gmm.datatree`).

        The layout is the one :meth:`numpyro_gmm.MAPResult.to_datatree` writes for the
        builder model :func:`numpyro_gmm.models.gaussian_mixture` with the same covariance
        type: variables ``weights``, ``locs`` and the covariance site, observed site ``obs``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            The data for ``observed_data`` and ``log_likelihood``.
        feature_names : sequence of str, optional
            Default: ``feature_names_in_`` when set, else ``x0, x1, ...``.
        attrs : dict, optional
            More root attributes.
        """
        from numpyro_gmm.datatree import PosteriorLayout, build_datatree
        from numpyro_gmm.mixture.covariance import COVARIANCE_SITES

        self._check_fitted()
        x = self._prepare(X)
        if feature_names is None and hasattr(self, "feature_names_in_"):
            feature_names = list(self.feature_names_in_)
        covariance_site = COVARIANCE_SITES[self.covariance_type]
        point = {
            "weights": np.asarray(self.weights_),
            "locs": np.asarray(self.means_),
            covariance_site: np.asarray(self.covariances_),
        }
        axes = {
            "weights": 0,
            "locs": 0,
            covariance_site: None if self.covariance_type == "tied" else 0,
        }
        layout = PosteriorLayout.of(
            point,
            axes,
            n_features=self.n_features_in_,
            n_components=int(np.shape(self.weights_)[0]),
            feature_names=feature_names,
        )
        # X, not x: the feature names of a DataFrame are checked against fit's.
        log_prob = self._weighted_log_prob(X)
        log_likelihood = logsumexp(log_prob, axis=1)
        # Only plain values: what from_datatree can give back to the constructor. The
        # class's own parameters, whatever a subclass's constructor looks like.
        params = {
            name: getattr(self, name)
            for name in GaussianMixture._get_param_names()
            if isinstance(getattr(self, name), str | int | float | bool | dict | type(None))
        }
        return build_datatree(
            self.fit_result_,
            point,
            layout,
            objective=self.objective_,
            observed=x,
            log_likelihood=log_likelihood,
            responsibilities=np.exp(log_prob - log_likelihood[:, None]),
            attrs={
                "covariance_type": self.covariance_type,
                "estimator_params": params,
                "feature_names_in": hasattr(self, "feature_names_in_"),
                **(attrs or {}),
            },
        )

    @classmethod
    def from_datatree(cls, tree) -> "GaussianMixture":
        """A fitted estimator from a tree written by :meth:`to_datatree` (or ``numpyro-gmm
        fit``): ``predict``, ``predict_proba``, ``score_samples`` and ``sample`` work as on
        the estimator that wrote it.

        Parameters
        ----------
        tree : xarray.DataTree, str or path
            The tree, or the path of its netCDF file.

        Returns
        -------
        GaussianMixture

        See Also
        --------
        numpyro_gmm.saved_fit.load_gaussian_mixture
        """
        from numpyro_gmm.saved_fit import load_gaussian_mixture

        return load_gaussian_mixture(tree, cls=cls)

    def _n_parameters(self) -> int:
        n_components, n_features = self.means_.shape
        return n_parameters(n_components, n_features, self.covariance_type)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        x = check_data(X, check_precision=False)
        return float(-2 * self.score(x) * x.shape[0] + self._n_parameters() * np.log(x.shape[0]))

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        n_samples = check_data(X, check_precision=False).shape[0]
        return float(-2 * self.score(X) * n_samples + 2 * self._n_parameters())
