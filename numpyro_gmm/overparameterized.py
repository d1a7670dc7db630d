"""Over-parameterized gradient EM with prune-and-merge (ALGORITHMS.md §2), host side.

The recipe, for a target of ``m`` components:

1. fit ``n = default_n_components(m) = ceil(3 m ln m)`` components with the gradient-EM kernel
   (:mod:`numpyro_gmm.kernels.gradient_em`) from ``n`` distinct random data points, equal
   weights and, in the theory's setting, the known identity covariance;
2. :func:`prune_and_merge`: drop components whose weight is below ``1 / (10 n)``, then merge
   the survivors whose means lie within a radius (single linkage), moment-matching each group;
3. optionally polish the ``m'`` merged components with a few plain EM steps.

**m' may differ from m.** What the theory says converges is the *distribution*: surplus
components either lose their weight or sit on a true mean next to others. The procedure above
reports how many components it finds (``m'``) and does not force ``m' = m``: when ``m' < m``
some true component was never reached (or two true means lie within the merge radius); when
``m' > m`` two fitted components of one true component stayed farther apart than the radius
(or a cluster really is two). :class:`GradientEMResult` then keeps the ``m'`` components and
says so in ``found_target``; refit with ``fit_gaussian_mixture(..., initial=...)`` or change
``merge_radius`` if ``m`` components are required.
"""

import math
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

from numpyro_gmm._types import CovarianceType
from numpyro_gmm.fitting import (
    ConvergenceWarning,
    EmptyComponentWarning,
    FitResult,
    InitialValues,
    fit_gaussian_mixture,
    log_joint,
)
from numpyro_gmm.kernels.gradient_em import DEFAULT_STEP_SIZE
from numpyro_gmm.mixture.params import GMMParams, precisions_cholesky_from_covariances
from numpyro_gmm.validation import check_data, check_n_samples, to_device, working_dtype

__all__ = [
    "DEFAULT_MERGE_SCALE",
    "MergeReport",
    "GradientEMResult",
    "default_n_components",
    "prune_and_merge",
    "fit_gradient_em",
]

DEFAULT_MERGE_SCALE: float = 2.5
"""Default merge radius in fitted standard deviations (see :func:`prune_and_merge`)."""


def default_n_components(m: int) -> int:
    """Number of components to fit for a target of ``m``: ``max(m, ceil(3 m ln m))``.

    ``n >= 3 m ln m`` random data points hit each of ``m`` equal-weight components at least
    once with probability ``>= 1 - 1/m`` (coupon collecting). ``m = 5, 10, 25`` give 25, 70,
    242. For ``m = 1`` the formula gives 0 and one component is all there is to find, so the
    value is 1; ``m = 2`` gives 5.

    Parameters
    ----------
    m : int
        Target number of components, at least 1.

    Returns
    -------
    int
    """
    if int(m) != m or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}.")
    m = int(m)
    return max(m, math.ceil(3 * m * math.log(m)))


@dataclass(frozen=True)
class MergeReport:
    """What :func:`prune_and_merge` did.

    Attributes
    ----------
    n_components_found : int
        ``m'``, the number of merged components.
    groups : list of list of int
        For each merged component (in output order), the original components merged into it.
    pruned : list of int
        Original components dropped for a weight below ``weight_threshold``.
    assignment : np.ndarray, shape (n,)
        Merged index of every original component, ``-1`` for pruned ones.
    weight_threshold, merge_radius : float
        The thresholds used (``merge_radius`` is the base radius; with ``n_samples`` each
        pair's radius also counts the sampling error of the means).
    pruned_weight : float
        Total weight of the pruned components (the merged weights are renormalized to 1).
    """

    n_components_found: int
    groups: list[list[int]]
    pruned: list[int]
    assignment: np.ndarray
    weight_threshold: float
    merge_radius: float
    pruned_weight: float

    @property
    def merged(self) -> list[list[int]]:
        """The groups that hold more than one original component."""
        return [group for group in self.groups if len(group) > 1]

    def __str__(self) -> str:
        lines = [
            f"{self.n_components_found} component(s) found "
            f"(merge radius {self.merge_radius:.4g}, weight threshold {self.weight_threshold:.4g})",
            f"pruned {len(self.pruned)} component(s) {self.pruned} "
            f"(total weight {self.pruned_weight:.4g})",
        ]
        for index, group in enumerate(self.groups):
            lines.append(f"  component {index} <- {group}")
        return "\n".join(lines)


