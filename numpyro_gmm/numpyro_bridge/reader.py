"""Find the mixture in a NumPyro model and expose it as pure functions of the latent sites.

Three ways of writing a mixture are understood:

- **Style A**: an observed site whose distribution is ``MixtureSameFamily`` (possibly wrapped
  by NumPyro in ``ExpandedDistribution`` / ``Independent`` inside plates);
- **Style B**: an observed ``MixtureGeneral``;
- **Style C**: a ``Categorical`` assignment site enumerated in parallel
  (``config_enumerate``), whose child is the observed site.

For all three, ``component_log_probs(params)`` is the (N, K) matrix
``log pi_k + log p_k(x_n | params)`` and ``log_prior(params)`` the sum of the latent sites'
log densities in the constrained space, without a Jacobian, so that
``log_joint = sum_n logsumexp_k(component_log_probs) + log_prior`` is NumPyro's own log joint
(``log_density``, or the enumerated log density for style C).
"""

import functools
import inspect
import sys
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import transforms
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_uniform

from numpyro_gmm.program_cache import ProgramCache

__all__ = [
    "UnsupportedModelError",
    "MixtureModel",
    "draw_trace",
    "check_model_call",
    "read_model",
    "restore_numpyro_submodules",
    "unwrap",
]


def restore_numpyro_submodules() -> None:
    """Bind every imported ``numpyro.*`` submodule to its parent package.

    When ``arviz`` is imported before ``numpyro``, its lazy loader registers ``numpyro`` and
    the submodules imported afterwards can be missing as attributes of their packages
    (``numpyro.distributions.distribution``, ``numpyro.infer.initialization``): then
    ``numpyro.factor``, NUTS and ``az.from_numpyro`` fail with an AttributeError.
    """
    for name, module in list(sys.modules.items()):
        parent, _, child = name.rpartition(".")
        if parent.split(".")[0] == "numpyro" and module is not None and parent in sys.modules:
            if not hasattr(sys.modules[parent], child):
                setattr(sys.modules[parent], child, module)


restore_numpyro_submodules()

_WRAPPERS = (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)


class UnsupportedModelError(ValueError):
    """The model cannot be fitted; the message names the site and says why."""


def unwrap(fn):
    """The distribution inside NumPyro's wrappers (plates' expansion, ``to_event``, masks)."""
    while isinstance(fn, _WRAPPERS):
        fn = fn.base_dist
    return fn


def _is_mixture(fn) -> bool:
    return isinstance(unwrap(fn), dist.MixtureSameFamily | dist.MixtureGeneral)


def _is_enumerated(site) -> bool:
    return site["type"] == "sample" and site.get("infer", {}).get("enumerate") == "parallel"


def _site_scale(site):
    """The factor NumPyro multiplies the site's log density by (``handlers.scale``, a
    subsampled plate), 1 when none."""
    scale = site.get("scale")
    return 1.0 if scale is None else scale


def _site_mask(fn):
    """The mask of a distribution (``handlers.mask``, ``.mask()``) as 0/1 weights, 1 when
    none."""
    mask = 1.0
    while isinstance(fn, _WRAPPERS):
        if isinstance(fn, dist.MaskedDistribution):
            mask = mask * jnp.asarray(fn._mask, dtype=float)
        fn = fn.base_dist
    return mask


def _scaled_log_prob(site) -> jax.Array:
    """The site's log density as NumPyro's ``log_density`` counts it (scaled, masked)."""
    return _site_scale(site) * site["fn"].log_prob(site["value"])


