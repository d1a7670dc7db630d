"""Reading a source as a stream of fixed-size row blocks.

A *source* is a numpy array or ``np.memmap``, an ``xarray.DataArray`` (lazily backed by netCDF
or zarr: blocks are read with ``isel``), a callable that returns a fresh iterable of
``(n_i, D)`` arrays at every pass, or an iterable of such arrays. Arrays and DataArrays are
*indexable* (their blocks can be read in any order); a callable or a re-iterable (a list) can
be read any number of times; a *one-shot* iterator (a generator, ``iter(...)``) can be read
once: the rows the initialization reads from it are kept and replayed in front of the rest of
the same pass (:meth:`_Source.sample_blocks`), so no row is read twice and none is lost.

Blocks of any size are checked on the host (:func:`_check_block`) and re-cut into blocks of
exactly ``block_size`` rows (:func:`_fixed_blocks`), the last one padded with zero-weight rows,
so the device program compiles once. Pages of a memmap are released from the process after
each block is copied (:func:`_release_pages`), so its resident memory stays at about one block.
"""

import ctypes
import math
import mmap
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from numpyro_gmm.validation import working_dtype

__all__: list[str] = []

_MADV_DONTNEED = 4

ONE_SHOT_ADVICE = (
    "Pass a callable that returns a fresh iterable at every pass (for example "
    "lambda: read_blocks(path)), a re-iterable such as a list of blocks, or a numpy memmap."
)


def _release_pages(view: np.ndarray) -> None:
    """Drop the pages of a memmap view from this process's resident memory.

    The pages stay in the OS page cache (a re-read is cheap) but stop counting in the
    process's RSS, so streaming a memmap keeps the RSS at about one block. Linux only; a no-op
    elsewhere.
    """
    if not sys.platform.startswith("linux") or view.nbytes == 0:
        return
    page = mmap.PAGESIZE
    start = view.ctypes.data - view.ctypes.data % page
    length = view.ctypes.data + view.nbytes - start
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_DONTNEED)


def _is_data_array(source: Any) -> bool:
    return hasattr(source, "isel") and hasattr(source, "dims")