def _expand_covariances(
    covariances: np.ndarray, covariance_type: CovarianceType, n: int, d: int
) -> np.ndarray:
    covariances = np.asarray(covariances, float)
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (n, d, d))
    if covariance_type == "diag":
        return covariances[:, :, None] * np.eye(d)
    return covariances[:, None, None] * np.eye(d)


def _component_scales(covariances_full: np.ndarray) -> np.ndarray:
    """Root mean per-dimension variance ``sqrt(tr Sigma_k / D)`` of every component."""
    d = covariances_full.shape[-1]
    return np.sqrt(np.trace(covariances_full, axis1=-2, axis2=-1) / d)


def _nearest_heavier_links(links: np.ndarray, distances: np.ndarray, weights: np.ndarray):
    """Keep, for every component, only its link to the nearest linked heavier component."""
    size = weights.size
    rank = np.empty(size, int)
    rank[np.lexsort((-np.arange(size), weights))] = np.arange(size)  # ties: lower index heavier
    heavier = rank[None, :] > rank[:, None]
    candidates = np.where(links & heavier, distances, np.inf)
    sparse = np.zeros_like(links)
    has_parent = np.isfinite(candidates).any(axis=1)
    parents = np.argmin(candidates, axis=1)
    sparse[np.flatnonzero(has_parent), parents[has_parent]] = True
    return sparse


