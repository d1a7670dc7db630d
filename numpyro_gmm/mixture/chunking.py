"""Row-chunked reductions over a data matrix without padding or copying it.

EM's sufficient statistics are sums over rows, so they can be accumulated chunk by chunk:
peak memory then depends on the chunk size, not on ``N``. The last chunk is taken at a
clamped offset (it overlaps the previous one) and the overlapping rows get weight zero, so
the data array is never padded or copied.

**Data parallelism.** Every reduction over data rows in the package goes through
:func:`chunked_sum`, so it is the one place that knows how the rows are laid out, and the
layout is part of its static ``rows`` argument (a :class:`RowPlan`, or a plain chunk size for
one device). With a plan that names a mesh axis (built by the data-parallel programs of
:mod:`numpyro_gmm.fitting`, traced inside ``jax.shard_map``), ``x`` is one device's block of a
row-sharded array: each device sums its own block chunk by chunk, rows past the global
``n_samples`` (the padding that makes ``N`` a multiple of the device count) get weight zero,
``row_index`` is the global row number, and one ``lax.psum`` over the mesh axis gives every
device the global sums. The result equals the single-device sum up to the order of
floating-point additions.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_gmm._types import Array

__all__ = ["RowPlan", "as_row_plan", "chunked_sum", "default_chunk_size", "n_rows"]

# Aim for per-chunk temporaries of roughly this many elements of the (K, C, D) tensor.
_TARGET_CHUNK_ELEMENTS = 1 << 20
_MIN_CHUNK_ROWS = 256


class RowPlan(NamedTuple):
    """How :func:`chunked_sum` walks the rows it is given.

    A plan is static configuration (hashable) except in one case: a fit padded to a bucket of
    rows (:mod:`numpyro_gmm.fitting`) builds its plan inside the program with a traced
    ``n_samples``, so that one program serves every ``N`` of the bucket.

    Attributes
    ----------
    chunk_size : int
        Rows per chunk.
    axis_name : str or None
        Mesh axis the rows are sharded over (a ``shard_map`` axis); ``None`` on one device.
    n_samples : int, Array or None
        Number of real rows (of the global array, with ``axis_name``); rows at or past it
        are padding and get weight zero. ``None``: every row is real.
    """

    chunk_size: int
    axis_name: str | None = None
    n_samples: int | None = None


def as_row_plan(rows: "RowPlan | int") -> RowPlan:
    """A :class:`RowPlan` from a plan or a plain chunk size (one device)."""
    return rows if isinstance(rows, RowPlan) else RowPlan(int(rows))


def n_rows(x: Array, rows: "RowPlan | int") -> int:
    """Number of real data rows: ``x.shape[0]``, or the global count of a sharded plan."""
    plan = as_row_plan(rows)
    return x.shape[0] if plan.n_samples is None else plan.n_samples


def default_chunk_size(n_samples: int, n_components: int, n_features: int) -> int:
    """Rows per chunk so that the ``(K, chunk, D)`` temporaries stay around a few MB."""
    rows = max(_MIN_CHUNK_ROWS, _TARGET_CHUNK_ELEMENTS // max(1, n_components * n_features))
    return int(min(n_samples, rows))


def _local_sum[Sums](
    chunk_fn: Callable[[Array, Array, Array], Sums],
    x: Array,
    chunk_size: int,
    first_row: Array | int,
    n_samples: int | None,
    axis_name: str | None = None,
) -> Sums:
    """Chunked sum over the rows of ``x``, whose first row has global number ``first_row``;
    rows numbered ``n_samples`` or more (padding) get weight zero (``None``: no padding)."""
    local_rows = x.shape[0]
    chunk_size = min(chunk_size, local_rows)

    def weights_of(valid: Array, row_index: Array) -> Array:
        if n_samples is not None:
            valid = valid & (row_index < n_samples)
        return valid.astype(x.dtype)

    if chunk_size == local_rows:
        row_index = first_row + jnp.arange(local_rows)
        return chunk_fn(x, weights_of(jnp.ones(local_rows, bool), row_index), row_index)
    n_chunks = math.ceil(local_rows / chunk_size)
    offsets = jnp.arange(chunk_size)

    def body_fn(chunk: Array, totals: Sums) -> Sums:
        nominal_start = chunk * chunk_size
        start = jnp.minimum(nominal_start, local_rows - chunk_size)
        rows = lax.dynamic_slice_in_dim(x, start, chunk_size)
        local_index = start + offsets
        row_index = first_row + local_index
        weights = weights_of(local_index >= nominal_start, row_index)
        return jax.tree.map(jnp.add, totals, chunk_fn(rows, weights, row_index))

    shapes = jax.eval_shape(chunk_fn, x[:chunk_size], jnp.ones(chunk_size, x.dtype), offsets)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    if axis_name is not None:  # the per-device partial sums differ across the mesh axis
        zeros = jax.tree.map(lambda z: lax.pcast(z, (axis_name,), to="varying"), zeros)
    return lax.fori_loop(0, n_chunks, body_fn, zeros)


def chunked_sum[Sums](
    chunk_fn: Callable[[Array, Array, Array], Sums], x: Array, rows: RowPlan | int
) -> Sums:
    """Sum ``chunk_fn(rows, row_weights, row_index)`` over row chunks of ``x``.

    Parameters
    ----------
    chunk_fn : callable
        ``chunk_fn(x_chunk, weights, row_index) -> pytree of sums`` where ``x_chunk`` has
        shape ``(chunk_size, D)``, ``weights`` (chunk_size,) is 1 for rows that belong to
        this chunk and 0 for rows already counted (or padding), and ``row_index`` holds the
        global row numbers. Every returned leaf must already be weighted by ``weights``.
    x : Array, shape (N, D)
        The data, or with a sharded plan this device's block of them.
    rows : RowPlan or int
        Static chunking (an int is the chunk size on one device); ``chunk_size >= N`` means
        a single pass.

    Returns
    -------
    The leaf-wise sum over all rows (over every device's rows with a sharded plan), with the
    structure of ``chunk_fn``'s output.
    """
    plan = as_row_plan(rows)
    if plan.axis_name is None:
        return _local_sum(chunk_fn, x, plan.chunk_size, 0, plan.n_samples)
    first_row = lax.axis_index(plan.axis_name) * x.shape[0]
    local = _local_sum(chunk_fn, x, plan.chunk_size, first_row, plan.n_samples, plan.axis_name)
    return lax.psum(local, plan.axis_name)