class _Source:
    """Uniform access to a source: its size if known, and its raw blocks for one pass.

    Attributes
    ----------
    n_samples : int or None
        Rows of an indexable source; ``None`` for callables and iterables.
    n_features : int or None
        Columns, when known without reading (a 2-D array or DataArray).
    indexable : bool
        Blocks can be read in any order (arrays, memmaps, DataArrays).
    one_shot : bool
        The source is an iterator: it can be read once.
    """

    def __init__(self, source: Any, sample_dim: str | None, block_size: int) -> None:
        self.block_size = block_size
        self.n_samples: int | None = None
        self.n_features: int | None = None
        self.indexable = False
        self.one_shot = False
        self._passes = 0
        self._replay: tuple[deque, Iterator] | None = None
        if isinstance(source, np.ndarray):
            self.n_samples, self.indexable = int(source.shape[0]), True
            if source.ndim == 2:
                self.n_features = int(source.shape[1])
        elif _is_data_array(source):  # xarray.DataArray
            dim = source.dims[0] if sample_dim is None else sample_dim
            if dim not in source.dims:
                raise ValueError(f"sample_dim {dim!r} is not a dimension of {source.dims}.")
            source = source.transpose(dim, ...)
            self.n_samples, self.indexable, self._dim = int(source.sizes[dim]), True, dim
            if source.ndim == 2:
                self.n_features = int(source.shape[1])
        elif callable(source):
            pass
        elif isinstance(source, Iterable):
            self.one_shot = iter(source) is source  # iter() of an iterator does not consume it
        else:
            raise TypeError(
                "source must be a numpy array or memmap, an xarray.DataArray, a callable "
                "returning an iterable of (n_i, D) arrays, or such an iterable; got "
                f"{type(source).__name__}."
            )
        self._source = source

    @property
    def dtype(self) -> np.dtype:
        """Element type of the source if it declares one (arrays), else float64."""
        return np.dtype(getattr(self._source, "dtype", np.float64))

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_samples / self.block_size)

    def _read(self, index: int) -> np.ndarray:
        start = index * self.block_size
        stop = min(start + self.block_size, self.n_samples)
        if isinstance(self._source, np.ndarray):
            view = self._source[start:stop]
            block = np.array(view)
            if isinstance(self._source, np.memmap):
                _release_pages(view)
            return block
        return np.asarray(self._source.isel({self._dim: slice(start, stop)}).values)

    def blocks(self, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Raw blocks of one pass (for an indexable source, in ``order`` of block indices).

        After :meth:`sample_blocks` on a one-shot source, the pass it began: the sampled
        blocks, then the rest of the iterator.
        """
        if self._replay is not None:
            kept, rest = self._replay
            self._replay = None
            return _replay(kept, rest)
        self._passes += 1
        if self.indexable:
            indices = range(self.n_blocks) if order is None else order
            return (self._read(int(i)) for i in indices)
        if callable(self._source):
            return iter(self._source())
        if self.one_shot and self._passes > 1:
            raise ValueError(
                "The source is a one-shot iterator, which allows a single pass, and this fit "
                f"needs another. {ONE_SHOT_ADVICE}"
            )
        return iter(self._source)

    def sample_blocks(self, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Raw blocks for the initialization sample, read from the start of a pass.

        A one-shot source keeps every block it yields here, and its next :meth:`blocks`
        replays them in front of the rest of the same pass. Other sources start a pass of
        their own (the next :meth:`blocks` starts afresh).
        """
        raw = self.blocks(order)
        if not self.one_shot:
            return raw
        kept: deque = deque()
        self._replay = (kept, raw)
        return _recording(raw, kept)


def _recording(raw: Iterator[np.ndarray], kept: deque) -> Iterator[np.ndarray]:
    for block in raw:
        kept.append(block)
        yield block


def _replay(kept: deque, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    while kept:  # released as they are replayed
        yield kept.popleft()
    yield from rest


def _check_block(block: Any, n_features: int | None, index: int) -> np.ndarray:
    block = np.asarray(block)
    if block.ndim == 1:
        block = block[:, None]
    if block.ndim != 2:
        raise ValueError(
            f"Block {index} of the source has shape {block.shape}; blocks must be (n_i, D) "
            "arrays of rows."
        )
    if not np.issubdtype(block.dtype, np.number) or np.issubdtype(block.dtype, np.complexfloating):
        raise ValueError(f"Block {index} has non-numeric dtype {block.dtype}; give real numbers.")
    if n_features is not None and block.shape[1] != n_features:
        raise ValueError(
            f"Block {index} has {block.shape[1]} columns but earlier blocks have {n_features}; "
            "every block must have the same features."
        )
    if not np.all(np.isfinite(block)):
        raise ValueError(
            f"Block {index} of the source contains NaN or infinite values; remove or impute "
            "them before fitting."
        )
    return block


def _fixed_blocks(
    raw: Iterator[np.ndarray], block_size: int, n_features: int | None, dtype: np.dtype | None
) -> Iterator[tuple[np.ndarray, int]]:
    """Re-cut validated blocks into ``(block_size, D)`` arrays and their numbers of real rows."""
    pending: list[np.ndarray] = []
    n_pending = 0
    for index, block in enumerate(raw):
        block = _check_block(block, n_features, index)
        n_features = block.shape[1]
        dtype = working_dtype(block.dtype) if dtype is None else dtype
        pending.append(block.astype(dtype, copy=False))
        n_pending += block.shape[0]
        while n_pending >= block_size:
            rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield np.ascontiguousarray(rows[:block_size]), block_size
            pending, n_pending = [rows[block_size:]], n_pending - block_size
    if n_pending:
        rows = np.concatenate(pending)
        padding = np.zeros((block_size - n_pending, rows.shape[1]), rows.dtype)
        yield np.concatenate([rows, padding]), n_pending
