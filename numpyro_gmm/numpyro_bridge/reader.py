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

__all__ = ["UnsupportedModelError", "MixtureModel", "draw_trace", "read_model", "unwrap"]

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

    # -- the trace at given parameters ---------------------------------------------------

    def _trace(self, params: dict, args: tuple):
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
            site = trace[name]
            log_prob = site["fn"].log_prob(site["value"])
            if site.get("scale") is not None:
                log_prob = site["scale"] * log_prob
            priors[name] = jnp.sum(log_prob)
        return priors

    def _log_prior_from_trace(self, trace) -> jax.Array:
        return sum(self._site_log_priors_from_trace(trace).values(), start=jnp.zeros(()))

    def component_log_probs_and_log_prior(
        self, params: dict, args: tuple | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """(N, K) ``log pi_k + log p_k(x_n)`` and the log prior, from one trace.

        ``args`` replaces the model's arguments (e.g. new data of the same structure).
        """
        args = self.args if args is None else args
        if self.style == "C":
            trace = self._enumerated_trace(params, args)
            assignment = trace[self.assignment_site]
            observed = trace[self.mixture_site]
            joint = assignment["fn"].log_prob(assignment["value"]) + observed["fn"].log_prob(
                observed["value"]
            )
            joint = joint.reshape(self.n_components, -1).T
            return joint, self._log_prior_from_trace(trace)
        trace = self._trace(params, args)
        site = trace[self.mixture_site]
        mixture = unwrap(site["fn"])
        value = site["value"]
        log_probs = mixture.component_log_probs(value)
        log_probs = log_probs.reshape(-1, self.n_components)
        return log_probs, self._log_prior_from_trace(trace)

    def component_log_probs(self, params: dict, args: tuple | None = None) -> jax.Array:
        """(N, K) matrix ``log pi_k + log p_k(x_n | params)``."""
        return self.component_log_probs_and_log_prior(params, args)[0]

    def log_prior(self, params: dict) -> jax.Array:
        """Sum of the latent sites' log densities (constrained space, no Jacobian)."""
        return self.component_log_probs_and_log_prior(params)[1]

    def site_log_priors(self, params: dict, args: tuple | None = None) -> dict[str, jax.Array]:
        """Each latent site's log density at ``params`` (constrained), summed over its shape."""
        args = self.args if args is None else args
        return self._site_log_priors_from_trace(self._trace(params, args))

    def log_joint(self, params: dict, args: tuple | None = None) -> jax.Array:
        """The model's log joint at ``params`` (constrained), discrete assignments summed out."""
        log_probs, log_prior = self.component_log_probs_and_log_prior(params, args)
        return jnp.sum(jax.nn.logsumexp(log_probs, axis=1)) + log_prior

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
        )

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


def draw_trace(model: Callable, rng_key, *args, **kwargs):
    """The model's trace at a random start: every continuous latent site uniform in
    ``(-2, 2)`` in its unconstrained space (NumPyro's ``init_to_uniform``, the start of its own
    samplers), discrete sites drawn from the model.

    Unlike a draw from the prior, it needs no sampler of the model's distributions (a
    Dirichlet's, for instance, is a rejection loop that costs a compilation of its own).
    """
    start = handlers.substitute(handlers.seed(model, rng_key), substitute_fn=init_to_uniform)
    return handlers.trace(start).get_trace(*args, **kwargs)


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
        return MixtureModel(
            model, args, kwargs, style, name, None, latent, int(mixture.mixture_size), supports
        )
    if enumerated:
        assignment = enumerated[0]
        fn = unwrap(samples[assignment]["fn"])
        if not isinstance(fn, dist.CategoricalProbs | dist.CategoricalLogits):
            raise UnsupportedModelError(
                f"The enumerated site {assignment!r} is a {type(fn).__name__}; the mixture "
                "assignment must be a Categorical."
            )
        children = [name for name in observed if name != assignment]
        if len(children) != 1:
            raise UnsupportedModelError(
                f"The assignment site {assignment!r} must feed exactly one observed site; "
                f"found {children or 'none'}."
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
        )
    raise UnsupportedModelError(
        "No mixture found: the model has no observed MixtureSameFamily / MixtureGeneral site "
        f"and no enumerated Categorical assignment (observed sites: {observed or 'none'})."
    )
