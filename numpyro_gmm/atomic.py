"""Atomic file writes: a failure never leaves a partial file."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["atomic_path", "write_datatree_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Give a temporary path next to ``path`` and move it into place on success.

    The temporary file lives in the same directory as ``path`` (so the final
    :func:`os.replace` is atomic on POSIX and Windows). If the body raises, the temporary
    file is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.

    Yields
    ------
    str
        Temporary path to write to. It does not exist yet.

    Examples
    --------
    >>> with atomic_path("fig.png") as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp, format="png")
    """
    target = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(target))
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_datatree_atomic(dt: Any, path: str | os.PathLike[str]) -> None:
    """Write a DataTree to netCDF atomically.

    The tree is written to a temporary file in the destination directory and then moved
    over ``path`` with :func:`os.replace`, so a failure never leaves a partial file.

    Parameters
    ----------
    dt : xarray.DataTree
        Tree to write.
    path : str or os.PathLike
        Destination netCDF file (overwritten if it exists).
    """
    with atomic_path(path) as tmp:
        dt.to_netcdf(tmp)
