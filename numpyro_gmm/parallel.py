"""Data-parallel layout: a one-axis device mesh and row-sharded data.

EM, gradient EM and BigLearn-EM only touch the data through sums over rows
(:func:`numpyro_gmm.mixture.chunking.chunked_sum`). To run them on several devices, the rows
are split into equal blocks, one per device (``NamedSharding(mesh, P("data", None))``); each
device sums its block and a ``lax.psum`` over the mesh axis gives every device the global
sufficient statistics, from which every device takes the same (replicated) M-step. The fit
therefore equals the single-device fit up to the order of floating-point additions, and
compiles once per (mesh, shapes, configuration).

``N`` is padded with zero rows to a multiple of the device count; the padding rows get weight
zero in every sum. :class:`ShardedRows` carries the padded global array and the number of real
rows.

Multi-host: after ``jax.distributed.initialize()``, :func:`data_mesh` spans every process's
devices and :func:`rows_from_process_local` assembles the global array from each process's
rows (see ``docs/SCALING.md`` for a worked example).
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from numpyro_gmm._types import Array

__all__ = [
    "DATA_AXIS",
    "ShardedRows",
    "data_mesh",
    "shard_rows",
    "rows_from_process_local",
]

DATA_AXIS: str = "data"
"""Name of the mesh axis the rows are sharded over."""


class ShardedRows(NamedTuple):
    """Row-sharded data, padded to a multiple of the device count.

    Attributes
    ----------
    array : jax.Array, shape (N_padded, D)
        Global array sharded as ``P(DATA_AXIS, None)`` over ``mesh``; rows ``n_samples`` and
        after are padding.
    n_samples : int
        Number of real rows ``N``.
    mesh : Mesh
    """

    array: jax.Array
    n_samples: int
    mesh: Mesh

    @property
    def n_features(self) -> int:
        return int(self.array.shape[1])

    @property
    def dtype(self):
        return self.array.dtype


def data_mesh(devices: int | Sequence | Mesh | None = None) -> Mesh:
    """A one-axis mesh named :data:`DATA_AXIS` for data parallelism.

    Parameters
    ----------
    devices : int, sequence of devices, Mesh or None
        ``None``: every device of ``jax.devices()`` (all processes' devices after
        ``jax.distributed.initialize()``); an int ``n``: the first ``n`` of them; a sequence:
        those devices; a ``Mesh`` with a :data:`DATA_AXIS` axis of its own: returned as is.
    """
    if isinstance(devices, Mesh):
        if DATA_AXIS not in devices.axis_names or devices.devices.size != devices.shape[DATA_AXIS]:
            raise ValueError(
                f"A mesh for data parallelism needs a single axis named {DATA_AXIS!r}; got axes "
                f"{dict(devices.shape)}. Build one with numpyro_gmm.parallel.data_mesh(devices)."
            )
        return devices
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices} but {len(available)} device(s) are available "
                f"({available[0].platform}). On CPU, simulate more with "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N set before importing jax."
            )
        chosen = available[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices is an empty sequence; give at least one device.")
    return Mesh(np.asarray(chosen), (DATA_AXIS,))


def _row_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS, None))


def _padded_rows(n_samples: int, n_devices: int) -> int:
    return -(-n_samples // n_devices) * n_devices


def shard_rows(x: Array | np.ndarray | ShardedRows, mesh: Mesh) -> ShardedRows:
    """Place ``x`` (N, D) row-sharded over ``mesh``, zero-padded to a multiple of its size.

    An array that is already row-sharded over ``mesh`` with ``N`` a multiple of the device
    count is used as it is (no copy); otherwise the rows go through the host once.
    """
    if isinstance(x, ShardedRows):
        if x.mesh != mesh:
            raise ValueError("The data are sharded over a different mesh than the one given.")
        return x
    sharding = _row_sharding(mesh)
    n_samples = int(x.shape[0])
    n_devices = mesh.devices.size
    if isinstance(x, jax.Array) and n_samples % n_devices == 0 and x.sharding == sharding:
        return ShardedRows(x, n_samples, mesh)
    host = np.asarray(x)
    padded = _padded_rows(n_samples, n_devices)
    if padded != n_samples:
        host = np.concatenate([host, np.zeros((padded - n_samples, host.shape[1]), host.dtype)])
    # A fresh view (validation.to_device says why).
    return ShardedRows(jax.device_put(host.view(), sharding), n_samples, mesh)


def rows_from_process_local(local_rows: np.ndarray, mesh: Mesh, n_samples: int) -> ShardedRows:
    """Assemble the global row-sharded array from every process's own rows (multi-host).

    Each process passes its contiguous block of rows, in process order, every block with the
    same number of rows, a multiple of the process's local device count; only the last
    process's block may end with zero padding rows, and ``n_samples`` (the same on every
    process) is the number of real rows in total.
    """
    sharding = _row_sharding(mesh)
    array = jax.make_array_from_process_local_data(sharding, np.asarray(local_rows))
    if not 0 < n_samples <= array.shape[0]:
        raise ValueError(
            f"n_samples={n_samples} must be between 1 and the global number of rows "
            f"{array.shape[0]}."
        )
    return ShardedRows(array, int(n_samples), mesh)