def prune_and_merge(
    weights,
    means,
    covariances,
    covariance_type: CovarianceType,
    *,
    weight_threshold: float | None = None,
    merge_radius: float | None = None,
    n_samples: int | None = None,
    linkage: str = "single",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, MergeReport]:
    """Map an over-parameterized fit to the components it found (ALGORITHMS.md §2, choice).

    1. **Prune** components with weight ``< weight_threshold`` (default ``1 / (10 n)``). If
       that would drop every component, the heaviest is kept.
    2. **Merge** the survivors by single linkage: two components are linked when the
       Euclidean distance of their means is at most their linking radius; each connected
       group becomes one component. With ``merge_radius`` given, that radius is used for
       every pair. By default it is ``2.5`` standard deviations,
       ``r = 2.5 * s`` with ``s^2 = sum_k w_k tr(Sigma_k) / (D sum_k w_k)`` the pooled
       per-dimension variance of the survivors (``r = 2.5`` for the unit covariance of the
       theory's setting). When ``n_samples`` is given, the radius of a pair also counts the
       sampling error of the two fitted means, ``r_ij = 2.5 * sqrt(s^2 + tr(Sigma_i) / N_i
       + tr(Sigma_j) / N_j)`` with ``N_i = w_i n_samples`` (choice): a surplus component
       fitted to a handful of a cluster's points sits about ``sqrt(D / N_i)`` from the
       cluster's mean, which in high dimension exceeds any fixed number of standard
       deviations, while true means ``c sqrt(D)`` apart stay unlinked.
    3. **Moment matching.** A group ``G`` becomes weight ``W = sum_G w_k``, mean
       ``mu = sum_G w_k mu_k / W`` and covariance
       ``Sigma = sum_G w_k (Sigma_k + (mu_k - mu)(mu_k - mu)^T) / W``, the first two moments
       of the group's sub-mixture: exact for ``"full"``, its diagonal for ``"diag"``, the mean
       per-dimension variance (``tr Sigma / D``) for ``"spherical"``. A ``"tied"`` model keeps
       its shared covariance (it cannot hold a per-component spread).
    4. The merged weights are renormalized to sum to one, and the merged components are
       ordered by decreasing weight.

    Parameters
    ----------
    weights : array_like, shape (n,)
    means : array_like, shape (n, D)
    covariances : array_like
        Shaped per ``covariance_type`` (as :class:`~numpyro_gmm.fitting.FitResult`).
    covariance_type : {"full", "tied", "diag", "spherical"}
    weight_threshold : float, optional
        Pruning threshold on the weights.
    merge_radius : float, optional
        Linking distance between means, the same for every pair.
    n_samples : int, optional
        Number of data points of the fit; with the default radius, adds the sampling error
        of the means to each pair's radius.

    Returns
    -------
    weights : np.ndarray, shape (m',)
    means : np.ndarray, shape (m', D)
    covariances : np.ndarray
        Shaped per ``covariance_type`` with ``m'`` components.
    report : MergeReport
    """
    weights = np.asarray(weights, float)
    means = np.asarray(means, float)
    n, d = means.shape
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {weights.shape}.")
    full = _expand_covariances(covariances, covariance_type, n, d)
    if weight_threshold is None:
        weight_threshold = 1.0 / (10.0 * n)
    kept = np.flatnonzero(weights >= weight_threshold)
    if kept.size == 0:
        kept = np.array([int(np.argmax(weights))])
    pruned = np.setdiff1d(np.arange(n), kept)
    kept_weights = weights[kept]
    traces = np.trace(full[kept], axis1=-2, axis2=-1)
    if merge_radius is None:
        pooled = float(np.sum(kept_weights * traces) / (np.sum(kept_weights) * d))
        merge_radius = DEFAULT_MERGE_SCALE * math.sqrt(pooled)
        radii = np.full((kept.size, kept.size), merge_radius)
        if n_samples is not None:
            error = traces / np.maximum(kept_weights * n_samples, 1e-12)
            radii = DEFAULT_MERGE_SCALE * np.sqrt(pooled + error[:, None] + error[None, :])
    else:
        radii = np.full((kept.size, kept.size), float(merge_radius))
    distances = np.linalg.norm(means[kept, None, :] - means[None, kept, :], axis=-1)
    links = distances <= radii
    if linkage == "nearest_heavier":
        links = _nearest_heavier_links(links, distances, kept_weights)
    elif linkage != "single":
        raise ValueError(f"linkage must be 'single' or 'nearest_heavier', got {linkage!r}.")
    _, labels = connected_components(csr_array(links), directed=False)
    n_groups = int(labels.max()) + 1
    group_weights = np.array([kept_weights[labels == g].sum() for g in range(n_groups)])
    order = np.argsort(-group_weights, kind="stable")
    out_weights = np.empty(n_groups)
    out_means = np.empty((n_groups, d))
    out_full = np.empty((n_groups, d, d))
    groups: list[list[int]] = []
    assignment = np.full(n, -1)
    for new_index, g in enumerate(order):
        members = kept[labels == g]
        w = weights[members]
        total = w.sum()
        mean = w @ means[members] / total
        offsets = means[members] - mean
        spread = np.einsum("k,kd,ke->de", w, offsets, offsets)
        out_weights[new_index] = total
        out_means[new_index] = mean
        out_full[new_index] = (np.einsum("k,kde->de", w, full[members]) + spread) / total
        groups.append(sorted(members.tolist()))
        assignment[members] = new_index
    out_weights /= out_weights.sum()
    if covariance_type == "full":
        out_covariances = out_full
    elif covariance_type == "tied":
        out_covariances = np.asarray(covariances, float).copy()
    elif covariance_type == "diag":
        out_covariances = np.diagonal(out_full, axis1=-2, axis2=-1).copy()
    else:
        out_covariances = np.trace(out_full, axis1=-2, axis2=-1) / d
    report = MergeReport(
        n_components_found=n_groups,
        groups=groups,
        pruned=pruned.tolist(),
        assignment=assignment,
        weight_threshold=float(weight_threshold),
        merge_radius=float(merge_radius),
        pruned_weight=float(weights[pruned].sum()),
    )
    return out_weights, out_means, out_covariances, report


@dataclass
class GradientEMResult:
    """Result of :func:`fit_gradient_em` (numpy arrays).

    Attributes
    ----------
    params : GMMParams
        Final parameters (``m'`` components): after the polish if one ran, otherwise the
        merged ones.
    covariances : np.ndarray
        Final covariances, shaped per ``covariance_type``.
    covariance_type : str
    objective : float
        Log-likelihood (summed over the data) of ``params``.
    n_components_target, n_components_fit, n_components_found : int
        ``m``, ``n`` and ``m'``.
    merge_report : MergeReport
    gradient_fit : FitResult
        The ``n``-component gradient-EM phase (all restarts; the best one was merged).
    polish_fit : FitResult or None
        The polish phase with the ``m'`` merged components, if ``polish_iter > 0``.
    merged_params : GMMParams
        The merged parameters before any polish.
    """

    params: GMMParams
    covariances: np.ndarray
    covariance_type: str
    objective: float
    n_components_target: int
    n_components_fit: int
    n_components_found: int
    merge_report: MergeReport
    gradient_fit: FitResult
    polish_fit: FitResult | None
    merged_params: GMMParams = field(repr=False)

    @property
    def weights(self) -> np.ndarray:
        """Final mixing weights, shape (m',)."""
        return np.asarray(self.params.weights)

    @property
    def means(self) -> np.ndarray:
        """Final means, shape (m', D)."""
        return np.asarray(self.params.means)

    @property
    def found_target(self) -> bool:
        """Whether ``m' == m``."""
        return self.n_components_found == self.n_components_target

    @property
    def gradient_trace(self) -> np.ndarray:
        """Per-sample log-likelihood of every gradient-EM step of the selected restart."""
        trace = self.gradient_fit.trace[self.gradient_fit.best_restart]
        return trace[np.isfinite(trace)]

    @property
    def polish_trace(self) -> np.ndarray | None:
        """Per-sample objective of every polish step, or ``None`` without a polish."""
        if self.polish_fit is None:
            return None
        trace = self.polish_fit.trace[self.polish_fit.best_restart]
        return trace[np.isfinite(trace)]


