"""Row-chunked reductions over a data matrix without padding or copying it.

EM's sufficient statistics are sums over rows, so they can be accumulated chunk by chunk:
peak memory then depends on the chunk size, not on ``N``. The last chunk is taken at a
clamped offset (it overlaps the previous one) and the overlapping rows get weight zero, so
the data array is never padded or copied.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from numpyro_gmm._types import Array

__all__ = ["default_chunk_size", "chunked_sum"]

# Aim for per-chunk temporaries of roughly this many elements of the (K, C, D) tensor.
_TARGET_CHUNK_ELEMENTS = 1 << 20
_MIN_CHUNK_ROWS = 256


def default_chunk_size(n_samples: int, n_components: int, n_features: int) -> int:
    """Rows per chunk so that the ``(K, chunk, D)`` temporaries stay around a few MB."""
    rows = max(_MIN_CHUNK_ROWS, _TARGET_CHUNK_ELEMENTS // max(1, n_components * n_features))
    return int(min(n_samples, rows))


def chunked_sum[Sums](
    chunk_fn: Callable[[Array, Array, Array], Sums], x: Array, chunk_size: int
) -> Sums:
    """Sum ``chunk_fn(rows, row_weights, row_index)`` over row chunks of ``x``.

    Parameters
    ----------
    chunk_fn : callable
        ``chunk_fn(x_chunk, weights, row_index) -> pytree of sums`` where ``x_chunk`` has
        shape ``(chunk_size, D)``, ``weights`` (chunk_size,) is 1 for rows that belong to
        this chunk and 0 for rows already counted, and ``row_index`` holds the global row
        numbers. Every returned leaf must already be weighted by ``weights``.
    x : Array, shape (N, D)
    chunk_size : int
        Static number of rows per chunk; ``chunk_size >= N`` means a single pass.

    Returns
    -------
    The leaf-wise sum over all rows, with the structure of ``chunk_fn``'s output.
    """
    n_samples = x.shape[0]
    if chunk_size >= n_samples:
        return chunk_fn(x, jnp.ones(n_samples, x.dtype), jnp.arange(n_samples))
    n_chunks = math.ceil(n_samples / chunk_size)
    offsets = jnp.arange(chunk_size)

    def body_fn(chunk: Array, totals: Sums) -> Sums:
        nominal_start = chunk * chunk_size
        start = jnp.minimum(nominal_start, n_samples - chunk_size)
        rows = lax.dynamic_slice_in_dim(x, start, chunk_size)
        row_index = start + offsets
        weights = (row_index >= nominal_start).astype(x.dtype)
        return jax.tree.map(jnp.add, totals, chunk_fn(rows, weights, row_index))

    shapes = jax.eval_shape(chunk_fn, x[:chunk_size], jnp.ones(chunk_size, x.dtype), offsets)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return lax.fori_loop(0, n_chunks, body_fn, zeros)
