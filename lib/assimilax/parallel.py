"""Placing ensembles and states across devices with :mod:`jax.sharding`.

Every filter in :mod:`assimilax.filters` is a jitted pure function, so XLA's SPMD partitioner
propagates the sharding of its inputs: place the initial ensemble with
:func:`shard_ensemble` (members split across devices) or :func:`shard_state` (state components
split across devices) and the whole filter runs distributed, with the same numbers as on one
device (up to floating-point reassociation in reductions). On CPU, several host devices can be
simulated with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before importing JAX.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


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


__all__ = ["device_mesh", "shard_ensemble", "shard_state"]