def _spherical_identity(covariance_type: CovarianceType, n: int, d: int, variance: float):
    """Precision factors of ``variance * I`` for every component, per covariance type."""
    scale = 1.0 / math.sqrt(variance)
    if covariance_type == "full":
        return np.broadcast_to(np.eye(d) * scale, (n, d, d)).copy()
    if covariance_type == "tied":
        return np.eye(d) * scale
    if covariance_type == "diag":
        return np.full((n, d), scale)
    return np.full(n, scale)


def fit_gradient_em(
    x,
    n_components_target: int,
    *,
    n_components_fit: int | None = None,
    covariance_type: CovarianceType = "spherical",
    learn_covariance: bool = False,
    step_size: float = DEFAULT_STEP_SIZE,
    rng_key: jax.Array | int = 0,
    n_restarts: int = 1,
    max_iter: int = 1000,
    tol: float = 0.0,
    reg_covar: float = 1e-6,
    polish_iter: int = 100,
    polish_tol: float = 1e-6,
    initial_variance: float | None = None,
    weight_threshold: float | None = None,
    merge_radius: float | None = None,
    linkage: str = "nearest_heavier",
    chunk_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> GradientEMResult:
    """Over-parameterized gradient EM, prune-and-merge, and an optional EM polish.

    Parameters
    ----------
    x : array_like, shape (N, D)
        Data (float32, or float64 when JAX's x64 mode is on).
    n_components_target : int
        ``m``, the number of components sought.
    n_components_fit : int, optional
        ``n``; default :func:`default_n_components` ``(m)``.
    covariance_type : {"spherical", "diag", "full", "tied"}
        Structure of the covariances (default spherical).
    learn_covariance : bool
        ``False`` (default, the theory's setting): every covariance is fixed at
        ``initial_variance * I`` in both phases. ``True``: damped EM steps on the covariances
        (see :mod:`numpyro_gmm.kernels.gradient_em`) and a plain EM polish.
    step_size : float
        ``eta`` of the gradient step on the means.
    rng_key : PRNGKey or int
        Seeds the random-from-data initialization.
    n_restarts : int
        Restarts of the gradient phase; the best by final log-likelihood is merged.
    max_iter, tol : int, float
        Loop limits of the gradient phase (``tol`` on the change of the per-sample
        log-likelihood). The default ``tol=0`` runs exactly ``max_iter`` steps: gradient EM
        moves slowly, so a small change of the log-likelihood does not mean that the
        surplus components have settled (and in float32 that change is within round-off).
    reg_covar : float
        Added to the diagonal of learned covariances.
    polish_iter : int
        Steps (same ``tol``) of EM with the merged components; 0 for none. With fixed
        covariances the polish is EM for the weights and means with the covariances held
        fixed (the gradient-EM kernel with ``mean_update="em"``, ``step_size=1``), i.e. exact
        EM for the theory's model; with learned covariances it is plain EM (``method="em"``).
    polish_tol : float
        Convergence threshold of the polish (change of the per-sample objective).
    initial_variance : float, optional
        Variance of the initial (or fixed) spherical covariances. Default 1 with fixed
        covariances; with learned covariances, the mean per-feature variance of the data (a
        broad start that the damped EM steps shrink).
    weight_threshold, merge_radius : float, optional
        Passed to :func:`prune_and_merge` (with ``n_samples = N``, so the default radius
        counts the sampling error of the fitted means).
    chunk_size : int, optional
        Rows per E-step chunk.
    mesh : Mesh, optional
        Run both phases data-parallel over the devices of this one-axis mesh
        (:func:`numpyro_gmm.parallel.data_mesh`).

    Returns
    -------
    GradientEMResult
    """
    x = check_data(x)
    x = x.astype(working_dtype(x.dtype), copy=False)
    n_samples, n_features = x.shape
    m = int(n_components_target)
    n = default_n_components(m) if n_components_fit is None else int(n_components_fit)
    if n < m:
        raise ValueError(f"n_components_fit ({n}) must be at least n_components_target ({m}).")
    check_n_samples(n_samples, n)
    if initial_variance is None:
        initial_variance = float(np.mean(np.var(x, axis=0))) if learn_covariance else 1.0
    if not initial_variance > 0:
        raise ValueError(f"initial_variance must be positive, got {initial_variance}.")
    x_device = to_device(x)
    dtype = x.dtype
    common = dict(
        covariance_type=covariance_type, reg_covar=reg_covar, chunk_size=chunk_size, mesh=mesh
    )
    initial = InitialValues(
        precisions_cholesky=_spherical_identity(covariance_type, n, n_features, initial_variance)
    )
    with warnings.catch_warnings():
        # Surplus components are expected to empty out (that is what pruning is for), and a
        # gradient phase stopped at max_iter is still merged (with tol=0 by design); the
        # polish reports its own convergence.
        warnings.simplefilter("ignore", EmptyComponentWarning)
        if polish_iter > 0 or tol <= 0:
            warnings.simplefilter("ignore", ConvergenceWarning)
        gradient_fit = fit_gaussian_mixture(
            x_device,
            n,
            rng_key=rng_key,
            n_restarts=n_restarts,
            init_method="random_from_data",
            initial=initial,
            max_iter=max_iter,
            tol=tol,
            method="gradient_em",
            method_options={"step_size": float(step_size), "learn_covariance": learn_covariance},
            **common,
        )
    params = gradient_fit.params
    merged_weights, merged_means, merged_covariances, report = prune_and_merge(
        params.weights,
        params.means,
        gradient_fit.covariances,
        covariance_type,
        weight_threshold=weight_threshold,
        merge_radius=merge_radius,
        n_samples=n_samples,
        linkage=linkage,
    )
    m_found = report.n_components_found
    if learn_covariance:
        merged_precisions = np.asarray(
            precisions_cholesky_from_covariances(
                jnp.asarray(merged_covariances, dtype), covariance_type
            )
        )
    else:
        merged_precisions = _spherical_identity(
            covariance_type, m_found, n_features, initial_variance
        )
        merged_covariances = np.asarray(
            _expand_fixed(covariance_type, m_found, n_features, initial_variance)
        )
    merged_params = GMMParams(
        weights=merged_weights.astype(dtype),
        means=merged_means.astype(dtype),
        precisions_cholesky=merged_precisions.astype(dtype),
    )
    polish_fit = None
    final_params, final_covariances = merged_params, merged_covariances
    if polish_iter > 0:
        if learn_covariance:
            method, options = "em", None
        else:
            method, options = "gradient_em", {"mean_update": "em", "step_size": 1.0}
        polish_fit = fit_gaussian_mixture(
            x_device,
            m_found,
            rng_key=0,
            n_restarts=1,
            initial=InitialValues(*merged_params),
            max_iter=polish_iter,
            tol=polish_tol,
            method=method,
            method_options=options,
            **common,
        )
        final_params, final_covariances = polish_fit.params, polish_fit.covariances
        objective = polish_fit.objective
    else:
        objective = log_joint(x_device, merged_params, covariance_type, mesh=mesh)
    return GradientEMResult(
        params=GMMParams(*(np.asarray(leaf) for leaf in final_params)),
        covariances=np.asarray(final_covariances),
        covariance_type=covariance_type,
        objective=float(objective),
        n_components_target=m,
        n_components_fit=n,
        n_components_found=m_found,
        merge_report=report,
        gradient_fit=gradient_fit,
        polish_fit=polish_fit,
        merged_params=merged_params,
    )


def _expand_fixed(covariance_type: CovarianceType, n: int, d: int, variance: float):
    if covariance_type == "full":
        return np.broadcast_to(np.eye(d) * variance, (n, d, d)).copy()
    if covariance_type == "tied":
        return np.eye(d) * variance
    if covariance_type == "diag":
        return np.full((n, d), variance)
    return np.full(n, variance)
