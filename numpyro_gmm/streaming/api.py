"""The public entry point :func:`fit_streaming`: validate, wrap the source, run the pipeline."""

from typing import Any, Literal

from numpyro_gmm._types import Array, CovarianceType
from numpyro_gmm.fit_result import FitResult
from numpyro_gmm.fitting import InitialValues
from numpyro_gmm.mixture.covariance import check_covariance_type
from numpyro_gmm.mixture.params import GMMParams
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.streaming.passes import DEFAULT_KAPPA, DEFAULT_T0
from numpyro_gmm.streaming.stream import DEFAULT_BLOCK_SIZE, Stream
from numpyro_gmm.validation import check_prior

__all__ = ["fit_streaming"]


def fit_streaming(
    source: Any,
    n_components: int,
    *,
    covariance_type: CovarianceType = "full",
    method: Literal["stepwise", "exact"] = "stepwise",
    rng_key: Array | int = 0,
    initial: InitialValues | GMMParams | None = None,
    init_params: str = "k-means++",
    init_rows: int = 100_000,
    stepwise_passes: int = 1,
    max_passes: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    prior: GaussianMixturePrior | None = None,
    kappa: float = DEFAULT_KAPPA,
    t0: float = DEFAULT_T0,
    shuffle: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_size: int | None = None,
    sample_dim: str | None = None,
    progress: float | None = None,
) -> FitResult:
    """Fit a Gaussian mixture to data streamed block by block (:mod:`numpyro_gmm.streaming`).

    The fit runs through :func:`numpyro_gmm.pipeline.fit_mixture` (``method="em"`` on a
    :class:`~numpyro_gmm.streaming.stream.Stream`), like every other entry point, so it gives
    the package's warnings (``ConvergenceWarning`` when the exact passes did not converge,
    ``EmptyComponentWarning``).

    Parameters
    ----------
    source : array, memmap, xarray.DataArray, callable or iterable
        Where the rows come from. A one-shot iterator can be read once: it allows a single
        pass (``method="stepwise"`` with ``max_passes=0``, or one exact pass); pass a callable
        returning a fresh iterable for more.
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    method : {"stepwise", "exact"}
        ``"stepwise"``: ``stepwise_passes`` passes of stepwise EM, then up to ``max_passes``
        exact passes; ``"exact"``: exact passes only.
    rng_key : PRNGKey or int
        Seeds the initialization and the block order.
    initial : InitialValues or GMMParams, optional
        Initial values; missing ones come from ``init_params``.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
        Run on the first ``init_rows`` rows of a (shuffled) pass.
    init_rows : int
        Rows read for the initialization.
    stepwise_passes : int
        Passes of stepwise EM (``method="stepwise"``).
    max_passes : int
        Most exact passes; they stop earlier when the per-point log joint changes by less than
        ``tol``. With ``method="stepwise"``, 0 returns the stepwise estimate.
    tol : float
    reg_covar : float
    prior : GaussianMixturePrior, optional
        Conjugate priors (MAP), checked against the data's number of features
        (:func:`numpyro_gmm.validation.check_prior`) as soon as it is known.
    kappa, t0 : float
        Step sizes ``gamma_t = (t + t0)^(-kappa)`` of stepwise EM, ``kappa`` in (0.5, 1].
    shuffle : bool
        Visit the blocks of an indexable source in a random order at each stepwise pass and
        for the initialization sample.
    block_size : int
        Rows per block read from the source (the stepwise minibatch).
    chunk_size : int, optional
        Rows per on-device chunk within a block (default: about ``2**20 / (K D)``).
    sample_dim : str, optional
        The row dimension of an ``xarray.DataArray`` (default its first).
    progress : float, optional
        Seconds between progress lines on stderr (and one line per pass); ``None`` is silent.

    Returns
    -------
    FitResult
        ``objective`` (log joint of the parameters entering the last exact pass),
        ``objective / n_samples`` per point, ``n_iter`` the passes, ``converged``,
        ``best_trace()`` the per-point objective of every pass, and ``extras`` with
        ``pass_kinds`` (``"stepwise"`` or ``"exact"`` per pass), ``seconds_per_pass`` and
        ``stream_method``.
    """
    from numpyro_gmm.pipeline import fit_mixture

    covariance_type = check_covariance_type(covariance_type)
    if isinstance(n_components, bool) or int(n_components) != n_components or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
    if isinstance(max_passes, bool) or int(max_passes) != max_passes or max_passes < 0:
        raise ValueError(f"max_passes must be a non-negative integer, got {max_passes!r}.")
    stream = Stream(
        source,
        method=method,
        init_rows=init_rows,
        stepwise_passes=stepwise_passes,
        kappa=kappa,
        t0=t0,
        shuffle=shuffle,
        block_size=block_size,
        sample_dim=sample_dim,
        progress=progress,
    )
    initial = None if initial is None else InitialValues(*initial)
    n_features = stream.n_features
    if n_features is None and initial is not None and initial.means is not None:
        n_features = int(initial.means.shape[-1])
    if prior is not None and n_features is not None:
        # Early, before any reading; the engine checks again once it has read the rows
        # of a source whose number of features only reading tells.
        check_prior(
            prior,
            n_components=int(n_components),
            n_features=n_features,
            covariance_type=covariance_type,
        )
    return fit_mixture(
        stream,
        int(n_components),
        method="em",
        covariance_type=covariance_type,
        rng_key=rng_key,
        num_restarts=1,
        init_params=init_params,
        initial=initial,
        max_iter=int(max_passes),
        tol=tol,
        reg_covar=reg_covar,
        prior=prior,
        chunk_size=chunk_size,
    )
