"""Undo label switching: match mixture components to a reference by Hungarian matching.

The components of a mixture are exchangeable, so a MAP, each restart and each NUTS draw may
label them differently (and a NUTS chain may swap labels as it runs). Before two fits are put
side by side, or before ``r_hat`` of a mixture posterior means anything, the components of
each fit (or draw) are permuted to match a reference, for example the MAP.

How components are matched
--------------------------
Each component is described by a feature vector: the values, along the component axis, of
the matched sites (by default every site that has a component axis), each site divided by
the spread of its reference values across components so that sites in different units
weigh alike. The permutation minimizing the summed Euclidean distance between the
reference's and the candidate's component vectors is found by Hungarian matching
(:func:`numpyro_gmm.diagnostics.match_means`); it is then applied to every site with a
component axis. Draws are matched one at a time (``scipy.optimize.linear_sum_assignment``
per draw), which is fast for the tens of components and thousands of draws of a typical
posterior.

Which axis of a site is the component axis
------------------------------------------
:func:`component_axes` reads it from the model: the axis of a plate whose size is the
number of components ``K`` (the builder models' ``components`` plate); outside such a plate,
an axis of size ``K`` (the leading one first, as for the weights) or none (a tied
covariance). Each guess is checked on the model itself: permuting the chosen axes of all
sites at once must permute the columns of the mixture's ``(N, K)`` component
log-probabilities the same way, so a shared site whose size happens to be ``K`` is not taken
for a per-component one. When no guess passes (an unusual parameterization) an error asks
for ``component_axes`` explicitly.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from numpyro_gmm.diagnostics import match_means

if TYPE_CHECKING:
    import xarray as xr

    from numpyro_gmm.map_result import MAPResult
    from numpyro_gmm.numpyro_bridge import MixtureModel

__all__ = [
    "component_axes",
    "match_components",
    "permute_components",
    "relabel",
    "relabel_draws",
]

# Checking a guess costs one evaluation of the model; stop after this many.
_MAX_AXIS_GUESSES = 64

#: Name of the component dimension in numpyro_gmm's DataTrees.
COMPONENT_DIM = "component"


def _batch_ndim(site: Mapping[str, Any]) -> int:
    return int(np.ndim(site["value"])) - int(site["fn"].event_dim)


def _candidate_axes(
    mixture: MixtureModel, params: Mapping[str, Any]
) -> dict[str, list[int | None]]:
    """Possible component axes of every latent site, most likely first (module docstring)."""
    from numpyro import handlers

    k = mixture.n_components
    substituted = handlers.substitute(handlers.seed(mixture.model, 0), data=dict(params))
    trace = handlers.trace(substituted).get_trace(*mixture.args, **mixture.kwargs)
    candidates: dict[str, list[int | None]] = {}
    for name in mixture.latent_sites:
        site = trace[name]
        shape = np.shape(site["value"])
        plate_axes = [
            _batch_ndim(site) + frame.dim
            for frame in site["cond_indep_stack"]
            if frame.size == k and frame.dim is not None
        ]
        if len(plate_axes) == 1 and 0 <= plate_axes[0] < len(shape):
            candidates[name] = [plate_axes[0]]
        else:
            # Outside a components plate: an axis of size K (leading first), or none at all
            # (a shared site whose size merely equals K, such as a tied covariance with D = K).
            candidates[name] = [axis for axis, size in enumerate(shape) if size == k] + [None]
    return candidates


def _axes_permute_components(
    mixture: MixtureModel, params: Mapping[str, Any], axes: Mapping[str, int | None]
) -> bool:
    """Whether permuting ``axes`` permutes the component log-probabilities alike."""
    import jax.numpy as jnp

    k = mixture.n_components
    if k < 2:
        return True
    permutation = np.roll(np.arange(k), 1)
    values = {name: np.asarray(value) for name, value in params.items()}
    permuted = permute_components(values, permutation, axes)

    def log_probs(sites):
        as_jax = {name: jnp.asarray(value) for name, value in sites.items()}
        return np.asarray(mixture.component_log_probs(as_jax))

    before = log_probs(values)
    try:
        after = log_probs(permuted)
    except ValueError:  # e.g. a permuted shared matrix is no longer a valid covariance
        return False
    expected = before[:, permutation]
    finite = np.isfinite(expected)
    scale = np.maximum(np.abs(expected[finite]).max(initial=1.0), 1.0)
    tolerance = (1e-4 if before.dtype == np.float32 else 1e-9) * scale
    agree = np.array_equal(np.isfinite(after), finite) and bool(
        np.all(np.abs(after[finite] - expected[finite]) <= tolerance)
    )
    return agree


def component_axes(
    mixture: MixtureModel | MAPResult,
    params: Mapping[str, Any] | None = None,
    *,
    axes: Mapping[str, int | None] | None = None,
) -> dict[str, int | None]:
    """Which axis of each latent site indexes the mixture components.

    Parameters
    ----------
    mixture : MixtureModel or MAPResult
        The model bound to its data (``MAPResult.mixture``), or a result (its MAP is then
        the point at which the axes are checked).
    params : mapping, optional
        Constrained values of the latent sites at which to check the axes (default: the
        result's MAP; required when ``mixture`` is a ``MixtureModel``).
    axes : mapping, optional
        Known axes (site -> axis, or None for a site shared by all components); they
        override the guess for the sites they name.

    Returns
    -------
    dict
        Site name -> component axis (a non-negative int), or None.

    Raises
    ------
    ValueError
        If permuting the axes does not permute the mixture's components (pass ``axes``).
    """
    if hasattr(mixture, "mixture"):  # a MAPResult
        params = mixture.params if params is None else params
        mixture = mixture.mixture
    if params is None:
        raise ValueError("params (constrained values of the latent sites) are required.")
    if not axes and mixture.has_distinct_families():
        # Components told apart by their families cannot switch labels: no site is
        # indexed by component.
        return {name: None for name in params}
    candidates = _candidate_axes(mixture, params)
    if axes:
        unknown = set(axes) - set(candidates)
        if unknown:
            raise ValueError(
                f"component_axes names {sorted(unknown)}, which are not latent sites of the "
                f"model (sites: {list(candidates)})."
            )
        for name, axis in axes.items():
            ndim = max(np.ndim(params[name]), 1)
            candidates[name] = [None if axis is None else int(axis) % ndim]
    names = list(candidates)
    tried = 0
    for choice in itertools.product(*(candidates[name] for name in names)):
        chosen = dict(zip(names, choice, strict=True))
        if _axes_permute_components(mixture, params, chosen):
            return chosen
        tried += 1
        if tried >= _MAX_AXIS_GUESSES:
            break
    raise ValueError(
        "Could not tell which axis of each latent site indexes the mixture components: "
        f"no choice among {candidates} makes a permutation of the sites a permutation of "
        "the mixture's components. Pass component_axes={site: axis or None} explicitly."
    )


def _component_features(
    values: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    axes: Mapping[str, int | None],
    match_on: Sequence[str],
    batch_ndim: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Standardized component feature vectors: ``(..., K, F)`` for values, ``(K, F)`` ref."""
    value_blocks, reference_blocks = [], []
    for name in match_on:
        axis = axes.get(name)
        if axis is None:
            raise ValueError(f"Site {name!r} has no component axis and cannot be matched on.")
        ref = np.moveaxis(np.asarray(reference[name], np.float64), axis, 0)
        ref = ref.reshape(ref.shape[0], -1)
        val = np.moveaxis(np.asarray(values[name], np.float64), batch_ndim + axis, batch_ndim)
        val = val.reshape(*val.shape[: batch_ndim + 1], -1)
        # Each feature in units of its spread over the values and the reference together,
        # at least a tenth of its magnitude: the reference's own spread across components
        # can be ~0 (near-equal weights) and would let that site outweigh the ones that
        # tell the components apart.
        pooled = np.concatenate([ref, val.reshape(-1, ref.shape[1])])
        spread = np.maximum(pooled.std(axis=0), 0.1 * np.sqrt(np.mean(pooled**2, axis=0)))
        spread = np.where(spread > 0, spread, 1.0)
        reference_blocks.append(ref / spread)
        value_blocks.append(val / spread)
    return np.concatenate(value_blocks, axis=-1), np.concatenate(reference_blocks, axis=-1)


def _default_match_on(axes: Mapping[str, int | None], reference: Mapping[str, Any]) -> list[str]:
    sites = [name for name, axis in axes.items() if axis is not None and name in reference]
    if not sites:
        raise ValueError("No site has a component axis; there is nothing to relabel.")
    return sites


class _Reference(NamedTuple):
    """What relabelling matches against: values, component axes and, when a model tells
    it, the number of components."""

    values: dict[str, np.ndarray]
    axes: dict[str, int | None]
    n_components: int | None = None

    def fixed_labels(self, match_on: Sequence[str] | None) -> bool:
        """No site has a component axis: every permutation leaves the draws as they are."""
        return match_on is None and all(self.axes.get(name) is None for name in self.values)

    def identity(self, batch_shape: tuple[int, ...]) -> np.ndarray:
        if self.n_components is None:
            raise ValueError("No site has a component axis; there is nothing to relabel.")
        return np.broadcast_to(np.arange(self.n_components), (*batch_shape, self.n_components))


def _reference_axes(reference: Any, axes: Mapping[str, int | None] | None) -> _Reference:
    """Reference values and component axes from a MAPResult or a dict of sites."""
    if hasattr(reference, "mixture"):  # a MAPResult: the model says which axes
        values = {name: np.asarray(v) for name, v in reference.params.items()}
        found = component_axes(reference, axes=axes)
        return _Reference(values, found, reference.mixture.n_components)
    values = {name: np.asarray(v) for name, v in dict(reference).items()}
    if axes is None:
        raise ValueError(
            "With a dict reference, pass component_axes={site: axis or None} (or pass the "
            "MAPResult itself as the reference, whose model tells the axes)."
        )
    return _Reference(values, {name: None if a is None else int(a) for name, a in axes.items()})


def match_components(
    params: Mapping[str, Any],
    reference: Mapping[str, Any] | MAPResult,
    *,
    component_axes: Mapping[str, int | None] | None = None,
    match_on: Sequence[str] | None = None,
) -> np.ndarray:
    """The permutation of ``params``' components that best matches ``reference``.

    Parameters
    ----------
    params : mapping
        Site name -> value (constrained), one fit.
    reference : mapping or MAPResult
        The fit to match (for example ``result.params``, or the result itself).
    component_axes : mapping, optional
        Site -> component axis (None: no component axis). Inferred from the model when
        ``reference`` is a :class:`~numpyro_gmm.MAPResult`; required otherwise.
    match_on : sequence of str, optional
        Sites whose values describe a component (default: every site with a component
        axis), each standardized by its reference spread across components.

    Returns
    -------
    numpy.ndarray
        ``permutation`` of shape (K,): component ``permutation[j]`` of ``params`` is
        matched to component ``j`` of the reference, so
        :func:`permute_components` ``(params, permutation, ...)`` relabels ``params``.
    """
    reference = _reference_axes(reference, component_axes)
    if reference.fixed_labels(match_on):
        return reference.identity(())
    ref, axes = reference.values, reference.axes
    sites = list(match_on) if match_on is not None else _default_match_on(axes, ref)
    features, ref_features = _component_features(params, ref, axes, sites, batch_ndim=0)
    permutation, _ = match_means(features, ref_features)
    return permutation


def permute_components(
    params: Mapping[str, Any],
    permutation: Any,
    component_axes: Mapping[str, int | None],
    *,
    batch_ndim: int = 0,
) -> dict[str, np.ndarray]:
    """Reorder the components of every site that has a component axis.

    Parameters
    ----------
    params : mapping
        Site name -> array, with ``batch_ndim`` leading sample axes.
    permutation : array_like of int
        Shape (K,), or ``batch_shape + (K,)`` for one permutation per draw. Component ``j``
        of the output is component ``permutation[..., j]`` of the input.
    component_axes : mapping
        Site -> component axis within one draw's value (None: left unchanged). Sites not
        named are left unchanged.
    batch_ndim : int
        Number of leading sample axes (0 for one fit, 1 for ``(draw,)``, 2 for
        ``(chain, draw)``).

    Returns
    -------
    dict
        New arrays (numpy).
    """
    permutation = np.asarray(permutation, dtype=np.intp)
    out = {}
    for name, value in params.items():
        value = np.asarray(value)
        axis = component_axes.get(name)
        if axis is None:
            out[name] = value
            continue
        moved = np.moveaxis(value, batch_ndim + axis, batch_ndim)
        index = permutation.reshape(
            permutation.shape[:-1] + (1,) * (batch_ndim - permutation.ndim + 1) + (-1,)
        )
        index = index.reshape(index.shape + (1,) * (moved.ndim - index.ndim))
        taken = np.take_along_axis(moved, np.broadcast_to(index, moved.shape), axis=batch_ndim)
        out[name] = np.moveaxis(taken, batch_ndim, batch_ndim + axis)
    return out


def relabel(
    params: Mapping[str, Any],
    reference: Mapping[str, Any] | MAPResult,
    *,
    component_axes: Mapping[str, int | None] | None = None,
    match_on: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Permute the components of one fit to match a reference (Hungarian matching).

    Parameters
    ----------
    params : mapping
        Site name -> constrained value (e.g. another restart's or another method's MAP).
    reference : mapping or MAPResult
        The fit whose labelling to adopt.
    component_axes, match_on
        See :func:`match_components`.

    Returns
    -------
    dict
        ``params`` with every site's component axis reordered.

    Examples
    --------
    >>> aligned = relabel(other_result.params, result)  # doctest: +SKIP
    """
    reference = _reference_axes(reference, component_axes)
    if reference.fixed_labels(match_on):
        return {name: np.asarray(value) for name, value in params.items()}
    permutation = match_components(
        params, reference.values, component_axes=reference.axes, match_on=match_on
    )
    return permute_components(params, permutation, reference.axes)


def _relabel_arrays(
    samples: Mapping[str, np.ndarray],
    reference: _Reference,
    match_on: Sequence[str] | None,
    batch_ndim: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if reference.fixed_labels(match_on):
        batch_shape = next(iter(samples.values())).shape[:batch_ndim] if samples else ()
        return dict(samples), reference.identity(batch_shape)
    ref, axes = reference.values, reference.axes
    sites = list(match_on) if match_on is not None else _default_match_on(axes, ref)
    features, ref_features = _component_features(samples, ref, axes, sites, batch_ndim)
    batch_shape = features.shape[:batch_ndim]
    flat = features.reshape(-1, *features.shape[batch_ndim:])
    permutations = np.stack([match_means(draw, ref_features)[0] for draw in flat])
    permutations = permutations.reshape(*batch_shape, -1)
    relabelled = permute_components(
        {name: samples[name] for name in samples}, permutations, axes, batch_ndim=batch_ndim
    )
    return relabelled, permutations


def relabel_draws(
    samples: Mapping[str, Any] | xr.DataTree,
    reference: Mapping[str, Any] | MAPResult,
    *,
    component_axes: Mapping[str, int | None] | None = None,
    match_on: Sequence[str] | None = None,
    batch_ndim: int | None = None,
    group: str = "posterior",
    return_permutations: bool = False,
):
    """Permute the components of every posterior draw to match a reference.

    Parameters
    ----------
    samples : mapping or xarray.DataTree
        Draws as a dict of arrays with leading sample axes (``mcmc.get_samples()`` gives
        one, ``(draw,)``; ``get_samples(group_by_chain=True)`` gives two, ``(chain, draw)``),
        or a DataTree whose ``group`` has sample dims ``chain`` and ``draw`` (for example
        from ``arviz.from_numpyro``). Sites not in the reference are left unchanged.
    reference : mapping or MAPResult
        The fit whose labelling to adopt (typically the MAP).
    component_axes : mapping, optional
        Site -> component axis within one draw; inferred from the model when ``reference``
        is a :class:`~numpyro_gmm.MAPResult`.
    match_on : sequence of str, optional
        See :func:`match_components`.
    batch_ndim : int, optional
        Number of leading sample axes of a dict (default: inferred from the reference's
        shapes). Ignored for a DataTree.
    group : str
        DataTree group to relabel.
    return_permutations : bool
        Also return the permutation applied to each draw, shape ``sample_shape + (K,)``.

    Returns
    -------
    dict or xarray.DataTree
        The same kind of object as ``samples``, relabelled (a new object; a DataTree's other
        groups are shared, its relabelled group gets the attr ``relabelled = 1``). With
        ``return_permutations``, a pair ``(relabelled, permutations)``.
    """
    reference = _reference_axes(reference, component_axes)
    ref = reference.values
    if hasattr(samples, "children") and hasattr(samples, "dataset"):  # an xarray.DataTree
        import xarray as xr

        dataset = samples[group].to_dataset()
        names = [name for name in dataset.data_vars if name in ref]
        arrays = {}
        for name in names:
            other = [d for d in dataset[name].dims if d not in ("chain", "draw")]
            arrays[name] = dataset[name].transpose("chain", "draw", *other).values
        relabelled, permutations = _relabel_arrays(arrays, reference, match_on, batch_ndim=2)
        updated = dataset.copy()
        for name in names:
            other = [d for d in dataset[name].dims if d not in ("chain", "draw")]
            updated[name] = (("chain", "draw", *other), relabelled[name])
            updated[name] = updated[name].transpose(*dataset[name].dims)
            updated[name].attrs = dataset[name].attrs
        updated.attrs = {**dataset.attrs, "relabelled": 1}
        tree = samples.copy()
        tree[group] = xr.DataTree(updated)
        return (tree, permutations) if return_permutations else tree
    values = {name: np.asarray(value) for name, value in dict(samples).items()}
    if batch_ndim is None:
        inferred = {np.ndim(values[name]) - np.ndim(ref[name]) for name in ref if name in values}
        if len(inferred) != 1:
            raise ValueError(
                "Could not infer the number of sample axes from the shapes; pass batch_ndim."
            )
        batch_ndim = inferred.pop()
    present = {name: values[name] for name in values if name in ref}
    relabelled, permutations = _relabel_arrays(present, reference, match_on, batch_ndim)
    out = {**values, **relabelled}
    return (out, permutations) if return_permutations else out
