"""A model's own arguments, as ``MCMC.run(rng_key, *args, **kwargs)`` takes them, bound to the
data-first form the fitting programs use: ``canonical(x, *arrays)``.

The data ``x`` are the mixture site's observed value, wherever the model takes them (first,
after covariates, by keyword). The other array arguments (covariates, masks) are passed to the
programs as arrays, so new values of the same shapes reuse compiled programs; arguments that
are not arrays (a number of components, a flag) are part of the model's structure and closed
over.
"""

import functools
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["ArgumentLayout", "bind_arguments"]

Slot = tuple[str, int | str]  # ("arg", position) or ("kwarg", name)


class ArgumentLayout(NamedTuple):
    """Where the data, the other arrays and the fixed values go in the model's call.

    Attributes
    ----------
    n_args : int
        Positional arguments of the call.
    data : Slot
        The argument that holds the mixture site's observed values.
    arrays : tuple of Slot
        The other array arguments, in the order ``canonical(x, *arrays)`` takes them.
    fixed : tuple of (Slot, value)
        Arguments that are not arrays (hashable), closed over.
    """

    n_args: int
    data: Slot
    arrays: tuple[Slot, ...]
    fixed: tuple[tuple[Slot, Hashable], ...]

    @property
    def is_data_first(self) -> bool:
        """Whether the model is already called as ``model(x, *arrays)``."""
        return (
            self.data == ("arg", 0)
            and not self.fixed
            and self.arrays == tuple(("arg", i) for i in range(1, self.n_args))
        )

    def call(self, x, arrays: tuple) -> tuple[tuple, dict]:
        """The model's ``(args, kwargs)`` for data ``x`` and the other ``arrays``."""
        values: dict[Slot, Any] = {self.data: x, **dict(zip(self.arrays, arrays, strict=True))}
        values.update(self.fixed)
        args = tuple(values[("arg", i)] for i in range(self.n_args))
        kwargs = {slot[1]: value for slot, value in values.items() if slot[0] == "kwarg"}
        return args, kwargs

    def split(self, args: tuple, kwargs: dict, signature=None) -> tuple[Any, tuple]:
        """``(x, arrays)`` of a call with the model's own arguments (new data of the same
        layout, e.g. for ``predict``); with the model's ``signature``, positional and
        keyword arguments may be exchanged as Python allows."""
        expected = {self.data, *self.arrays, *(slot for slot, _ in self.fixed)}
        values = _slots(args, kwargs)
        if set(values) != expected and signature is not None:
            values = _slots(*self._as_fitted(signature, args, kwargs))
        if set(values) != expected:
            raise TypeError(
                f"Pass the model's arguments as the fit did: {self.describe()}; got "
                f"{_describe(values)}."
            )
        return values[self.data], tuple(values[slot] for slot in self.arrays)

    def _as_fitted(self, signature, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The call ``(args, kwargs)`` rearranged as the fit's (positional where the fit
        passed positionally), by the model's signature."""
        try:
            named = signature.bind(*args, **kwargs).arguments
        except TypeError:
            return args, kwargs
        names = list(signature.parameters)
        fitted_kwargs = {slot[1] for slot in (self.data, *self.arrays) if slot[0] == "kwarg"}
        fitted_kwargs |= {slot[1] for slot, _ in self.fixed if slot[0] == "kwarg"}
        if self.n_args > len(names) or not all(names[i] in named for i in range(self.n_args)):
            return args, kwargs
        positional = tuple(named[names[i]] for i in range(self.n_args))
        keywords = {name: named[name] for name in fitted_kwargs if name in named}
        return positional, keywords

    def describe(self) -> str:
        return _describe(
            {self.data: None, **{slot: None for slot in self.arrays}, **dict(self.fixed)}
        )


def _slots(args: tuple, kwargs: dict) -> dict[Slot, Any]:
    positional = {("arg", i): value for i, value in enumerate(args)}
    return {**positional, **{("kwarg", name): value for name, value in kwargs.items()}}


def _describe(values: dict) -> str:
    positional = sum(1 for slot in values if slot[0] == "arg")
    names = sorted(str(slot[1]) for slot in values if slot[0] == "kwarg")
    return f"{positional} positional argument(s)" + (
        f" and keyword(s) {', '.join(names)}" if names else ""
    )


def _is_array_tree(value) -> bool:
    leaves = jax.tree.leaves(value)
    return bool(leaves) and all(isinstance(leaf, np.ndarray | jax.Array) for leaf in leaves)


def _holds(value, observed: np.ndarray) -> bool:
    """Whether ``value`` is the observed array (the same values; dtype aside)."""
    if not isinstance(value, np.ndarray | jax.Array) or np.shape(value) != observed.shape:
        return False
    return bool(np.array_equal(np.asarray(value), observed, equal_nan=True))


def layout_of(args: tuple, kwargs: dict, observed) -> ArgumentLayout | None:
    """The layout of a call whose mixture site observes ``observed``; None when no argument
    holds those values (the model computes its data)."""
    observed = np.asarray(observed)
    values = _slots(args, kwargs)
    holders = [slot for slot, value in values.items() if _holds(value, observed)]
    if not holders:
        return None
    data = holders[0]
    arrays, fixed = [], []
    for slot, value in values.items():
        if slot == data:
            continue
        if _is_array_tree(value):
            arrays.append(slot)
        elif isinstance(value, Hashable):
            fixed.append((slot, value))
        else:
            name = f"argument {slot[1]}" if slot[0] == "arg" else f"keyword {slot[1]!r}"
            raise TypeError(
                f"The model's {name} is a {type(value).__name__}, neither an array (or a "
                "pytree of arrays) nor a hashable value such as a number or a string: pass "
                "arrays, or numbers that fix the model's structure."
            )
    return ArgumentLayout(len(args), data, tuple(arrays), tuple(fixed))


@functools.lru_cache(maxsize=32)
def data_first(model: Callable, layout: ArgumentLayout) -> Callable:
    """``model`` called as ``canonical(x, *arrays)`` (cached, so that fits of one model with
    one layout share compiled programs)."""

    @functools.wraps(model)
    def canonical(x, *arrays):
        args, kwargs = layout.call(x, arrays)
        return model(*args, **kwargs)

    return canonical


def bind_arguments(
    model: Callable, args: tuple, kwargs: dict, observed
) -> tuple[Callable, Any, tuple, ArgumentLayout | None]:
    """``(canonical_model, x, arrays, layout)`` for ``model(*args, **kwargs)`` whose mixture
    site observes ``observed``: ``canonical_model(x, *arrays)`` is the same call. A model
    already called data first is returned as it is."""
    layout = layout_of(args, kwargs, observed)
    if layout is None and (not args or kwargs):
        raise TypeError(
            "None of the model's arguments holds the values its mixture site observes; "
            "pass the data as an argument the model observes as it is (obs=data)."
        )
    if layout is None or layout.is_data_first:  # None: the model transforms its first argument
        return model, args[0], tuple(args[1:]), layout
    x, arrays = layout.split(args, kwargs)
    return data_first(model, layout), x, arrays, layout