class MixtureModel(NamedTuple):
    """A NumPyro mixture model bound to its data, as pure functions of the latent sites.

    Attributes
    ----------
    model : callable
    args, kwargs : tuple, dict
        Arguments the model is called with (the data first).
    style : {"A", "B", "C"}
    mixture_site : str
        The observed site.
    assignment_site : str or None
        The enumerated assignment site (style C).
    latent_sites : tuple of str
        Continuous latent sites, the parameters of the fit.
    n_components : int
    supports : dict
        Constraint of every latent site.
    extra_sites : tuple of str
        Observed sites other than the mixture (``numpyro.factor`` terms, other likelihoods):
        terms of the log joint that depend on the parameters but not on the assignments.
    """

    model: Callable
    args: tuple
    kwargs: dict
    style: str
    mixture_site: str
    assignment_site: str | None
    latent_sites: tuple[str, ...]
    n_components: int
    supports: dict
    extra_sites: tuple[str, ...] = ()

    # -- the trace at given parameters ---------------------------------------------------

    def trace_at(self, params: dict, args: tuple | None = None):
        """The model's trace with its latent sites at ``params`` (constrained)."""
        args = self.args if args is None else args
        substituted = handlers.substitute(handlers.seed(self.model, 0), data=params)
        return handlers.trace(substituted).get_trace(*args, **self.kwargs)

    def _enumerated_trace(self, params: dict, args: tuple):
        from numpyro.contrib.funsor import enum
        from numpyro.contrib.funsor import trace as funsor_trace
        from numpyro.contrib.funsor.infer_util import plate_to_enum_plate

        with plate_to_enum_plate(), enum(first_available_dim=-2):
            substituted = handlers.substitute(self.model, data=params)
            return funsor_trace(substituted).get_trace(*args, **self.kwargs)

    def _site_log_priors_from_trace(self, trace) -> dict[str, jax.Array]:
        priors = {}
        for name in self.latent_sites:
            priors[name] = jnp.sum(_scaled_log_prob(trace[name]))
        return priors

    def _log_prior_from_trace(self, trace) -> jax.Array:
        """Every term of the log joint but the mixture's: the latent sites' log densities and
        the extra observed sites' (factors, other likelihoods), each scaled as NumPyro
        scales it."""
        terms = [*self._site_log_priors_from_trace(trace).values()]
        terms += [jnp.sum(_scaled_log_prob(trace[name])) for name in self.extra_sites]
        return sum(terms, start=jnp.zeros(()))

    def weighted_log_probs_and_log_prior(
        self, params: dict, args: tuple | None = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(N, K) ``log pi_k + log p_k(x_n)``, the (N,) weight of each row in the log joint
        (the mixture site's ``scale`` times its mask; 1 for most models) and the rest of the
        log joint, so that ``log_joint = sum_n w_n logsumexp_k(log_probs) + rest``."""
        args = self.args if args is None else args
        if self.style == "C":
            trace = self._enumerated_trace(params, args)
            log_probs = self._enumerated_log_probs(trace)
            # Masks are inside the observed site's log density (a masked row's joint is the
            # assignment's prior, which sums to one); the scale weighs the row.
            weights = _site_scale(trace[self.mixture_site])
        else:
            trace = self.trace_at(params, args)
            site = trace[self.mixture_site]
            log_probs = unwrap(site["fn"]).component_log_probs(site["value"])
            log_probs = log_probs.reshape(-1, self.n_components)
            weights = _site_scale(site) * _site_mask(site["fn"])
        weights = jnp.broadcast_to(jnp.reshape(weights, (-1,)), log_probs.shape[:1])
        return log_probs, weights.astype(log_probs.dtype), self._log_prior_from_trace(trace)

    def _enumerated_log_probs(self, trace) -> jax.Array:
        assignment = trace[self.assignment_site]
        observed = trace[self.mixture_site]
        joint = assignment["fn"].log_prob(assignment["value"]) + observed["fn"].log_prob(
            observed["value"]
        )
        return joint.reshape(self.n_components, -1).T

    def component_log_probs_and_log_prior(
        self, params: dict, args: tuple | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """(N, K) ``log pi_k + log p_k(x_n)`` and the rest of the log joint, from one trace
        (:meth:`weighted_log_probs_and_log_prior` without the rows' weights).

        ``args`` replaces the model's arguments (e.g. new data of the same structure).
        """
        log_probs, _, rest = self.weighted_log_probs_and_log_prior(params, args)
        return log_probs, rest

    def component_log_probs(self, params: dict, args: tuple | None = None) -> jax.Array:
        """(N, K) matrix ``log pi_k + log p_k(x_n | params)``."""
        return self.component_log_probs_and_log_prior(params, args)[0]

    def log_prior(self, params: dict) -> jax.Array:
        """Sum of the latent sites' log densities (constrained space, no Jacobian) and of the
        extra observed sites' (factors, other likelihoods)."""
        return self.component_log_probs_and_log_prior(params)[1]

    def site_log_priors(self, params: dict, args: tuple | None = None) -> dict[str, jax.Array]:
        """Each latent site's log density at ``params`` (constrained), summed over its shape."""
        args = self.args if args is None else args
        return self._site_log_priors_from_trace(self.trace_at(params, args))

    def log_joint(self, params: dict, args: tuple | None = None) -> jax.Array:
        """The model's log joint at ``params`` (constrained), discrete assignments summed out:
        NumPyro's ``log_density`` (every site, scales and masks included)."""
        log_probs, weights, rest = self.weighted_log_probs_and_log_prior(params, args)
        return jnp.sum(weights * jax.nn.logsumexp(log_probs, axis=1)) + rest

    def structure_key(self) -> tuple:
        """What compiled programs of this model depend on besides shapes: the model
        function, its mixture layout and latent sites (a cache key; the data are not in it)."""
        return (
            self.model,
            self.style,
            self.mixture_site,
            self.assignment_site,
            self.latent_sites,
            self.n_components,
            self.extra_sites,
        )

    def has_distinct_families(self) -> bool:
        """Whether the components are of different families (a ``MixtureGeneral`` of, say, a
        Normal and a StudentT): then no permutation relabels them, and no site has a
        component axis."""
        if self.style != "B":
            return False
        site = draw_trace(self.model, 0, *self.args, **self.kwargs)[self.mixture_site]
        families = {type(c) for c in unwrap(site["fn"]).component_distributions}
        return len(families) > 1

    def weighs_rows(self) -> bool:
        """Whether the mixture site is scaled or masked (some row weighs other than 1 in the
        log joint)."""
        site = draw_trace(self.model, 0, *self.args, **self.kwargs)[self.mixture_site]
        weights = _site_scale(site) * _site_mask(site["fn"])
        return not bool(np.all(np.asarray(weights) == 1))

    def compiled(self, name: str) -> Callable:
        """The method ``name`` (a function of ``(params, args)``) as a jitted function,
        cached on the model's structure, so that scoring parameters costs one program rather
        than one compilation per operation of the model. Call it with the model's arguments,
        e.g. ``mixture.compiled("log_joint")(params, mixture.args)``.

        Arguments that are not arrays (e.g. a number of components used as a shape) cannot
        be traced: such models, and models with keyword arguments (which the program would
        close over), get the method itself, run operation by operation.
        """
        if self.kwargs or not _all_arrays(self.args):
            return getattr(self, name)
        bare = self.without_data()
        return _COMPILED.get((*self.structure_key(), name), lambda: jax.jit(getattr(bare, name)))

    def without_data(self) -> "MixtureModel":
        """The same model with no arguments bound: what a cached program may close over
        (callers pass the arguments, so the cache keeps no data alive)."""
        return self._replace(args=())

    # -- constrained <-> unconstrained ----------------------------------------------------

    def transforms(self) -> dict[str, transforms.Transform]:
        return {name: biject_to(support) for name, support in self.supports.items()}

    def constrain(self, unconstrained: dict) -> dict:
        return {name: t(unconstrained[name]) for name, t in self.transforms().items()}

    def unconstrain(self, params: dict) -> dict:
        return {name: t.inv(params[name]) for name, t in self.transforms().items()}


_COMPILED = ProgramCache(maxsize=32)


def _all_arrays(tree) -> bool:
    return all(isinstance(leaf, np.ndarray | jax.Array) for leaf in jax.tree.leaves(tree))


#: Half-width of the start's box in unconstrained space. NumPyro's samplers start in
#: (-2, 2); there a full covariance's Cholesky factor has off-diagonal entries up to 2 and a
#: diagonal down to exp(-2), so in 13 or more dimensions its covariance is too ill-conditioned
#: for float32 (NumPyro's positive-definiteness check fails on every draw at D = 30).
START_RADIUS = 0.5


def draw_trace(model: Callable, rng_key, *args, **kwargs):
    """The model's trace at a random start: every continuous latent site uniform in
    ``(-START_RADIUS, START_RADIUS)`` in its unconstrained space (NumPyro's
    ``init_to_uniform``, in a smaller box than its samplers' ``(-2, 2)``), discrete sites
    drawn from the model.

    Unlike a draw from the prior, it needs no sampler of the model's distributions (a
    Dirichlet's, for instance, is a rejection loop that costs a compilation of its own).
    """
    uniform = functools.partial(init_to_uniform, radius=START_RADIUS)
    start = handlers.substitute(handlers.seed(model, rng_key), substitute_fn=uniform)
    return handlers.trace(start).get_trace(*args, **kwargs)


@functools.lru_cache(maxsize=32)
def _full_plates(model: Callable, plates: tuple[tuple[str, int], ...]) -> Callable:
    """``model`` with every subsampled plate in ``plates`` given all its indices (cached, so
    that repeated fits of one model share compiled programs)."""
    substituted = handlers.substitute(
        model, data={name: jnp.arange(size) for name, size in plates}
    )

    @functools.wraps(model)
    def full_data_model(*args, **kwargs):
        with warnings.catch_warnings():
            # NumPyro's plate notes that its indices outnumber subsample_size: on purpose.
            warnings.filterwarnings("ignore", "subsample_size does not match", UserWarning)
            return substituted(*args, **kwargs)

    return full_data_model


def check_model_call(model: Callable, args: tuple, kwargs: dict) -> None:
    """The model can be called with these arguments (the data among them), or a TypeError
    that says how to pass them."""
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):  # no signature to check (some callables): let it run
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        name = getattr(model, "__name__", "model")
        raise TypeError(
            f"The model cannot be called with the arguments given ({err}). Pass the model's "
            f"arguments after it, as you would call it: ngm.fit({name}, data, ...) for "
            f"{name}{signature}."
        ) from None


def read_model(model: Callable, *args, **kwargs) -> MixtureModel:
    """Trace ``model(*args, **kwargs)`` once and locate its mixture.

    Raises
    ------
    UnsupportedModelError
        With the offending site's name and the reason: no mixture, several mixtures, several
        enumerated assignments (e.g. a ``markov`` chain), a discrete latent site that is not
        an enumerated assignment (no gradient path), or a non-Categorical assignment.
    """
    trace = draw_trace(model, 0, *args, **kwargs)
    subsampled = tuple(
        (name, int(site["args"][0]))
        for name, site in trace.items()
        if site["type"] == "plate" and int(np.shape(site["value"])[0]) < int(site["args"][0])
    )
    if subsampled:
        plates = ", ".join(
            f"{name!r} ({np.shape(trace[name]['value'])[0]} of {size})"
            for name, size in subsampled
        )
        warnings.warn(
            f"The model subsamples plate(s) {plates}; EM needs every row, so numpyro_gmm "
            "fits the exact full-data MAP on all of them (subsample_size set to the plate's "
            "size). Remove subsample_size to silence this warning.",
            UserWarning,
            stacklevel=4,
        )
        model = _full_plates(model, subsampled)
        trace = draw_trace(model, 0, *args, **kwargs)
    samples = {name: site for name, site in trace.items() if site["type"] == "sample"}
    observed = [name for name, site in samples.items() if site["is_observed"]]
    mixtures = [name for name in observed if _is_mixture(samples[name]["fn"])]
    enumerated = [
        name for name, site in samples.items() if not site["is_observed"] and _is_enumerated(site)
    ]
    if len(mixtures) > 1:
        raise UnsupportedModelError(
            f"The model has {len(mixtures)} observed mixture sites ({', '.join(mixtures)}); "
            "numpyro_gmm fits models with exactly one mixture likelihood."
        )
    if len(enumerated) > 1:
        raise UnsupportedModelError(
            f"The model has {len(enumerated)} enumerated discrete sites "
            f"({', '.join(enumerated)}), as in a markov chain of assignments (an HMM); "
            "numpyro_gmm fits a single mixture assignment per data point."
        )
    for name, site in samples.items():
        if site["is_observed"] or name in enumerated:
            continue
        if site["fn"].support.is_discrete:
            raise UnsupportedModelError(
                f"Latent site {name!r} is discrete ({type(site['fn']).__name__}) and is not an "
                "enumerated mixture assignment, so no EM or gradient step can update it. "
                "Marginalize it, enumerate it with config_enumerate, or make it continuous."
            )
    latent = tuple(
        name for name, site in samples.items() if not site["is_observed"] and name not in enumerated
    )
    supports = {name: samples[name]["fn"].support for name in latent}
    if mixtures:
        name = mixtures[0]
        mixture = unwrap(samples[name]["fn"])
        style = "A" if isinstance(mixture, dist.MixtureSameFamily) else "B"
        extra = tuple(site for site in observed if site != name)
        return MixtureModel(
            model,
            args,
            kwargs,
            style,
            name,
            None,
            latent,
            int(mixture.mixture_size),
            supports,
            extra,
        )
    if enumerated:
        assignment = enumerated[0]
        fn = unwrap(samples[assignment]["fn"])
        if not isinstance(fn, dist.CategoricalProbs | dist.CategoricalLogits):
            raise UnsupportedModelError(
                f"The enumerated site {assignment!r} is a {type(fn).__name__}; the mixture "
                "assignment must be a Categorical."
            )
        # numpyro.factor terms are observed Unit sites; they cannot be the assignment's child.
        children = [
            name
            for name in observed
            if name != assignment and not isinstance(unwrap(samples[name]["fn"]), dist.Unit)
        ]
        if len(children) != 1:
            raise UnsupportedModelError(
                f"The assignment site {assignment!r} must feed exactly one observed site "
                f"besides factor terms; found {children or 'none'}."
            )
        return MixtureModel(
            model,
            args,
            kwargs,
            "C",
            children[0],
            assignment,
            latent,
            int(fn.probs.shape[-1]) if hasattr(fn, "probs") else int(fn.logits.shape[-1]),
            supports,
            tuple(name for name in observed if name not in (assignment, children[0])),
        )
    raise UnsupportedModelError(
        "No mixture found: the model has no observed MixtureSameFamily / MixtureGeneral site "
        f"and no enumerated Categorical assignment (observed sites: {observed or 'none'})."
    )
