"""Placing ensembles and states across devices with :mod:`jax.sharding`.

Every filter in :mod:`assimilax.filters` is a jitted pure function, so XLA's SPMD partitioner
propagates the sharding of its inputs: place the initial ensemble with
:func:`shard_ensemble` (members split across devices) or :func:`shard_state` (state components
split across devices) and the whole filter runs distributed, with the same numbers as on one
device (up to floating-point reassociation in reductions). On CPU, several host devices can be
simulated with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before importing JAX.

*Many processes and hosts.* After :func:`jax.distributed.initialize` (one call per process, the
same ``coordinator_address`` and ``num_processes`` everywhere, CPU collectives over gloo),
``jax.devices()`` lists the devices of every process. :func:`global_mesh` orders them process by
process, :func:`local_member_range` says which members a process holds,
:func:`shard_ensemble_from_local` assembles the global ensemble from each process's own members
(:func:`jax.make_array_from_process_local_data`; no process ever holds the whole ensemble) and
:func:`gather` brings a result back to every host. Every process then calls the same filter with
the same arguments (SPMD); the numbers equal a one-process run up to reassociation in reductions
(``tests/test_distributed.py`` runs the ETKF on 2 processes).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float


def device_mesh(n_devices: int | None = None, axis_name: str = "devices") -> Mesh:
    """A 1-D mesh over the first ``n_devices`` devices (default: all)."""
    devices = jax.devices()
    n = len(devices) if n_devices is None else int(n_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"n_devices must be between 1 and {len(devices)}, got {n_devices}")
    return Mesh(np.array(devices[:n]), (axis_name,))


def _place(x, axis: int, mesh: Mesh | None):
    mesh = device_mesh() if mesh is None else mesh
    name = mesh.axis_names[0]
    n = mesh.devices.size
    if x.shape[axis] % n:
        raise ValueError(f"axis {axis} of length {x.shape[axis]} is not divisible by the {n} devices of the mesh")
    spec = [None] * x.ndim
    spec[axis] = name
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec(*spec)))


def shard_ensemble(ensemble, mesh: Mesh | None = None):
    """Split an ``(N, d)`` ensemble over devices along the member axis (``N`` divisible by the
    number of devices)."""
    if np.ndim(ensemble) != 2:
        raise ValueError(f"ensemble must have shape (N, d), got {np.shape(ensemble)}")
    return _place(ensemble, 0, mesh)


def shard_state(ensemble, mesh: Mesh | None = None):
    """Split an ``(N, d)`` ensemble over devices along the state axis (``d`` divisible by the
    number of devices): the layout for very large states with few members."""
    if np.ndim(ensemble) != 2:
        raise ValueError(f"ensemble must have shape (N, d), got {np.shape(ensemble)}")
    return _place(ensemble, 1, mesh)


def global_mesh(axis_name: str = "devices") -> Mesh:
    """A 1-D mesh over the devices of every process, ordered by process index and then device id,
    so that each process holds one contiguous block of a sharded axis (all devices of this
    process when JAX runs in one process)."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices), (axis_name,))


def _member_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0], None))


def local_member_range(n_members: int, mesh: Mesh | None = None) -> tuple[int, int]:
    """``(start, stop)``: the members of an ``(n_members, d)`` ensemble, split along members over
    ``mesh`` (default :func:`global_mesh`), that live on this process's devices.

    Raises ``ValueError`` when ``n_members`` is not divisible by the number of devices or this
    process's rows are not one contiguous block (a mesh not ordered by process).
    """
    mesh = global_mesh() if mesh is None else mesh
    n = mesh.devices.size
    if not isinstance(n_members, (int, np.integer)) or n_members < 1 or n_members % n:
        raise ValueError(f"n_members must be a positive multiple of the {n} devices of the mesh, got {n_members!r}")
    rows = sorted({(idx[0].start or 0, n_members if idx[0].stop is None else idx[0].stop)
                   for idx in _member_sharding(mesh).addressable_devices_indices_map((n_members, 1)).values()})
    start, stop = rows[0][0], rows[-1][1]
    if sum(b - a for a, b in rows) != stop - start:
        raise ValueError("this process's members are not contiguous on the mesh; order it by process (global_mesh)")
    return start, stop


def shard_ensemble_from_local(local_members: Float[Array, "n d"], n_members: int | None = None,
                              mesh: Mesh | None = None) -> Float[Array, "N d"]:
    """The global ``(N, d)`` ensemble, split along members over ``mesh`` (default
    :func:`global_mesh`), from the members held by this process.

    Each process passes its own block ``local_members`` ``(n, d)``, rows
    :func:`local_member_range` of the global ensemble; ``n_members`` (default ``n`` times the
    number of processes) is :math:`N`. In one process this is :func:`shard_ensemble` of the whole
    ensemble.

    **Arguments:** ``local_members`` ``(n, d)``; ``n_members`` :math:`N`; ``mesh`` a 1-D mesh
    ordered by process. **Returns:** a :class:`jax.Array` of shape ``(N, d)`` sharded along
    members. Raises ``ValueError`` when ``local_members`` is not 2-D or its row count differs from
    this process's share of :math:`N`.
    """
    if np.ndim(local_members) != 2:
        raise ValueError(f"local_members must have shape (n, d), got {np.shape(local_members)}")
    mesh = global_mesh() if mesh is None else mesh
    n_local, d = np.shape(local_members)
    N = n_local * jax.process_count() if n_members is None else int(n_members)
    start, stop = local_member_range(N, mesh)
    if n_local != stop - start:
        raise ValueError(f"local_members must have shape ({stop - start}, {d}) (members {start}..{stop - 1} of {N} "
                         f"on this process), got {np.shape(local_members)}")
    return jax.make_array_from_process_local_data(_member_sharding(mesh), np.asarray(local_members), (N, d))


def gather(x) -> np.ndarray:
    """The full value of a (possibly multi-process) :class:`jax.Array` as a NumPy array on every
    process (:func:`jax.experimental.multihost_utils.process_allgather`); a plain
    :func:`numpy.asarray` when this process can see all of it."""
    if getattr(x, "is_fully_addressable", True) or getattr(x, "is_fully_replicated", False):
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


__all__ = ["device_mesh", "gather", "global_mesh", "local_member_range", "shard_ensemble",
           "shard_ensemble_from_local", "shard_state"]
