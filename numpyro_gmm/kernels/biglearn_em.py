"""BigLearn-EM: EM that matches the joint, random marginals and rotated marginals.

Reference: Cong, Y. & Li, S. (2024), "Big Learning Expectation Maximization", AAAI
(arXiv:2312.11926). This module implements the behaviour of the reference implementation as
specified in ``ALGORITHMS.md`` section 4; choices the paper leaves open are marked
**(choice)**.

Every outer step draws one *matching* ``(A, T)``: an orthogonal matrix ``A`` and a subset ``T``
of the coordinates, with ``u ~ U(0, 1)``:

* ``u < p_joint`` -- **joint**: ``A = I``, ``T`` = all coordinates (a plain EM step);
* ``p_joint <= u < p_marginal`` -- **marginal**: ``A = I``, ``T`` a uniformly random subset of
  size ``floor(D b)``, ``b ~ Beta(beta_a, beta_b)`` (possibly empty, see Choices);
* ``u >= p_marginal`` -- **transformed**: ``A`` a fresh Haar-random orthogonal matrix, ``T`` as
  for the marginal.

(So ``p_marginal`` is a cumulative threshold: the marginal matching has probability
``max(p_marginal - p_joint, 0)`` and the transformed one ``1 - max(p_joint, p_marginal)``;
``p_joint=1`` is plain EM with the eigenvalue floor.) The data are rotated,
``Y = X A^T``, and so is the mixture, ``m_k = A mu_k``, ``C_k = A Sigma_k A^T``; the marginal of
a Gaussian mixture on ``T`` is the mixture ``(pi, m_{kT}, C_{k,TT})``. ``inner_steps`` EM steps
of that marginal mixture on ``Y[:, T]`` follow, each

.. math::

    r_{nk} &\\propto \\pi_k \\, \\mathcal{N}(y_{nT} \\mid m_{kT}, C_{k,TT}), \\qquad
    \\tilde\\pi_k = \\frac{1}{N} \\sum_n r_{nk}, \\qquad
    F_k = N \\max(\\text{tiny}, \\tilde\\pi_k), \\\\
    m_{kT} &\\leftarrow \\frac{1}{F_k} \\sum_n r_{nk} \\, y_{nT}, \\qquad
    C_{k,TT} \\leftarrow \\frac{1}{F_k} \\sum_n r_{nk} (y_{nT} - m_{kT})(y_{nT} - m_{kT})^T
    + \\text{reg\\_covar} \\, I, \\\\
    C_k &\\leftarrow \\operatorname{floor}_\\varepsilon(C_k), \\qquad
    \\pi_k \\leftarrow \\frac{\\tilde\\pi_k + \\alpha_\\pi}{\\sum_j (\\tilde\\pi_j + \\alpha_\\pi)},

where entries of ``m_k`` and ``C_k`` outside ``T`` (the cross blocks ``C_{k,T\\bar T}``
included) are left as they are, and ``floor_eps(S) = V diag(max(lambda, eps)) V^T`` from the
eigendecomposition ``S = V diag(lambda) V^T``. Then ``mu_k = A^T m_k`` and
``Sigma_k = floor_eps(A^T C_k A)``.

Implementation notes
--------------------
* Static shapes: ``T`` is a boolean mask. The E-step on the masked coordinates reuses
  :func:`~numpyro_gmm.mixture.estep.sufficient_statistics` on the full ``D`` coordinates with
  the differences outside ``T`` set to zero and the covariance outside ``T`` replaced by the
  identity (zero cross blocks). That adds ``-|T^c| log(2 pi) / 2`` to every log-density, the same
  constant for all components, so the responsibilities are exact and the marginal
  log-likelihood is recovered by adding ``N |T^c| log(2 pi) / 2`` back.
* Statistics are centred at the current means; the update above is rewritten from the centred
  sums exactly (``m = (S1 + N_k c) / F``), so the ``tiny`` floor behaves as in the reference,
  shrinking the mean of a vanishing component toward the origin of the rotated frame.
* The floor is only applied to components that have an eigenvalue below ``eps``; the others
  keep their bits, so entries outside ``T`` are unchanged bit for bit.
* The whole step is jitted; the three kinds are selected with :func:`jax.lax.switch` while
  drawing the matching, and one code path (``A = I`` for joint and marginal) does the update,
  which keeps the cost per step the same for every kind, also under ``vmap`` (where a switch
  would evaluate all branches anyway).

Choices
-------
* **(choice)** ``floor(D b) = 0`` (when ``b < 1 / D``; probability ``D^-beta_a`` with
  ``beta_b = 1``, e.g. 1/32 for ``D = 2`` and about 1e-6 for ``D = 16``) gives an empty ``T``, as
  in the reference code (``int(D * b)`` coordinates, no lower clip): the E-step on no
  coordinates returns ``r_nk = pi_k``, so means and covariances keep their values (up to the
  rotation round trip) and each inner step only smooths the weights,
  ``pi <- (pi + alpha_pi) / (1 + K alpha_pi)``. The specification is silent on this case.
* **(choice)** ``reg_covar`` (the engine's usual regularization) is added to the diagonal of
  the re-estimated ``T`` block before the eigenvalue floor; ``reg_covar = 0`` is the reference.

Comparison with the reference code
----------------------------------
Checked against ``method.py`` / ``function.py`` of the reference (PyTorch, MIT): same
initialization (pi = 1/K, mu_k ~ N(0, I), Sigma_k = I); same cumulative thresholds
(``u < 0.4`` joint, ``u < 0.5`` marginal, else transformed; one ``u`` per outer step); same
``|T| = int(D b)``; in every inner step the E-step uses the *smoothed* weights of the previous
inner step, the mean and covariance use the unsmoothed ``pi~_k`` in ``N max(tiny, pi~_k)``
(``tiny = 1e-5``), the covariance is the scatter about the *new* mean, only the ``T`` entries
(and the ``T x T`` block) change, the floor is applied to the whole ``C_k`` of every component,
and ``pi_k`` is smoothed last; a transformed matching keeps ``(m, C)`` in the rotated frame
across its inner steps, maps back with ``A^T`` and floors again. The joint-EM baseline of the
reference is this kernel with ``p_joint=1, inner_steps=1, weight_smoothing=0``. Remaining
differences: the random streams (PyTorch / SciPy there, JAX here), ``reg_covar`` (above),
float32 eigen-reconstruction ``V diag V^T`` here versus ``V diag V^-1`` there (equal up to
rounding). The ``|T| = 0`` case follows the reference (above).
* **(choice)** inner steps run in the rotated frame and ``(mu, Sigma)`` are mapped back once after
  the last inner step; this equals mapping back after every inner step, because the next inner
  step would rotate them again.
* **(choice)** ``weight_smoothing=None`` means ``alpha_pi = 1 / K`` (the reference's value on
  real data).
* **(choice)** ``info.objective`` is the joint log-likelihood (plus the log prior, with a prior)
  of the parameters that *entered* the step, summed over the data, as for EM. It costs one extra
  full-data pass per outer step (about a fifth of the step with ``inner_steps=5``);
  ``track_objective=False`` skips it and reports the log-likelihood of the entering parameters
  on the step's matched marginal instead (free, but not comparable across steps). BigLearn-EM
  does not increase the joint likelihood monotonically, so run it with ``tol=0``.
* **(choice)** Priors (:class:`~numpyro_gmm.mixture.priors.GaussianMixturePrior`): each matching
  uses the MAP update of the matched marginal under the marginal of the prior. A Dirichlet on
  the weights is unchanged (the weights are shared): ``pi~_k`` becomes the mode
  ``max(N_k + alpha_k - 1, 0) / sum``, while ``F_k`` keeps the data counts. For the
  Normal-Inverse-Wishart ``mu_k ~ N(m0, Sigma_k / kappa0)``, ``Sigma_k ~ IW(nu0, Psi0)``, the
  rotated marginal is ``A mu_k ~ N(A m0, C_k / kappa0)``, ``C_k ~ IW(nu0, A Psi0 A^T)``, and its
  ``T`` block is ``IW(nu0 - (D - |T|), (A Psi0 A^T)_{TT})``, so the block update is the
  conjugate mode with ``|T|`` features:
  ``m_T = (S1 + kappa0 (A m0)_T) / (F + kappa0)`` and
  ``C_TT = (W + kappa0 o o^T + Psi'_TT) / (F + 1 + nu0 - D + 2 |T| + 1)`` with ``o = m_T -
  (A m0)_T`` and the scatter ``W`` about the new mean. For the joint matching this is
  :func:`~numpyro_gmm.mixture.mstep.m_step`'s MAP step (with ``F_k`` for its ``N_k``). The
  independent mean prior ``mu_k ~ N(m0, V0)`` is rejected: its M-step is a conditional
  maximization that couples ``mu_k`` with the whole ``Sigma_k``, which a block update cannot
  honour.

Covariance types
----------------
Only ``"full"`` is supported. ``"diag"`` and ``"spherical"`` are not closed under rotation
(``A Sigma A^T`` of a diagonal ``Sigma`` is full), so the transformed matching has no
structured M-step; a sound variant would need a projection back onto the structure (or
``p_marginal = 1``, marginals only). ``"tied"`` is closed under rotation but needs a pooled
``T``-block update shared by all components, which is not implemented.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_gmm._types import Array, CovarianceType, PRNGKey
from numpyro_gmm.mixture.chunking import chunked_sum, n_rows
from numpyro_gmm.mixture.estep import component_log_prob, sufficient_statistics
from numpyro_gmm.mixture.mstep import map_weights
from numpyro_gmm.mixture.params import (
    GMMParams,
    all_finite,
    covariances_from_precisions_cholesky,
    precisions_cholesky_from_covariances,
)
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior

__all__ = [
    "JOINT",
    "MARGINAL",
    "TRANSFORMED",
    "BigLearnState",
    "BigLearnInfo",
    "Matching",
    "init",
    "build_kernel",
    "get_params",
    "random_orthogonal",
    "sample_matching",
    "floor_eigenvalues",
    "matching_update",
    "floored_em_options",
]

JOINT, MARGINAL, TRANSFORMED = 0, 1, 2


class BigLearnState(NamedTuple):
    """State carried between BigLearn-EM steps.

    Attributes
    ----------
    params : GMMParams
        Current parameters (full covariances, as precision Cholesky factors).
    covariances : Array, shape (K, D, D)
        The same covariances ``Sigma_k``, carried so that entries outside a matched block are
        kept exactly rather than round-tripped through the Cholesky factors.
    """

    params: GMMParams
    covariances: Array


class BigLearnInfo(NamedTuple):
    """Diagnostics of one BigLearn-EM step (not carried).

    Attributes
    ----------
    objective : Array, shape ()
        Joint log-likelihood (plus log prior) of the parameters that entered the step, summed
        over the data; with ``track_objective=False``, their log-likelihood on the matched
        marginal instead.
    marginal_log_likelihood : Array, shape ()
        Log-likelihood of the entering parameters on the matched marginal ``Y[:, T]``.
    kind : Array, shape (), int32
        ``JOINT`` (0), ``MARGINAL`` (1) or ``TRANSFORMED`` (2).
    n_selected : Array, shape (), int32
        ``|T|``.
    is_finite : Array, shape (), bool
        Whether every new parameter is finite.
    """

    objective: Array
    marginal_log_likelihood: Array
    kind: Array
    n_selected: Array
    is_finite: Array


class Matching(NamedTuple):
    """One matching: a rotation and a coordinate subset.

    Attributes
    ----------
    kind : Array, shape (), int32
        ``JOINT``, ``MARGINAL`` or ``TRANSFORMED``.
    mask : Array, shape (D,), bool
        The selected coordinates ``T`` (of the rotated data).
    rotation : Array, shape (D, D)
        The orthogonal ``A`` (the identity for the joint and marginal kinds).
    """

    kind: Array
    mask: Array
    rotation: Array


def init(params: GMMParams) -> BigLearnState:
    """Initial state from initial (full-covariance) parameters."""
    covariances = covariances_from_precisions_cholesky(params.precisions_cholesky, "full")
    return BigLearnState(params=params, covariances=_symmetrize(covariances))


def get_params(state: BigLearnState) -> GMMParams:
    """The parameters held by a BigLearn-EM state."""
    return state.params


def _symmetrize(matrices: Array) -> Array:
    return 0.5 * (matrices + jnp.swapaxes(matrices, -1, -2))


def random_orthogonal(rng_key: PRNGKey, n_features: int, dtype=jnp.float32) -> Array:
    """A Haar-distributed orthogonal ``(D, D)`` matrix.

    ``A = Q diag(sign(diag R))`` from the QR decomposition of a standard Gaussian matrix
    ``G = Q R``; the sign correction makes the distribution exactly Haar (invariant under
    left and right multiplication by orthogonal matrices), both determinant signs included.
    """
    gaussian = jax.random.normal(rng_key, (n_features, n_features), dtype)
    q, r = jnp.linalg.qr(gaussian)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(dtype)
    return q * signs[None, :]


def sample_matching(
    rng_key: PRNGKey,
    n_features: int,
    dtype=jnp.float32,
    *,
    p_joint: float = 0.4,
    p_marginal: float = 0.5,
    beta_a: float = 5.0,
    beta_b: float = 1.0,
) -> Matching:
    """Draw the kind, the subset ``T`` and the rotation ``A`` of one outer step.

    ``u ~ U(0, 1)``: joint if ``u < p_joint``, marginal if ``u < p_marginal``, else
    transformed. ``|T| = floor(D b)`` with ``b ~ Beta(beta_a, beta_b)`` (0 is possible: an empty
    ``T``, as in the reference; **(choice)**), and ``T`` is uniform among subsets of that size.
    """
    key_kind, key_size, key_subset, key_rotation = jax.random.split(rng_key, 4)
    u = jax.random.uniform(key_kind, (), dtype)
    kind = jnp.where(u < p_joint, JOINT, jnp.where(u < p_marginal, MARGINAL, TRANSFORMED))
    kind = kind.astype(jnp.int32)
    fraction = jax.random.beta(key_size, beta_a, beta_b, (), dtype)
    size = jnp.clip(jnp.floor(n_features * fraction).astype(jnp.int32), 0, n_features)
    ranks = jnp.argsort(jax.random.uniform(key_subset, (n_features,), dtype))
    position = jnp.argsort(ranks)  # position of each coordinate in a random order
    subset = position < size
    everything = jnp.ones((n_features,), bool)
    eye = jnp.eye(n_features, dtype=dtype)

    def joint_fn() -> tuple[Array, Array]:
        return everything, eye

    def marginal_fn() -> tuple[Array, Array]:
        return subset, eye

    def transformed_fn() -> tuple[Array, Array]:
        return subset, random_orthogonal(key_rotation, n_features, dtype)

    mask, rotation = lax.switch(kind, (joint_fn, marginal_fn, transformed_fn))
    return Matching(kind=kind, mask=mask, rotation=rotation)


def floor_eigenvalues(matrices: Array, eps: Array | float) -> Array:
    """``V diag(max(lambda, eps)) V^T`` for symmetric matrices of shape (..., D, D).

    Matrices whose eigenvalues are all at least ``eps`` are returned unchanged (bit for bit).
    """
    eigenvalues, eigenvectors = jnp.linalg.eigh(matrices)
    floored = jnp.maximum(eigenvalues, eps)
    rebuilt = _symmetrize(
        (eigenvectors * floored[..., None, :]) @ jnp.swapaxes(eigenvectors, -1, -2)
    )
    needs_floor = jnp.any(eigenvalues < eps, axis=-1)[..., None, None]
    return jnp.where(needs_floor, rebuilt, matrices)


def check_prior(prior: GaussianMixturePrior | None) -> None:
    """Raise ``ValueError`` for a prior the matchings have no closed-form MAP update for."""
    if prior is None:
        return
    if prior.mean_covariance is not None:
        raise ValueError(
            "biglearn_em does not support the independent mean prior (mean_covariance, "
            "mu_k ~ N(m0, V0)): its M-step is a conditional maximization that couples mu_k with "
            "the whole covariance Sigma_k, so a marginal (block) matching has no closed-form MAP "
            "update. Use the Normal-Inverse-Wishart mean prior (mean_precision) or method='em'."
        )
    if prior.variance_rate is not None or prior.variance_concentration is not None:
        raise ValueError(
            "biglearn_em needs full covariances; the Inverse-Gamma variance prior "
            "(variance_concentration, variance_rate) belongs to diag/spherical covariances. "
            "Use an Inverse-Wishart prior (covariance_df, covariance_scale)."
        )
    if (prior.covariance_scale is None) != (prior.covariance_df is None):
        raise ValueError("The Inverse-Wishart prior needs both covariance_df and covariance_scale.")
    if prior.mean_precision is not None and prior.mean_loc is None:
        raise ValueError(
            "The Normal-Inverse-Wishart mean prior needs mean_loc with mean_precision."
        )


def _marginal_statistics(
    y: Array, weights: Array, means: Array, covariances: Array, mask: Array, chunk_size: int
):
    """E-step of the marginal mixture on the masked coordinates, with static shapes.

    Returns the statistics centred at ``means * mask`` and the marginal log-likelihood.
    """
    n_features = y.shape[-1]
    maskf = mask.astype(y.dtype)
    block = mask[:, None] & mask[None, :]
    eye = jnp.eye(n_features, dtype=y.dtype)
    # Selected block of C_k; identity on the unselected coordinates; zero cross blocks.
    masked_covariances = jnp.where(block, covariances, eye)
    masked = GMMParams(
        weights=weights,
        means=means * maskf,
        precisions_cholesky=precisions_cholesky_from_covariances(masked_covariances, "full"),
    )
    stats = sufficient_statistics(y * maskf, masked, "full", chunk_size)
    n_unselected = n_features - jnp.sum(maskf)
    correction = 0.5 * n_unselected * math.log(2 * math.pi) * n_rows(y, chunk_size)
    return stats, stats.log_likelihood + correction


def _with_block(means, covariances, block_means, block_covariances, mask):
    """Each component with its ``T`` block replaced and its conditional given ``T`` kept.

    With ``B = C_aT C_TT^-1`` for the rest ``a`` of the coordinates, the new component is
    ``p_new(y_T) p_old(y_a | y_T)``: ``m_a' = m_a + B (m_T' - m_T)``, ``C_aT' = B C_TT'``,
    ``C_aa' = C_aa - B C_TT B^T + B C_TT' B^T``. A positive-definite block gives a
    positive-definite component, whereas keeping the cross blocks as they are (the
    reference) can make it indefinite when the block shrinks.
    """
    maskf = mask.astype(covariances.dtype)
    rest_f = 1.0 - maskf
    inside = maskf[:, None] * maskf[None, :]
    # C_TT on the block, the identity elsewhere: its inverse is C_TT^-1 on the block, so B
    # is zero outside rows a, columns T.
    embedded = covariances * inside + jnp.diag(rest_f)
    outside = covariances * (rest_f[:, None] * maskf[None, :])  # C_aT
    coefficients = jnp.swapaxes(jnp.linalg.solve(embedded, jnp.swapaxes(outside, -1, -2)), -1, -2)
    new_block = _symmetrize(block_covariances) * inside
    cross = coefficients @ new_block
    rest = covariances * (rest_f[:, None] * rest_f[None, :])  # C_aa
    old_part = coefficients @ covariances @ jnp.swapaxes(coefficients, -1, -2)
    new_part = coefficients @ new_block @ jnp.swapaxes(coefficients, -1, -2)
    updated = new_block + cross + jnp.swapaxes(cross, -1, -2) + rest - old_part + new_part
    shift = jnp.einsum("kat,kt->ka", coefficients, (block_means - means) * maskf)
    new_means = jnp.where(mask, block_means, means + shift)
    return new_means, _symmetrize(updated)


def matching_update(
    x: Array,
    state: BigLearnState,
    matching: Matching,
    *,
    inner_steps: int = 5,
    weight_smoothing: float | None = None,
    eigenvalue_floor_eps: float = 1e-5,
    tiny: float = 1e-5,
    reg_covar: Array | float = 0.0,
    prior: GaussianMixturePrior | None = None,
    chunk_size: int | None = None,
    keep_conditionals: bool = False,
) -> tuple[BigLearnState, Array]:
    """Run the inner EM steps of one matching (module equations) and map back.

    Parameters
    ----------
    x : Array, shape (N, D)
    state : BigLearnState
    matching : Matching
        The rotation ``A`` and subset ``T`` (see :func:`sample_matching`).
    inner_steps : int
        Number of EM steps on the matched marginal.
    weight_smoothing : float, optional
        ``alpha_pi``; ``None`` is ``1 / K``.
    eigenvalue_floor_eps : float
        ``eps`` of the eigenvalue floor.
    tiny : float
        Floor of ``pi~_k`` in the mean and covariance denominators.
    reg_covar : float
        Added to the diagonal of the re-estimated block.
    prior : GaussianMixturePrior, optional
        Dirichlet / Normal-Inverse-Wishart / Inverse-Wishart priors (module docstring).
    chunk_size : int, optional
        Rows per E-step chunk (all rows at once by default).
    keep_conditionals : bool
        Update the rest of each component with the matched block so that its conditional
        given the block is kept (:func:`_with_block`), instead of leaving the cross blocks
        as they are (the reference).

    Returns
    -------
    state : BigLearnState
        The new state.
    marginal_log_likelihood : Array, shape ()
        Log-likelihood of the entering parameters on the matched marginal.
    """
    chunk_size = x.shape[0] if chunk_size is None else chunk_size
    n_samples, n_features = n_rows(x, chunk_size), x.shape[1]
    n_components = state.params.weights.shape[0]
    dtype = x.dtype
    alpha = 1.0 / n_components if weight_smoothing is None else weight_smoothing
    rotation, mask = matching.rotation.astype(dtype), matching.mask
    maskf = mask.astype(dtype)
    block = mask[:, None] & mask[None, :]
    n_selected = jnp.sum(maskf)
    eye = jnp.eye(n_features, dtype=dtype)

    y = x @ rotation.T
    means = state.params.means @ rotation.T
    covariances = _symmetrize(rotation @ state.covariances @ rotation.T)

    # Prior of the matched marginal (zero contributions for flat blocks).
    prior = GaussianMixturePrior() if prior is None else prior
    kappa = jnp.zeros((), dtype)
    prior_loc = jnp.zeros((n_features,), dtype)
    if prior.mean_precision is not None:
        kappa = jnp.asarray(prior.mean_precision, dtype)
        prior_loc = (rotation @ jnp.asarray(prior.mean_loc, dtype)) * maskf
    scale = jnp.zeros((n_features, n_features), dtype)
    # The NIW coupling adds one pseudo-count to the covariance mode.
    denominator_extra = jnp.asarray(float(prior.mean_precision is not None), dtype)
    if prior.covariance_scale is not None:
        psi = jnp.asarray(prior.covariance_scale, dtype)
        scale = jnp.where(block, rotation @ psi @ rotation.T, 0.0)
        df_marginal = jnp.asarray(prior.covariance_df, dtype) - (n_features - n_selected)
        denominator_extra = denominator_extra + df_marginal + n_selected + 1.0

    def weights_from_counts(counts: Array) -> Array:
        if prior.weight_concentration is None:
            estimate = counts / n_samples
        else:
            estimate = map_weights(counts, prior.weight_concentration)
        smoothed = estimate + alpha
        return smoothed / jnp.sum(smoothed)

    def inner_fn(step: int, carry: tuple[Array, Array, Array, Array]):
        weights, means, covariances, first_log_likelihood = carry
        stats, log_likelihood = _marginal_statistics(
            y, weights, means, covariances, mask, chunk_size
        )
        counts = stats.counts
        floored = jnp.maximum(counts, n_samples * tiny)  # F_k = N max(tiny, pi~_k)
        shift = means * maskf
        new_means = (stats.first + counts[:, None] * shift + kappa * prior_loc) / (floored + kappa)[
            :, None
        ]
        offsets = new_means - shift
        cross = stats.first[:, :, None] * offsets[:, None, :]
        scatter = (
            stats.second
            - cross
            - jnp.swapaxes(cross, -1, -2)
            + counts[:, None, None] * offsets[:, :, None] * offsets[:, None, :]
        )
        prior_offsets = new_means - prior_loc
        numerator = scatter + kappa * prior_offsets[:, :, None] * prior_offsets[:, None, :] + scale
        new_block = numerator / (floored + denominator_extra)[:, None, None] + reg_covar * eye
        if keep_conditionals:
            means, covariances = _with_block(means, covariances, new_means, new_block, mask)
        else:
            means = jnp.where(mask, new_means, means)
            covariances = jnp.where(block, _symmetrize(new_block), covariances)
        covariances = floor_eigenvalues(covariances, eigenvalue_floor_eps)
        first_log_likelihood = jnp.where(step == 0, log_likelihood, first_log_likelihood)
        return weights_from_counts(counts), means, covariances, first_log_likelihood

    carry = (state.params.weights, means, covariances, jnp.zeros((), dtype))
    weights, means, covariances, marginal_log_likelihood = lax.fori_loop(
        0, inner_steps, inner_fn, carry
    )
    means = means @ rotation
    covariances = floor_eigenvalues(
        _symmetrize(rotation.T @ covariances @ rotation), eigenvalue_floor_eps
    )
    params = GMMParams(
        weights=weights,
        means=means,
        precisions_cholesky=precisions_cholesky_from_covariances(covariances, "full"),
    )
    return BigLearnState(params=params, covariances=covariances), marginal_log_likelihood


def floored_em_options(eigenvalue_floor: float, *, track_objective: bool = True) -> dict:
    """``build_kernel`` options that make this kernel plain full-covariance EM with the floor.

    ``p_joint=1, inner_steps=1, weight_smoothing=0``: every step is the joint matching, one EM
    step whose covariances go through ``floor_eps`` and whose weights are not smoothed. This
    is the reference's joint-EM baseline, and the recommended final polish of BigLearn-EM
    **(choice)**::

        fit_gaussian_mixture(..., method="biglearn_em", method_options=...,
                             polish_iter=50, polish_method="biglearn_em",
                             polish_options=floored_em_options(eps))

    Plain EM (``polish_method="em"``) has no eigenvalue floor, only ``reg_covar``: where the
    floor is what regularizes the fit (``eps = 1e-2`` on [0, 1]-scaled, nearly discrete
    features), its covariances collapse along near-degenerate directions and the fit
    changes character; the floored polish only removes the weight smoothing and the
    perturbation of the last matching.
    """
    return dict(
        p_joint=1.0,
        inner_steps=1,
        weight_smoothing=0.0,
        eigenvalue_floor=eigenvalue_floor,
        track_objective=track_objective,
    )


def _log_likelihood(x: Array, params: GMMParams, chunk_size: int) -> Array:
    """``sum_n log p(x_n)`` in one chunked pass (no statistics)."""

    def chunk_fn(rows: Array, row_weights: Array, row_index: Array) -> Array:
        del row_index
        log_norm = jax.nn.logsumexp(component_log_prob(rows, params, "full"), axis=1)
        return jnp.sum(row_weights * log_norm)

    return chunked_sum(chunk_fn, x, chunk_size)


def build_kernel(
    covariance_type: CovarianceType,
    reg_covar: Array | float,
    chunk_size: int,
    prior: GaussianMixturePrior | None = None,
    *,
    p_joint: float = 0.4,
    p_marginal: float = 0.5,
    beta_a: float = 5.0,
    beta_b: float = 1.0,
    inner_steps: int = 5,
    weight_smoothing: float | None = None,
    eigenvalue_floor: float = 1e-5,
    tiny: float = 1e-5,
    track_objective: bool = True,
    keep_conditionals: bool = False,
):
    """Return the pure step ``step(rng_key, state, x) -> (BigLearnState, BigLearnInfo)``.

    Parameters
    ----------
    covariance_type : {"full"}
        Only full covariances (module docstring says why).
    reg_covar : float
        Added to the diagonal of every re-estimated block **(choice)**; 0 is the reference.
    chunk_size : int
        Rows per E-step chunk.
    prior : GaussianMixturePrior, optional
        Dirichlet weights and/or Normal-Inverse-Wishart / Inverse-Wishart covariances.
    p_joint, p_marginal : float
        ``u < p_joint``: joint; ``u < p_marginal``: marginal; otherwise transformed.
    beta_a, beta_b : float
        Parameters of ``b ~ Beta(beta_a, beta_b)``, ``|T| = floor(D b)`` (possibly 0).
    inner_steps : int
        EM steps per matching.
    weight_smoothing : float, optional
        ``alpha_pi`` of ``pi_k = (pi~_k + alpha_pi) / sum_j (pi~_j + alpha_pi)``; ``None`` is
        ``1 / K`` **(choice)**; 0 switches smoothing off.
    eigenvalue_floor : float
        ``eps`` of ``floor_eps(S) = V diag(max(lambda, eps)) V^T``.
    tiny : float
        Floor of ``pi~_k`` in the denominators ``N max(tiny, pi~_k)``.
    track_objective : bool
        Whether ``info.objective`` is the joint log-likelihood (one more data pass per step)
        or the free matched-marginal log-likelihood.
    keep_conditionals : bool
        Marginal and transformed matchings keep each component's conditional given the
        matched block (:func:`matching_update`); ``False`` is the reference.

    Raises
    ------
    ValueError
        For a covariance type other than ``"full"``, an unsupported prior, or invalid options.
    """
    if covariance_type != "full":
        raise ValueError(
            f"biglearn_em supports covariance_type='full' only, got {covariance_type!r}: "
            "its transformed matchings rotate the covariances (A Sigma A^T), which does not "
            "preserve diagonal or spherical structure, and a tied variant would need a pooled "
            "block update shared by all components (not implemented). Use "
            "covariance_type='full', or method='em' for the other types."
        )
    if not (0.0 <= p_joint <= 1.0 and 0.0 <= p_marginal <= 1.0):
        raise ValueError(
            f"p_joint and p_marginal must lie in [0, 1] (cumulative thresholds), got "
            f"p_joint={p_joint}, p_marginal={p_marginal}."
        )
    if beta_a <= 0 or beta_b <= 0:
        raise ValueError(f"beta_a and beta_b must be positive, got {beta_a}, {beta_b}.")
    if int(inner_steps) != inner_steps or inner_steps < 1:
        raise ValueError(f"inner_steps must be a positive integer, got {inner_steps}.")
    if weight_smoothing is not None and weight_smoothing < 0:
        raise ValueError(f"weight_smoothing must be >= 0 or None, got {weight_smoothing}.")
    if eigenvalue_floor < 0 or tiny < 0:
        raise ValueError(f"eigenvalue_floor and tiny must be >= 0, got {eigenvalue_floor}, {tiny}.")
    check_prior(prior)

    def step(
        rng_key: PRNGKey, state: BigLearnState, x: Array
    ) -> tuple[BigLearnState, BigLearnInfo]:
        matching = sample_matching(
            rng_key,
            x.shape[-1],
            x.dtype,
            p_joint=p_joint,
            p_marginal=p_marginal,
            beta_a=beta_a,
            beta_b=beta_b,
        )
        new_state, marginal_log_likelihood = matching_update(
            x,
            state,
            matching,
            inner_steps=int(inner_steps),
            weight_smoothing=weight_smoothing,
            eigenvalue_floor_eps=eigenvalue_floor,
            tiny=tiny,
            reg_covar=reg_covar,
            prior=prior,
            chunk_size=chunk_size,
            keep_conditionals=keep_conditionals,
        )
        if track_objective:
            objective = _log_likelihood(x, state.params, chunk_size)
        else:
            objective = marginal_log_likelihood
        if prior is not None:
            objective = objective + log_prior(state.params, prior, "full")
        info = BigLearnInfo(
            objective=objective,
            marginal_log_likelihood=marginal_log_likelihood,
            kind=matching.kind,
            n_selected=jnp.sum(matching.mask).astype(jnp.int32),
            is_finite=all_finite(new_state),
        )
        return new_state, info

    return step
