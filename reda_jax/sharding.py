"""The seed axis over devices: with several devices every seed-stacked array (states, seed
keys) is placed with a NamedSharding over a one-axis mesh named 'seed', so each jitted,
vmapped epoch runs its seeds on different devices (GSPMD partitions the program; no pmap).
Arrays without a seed axis (datasets) stay as they are and are replicated by jit.

    keys = shard_seeds(seed_keys(0, 4, 1))      # (S,) keys, S/n seeds per device
    state = shard_seeds(jax.jit(jax.vmap(init))(keys))

With one device, or a seed count the device count does not divide, it is the identity.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seed"


def seed_mesh(num_seeds: int, devices: list | None = None) -> Mesh | None:
    """A 1-D Mesh ('seed',) over all devices when there are several and they divide
    num_seeds; else None."""
    devices = jax.devices() if devices is None else devices
    if len(devices) < 2 or num_seeds % len(devices):
        return None
    return Mesh(np.asarray(devices), (SEED_AXIS,))


def seed_sharding(num_seeds: int) -> NamedSharding | None:
    """NamedSharding splitting an array's leading (seed) axis, or None (see seed_mesh)."""
    mesh = seed_mesh(num_seeds)
    return None if mesh is None else NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def shard_seeds(tree: Any, num_seeds: int | None = None) -> Any:
    """Places every leaf whose leading axis has length num_seeds (default: the leading
    length of the first leaf that has an axis) split over the 'seed' mesh axis; other
    leaves are left alone. Identity with one device or when the device count does not
    divide num_seeds."""
    if num_seeds is None:
        shaped = [x for x in jax.tree.leaves(tree) if np.ndim(x) >= 1]
        if not shaped:
            return tree
        num_seeds = int(np.shape(shaped[0])[0])
    sharding = seed_sharding(num_seeds)
    if sharding is None:
        return tree

    def place(x):
        if np.ndim(x) >= 1 and np.shape(x)[0] == num_seeds:
            return jax.device_put(x, sharding)
        return x

    return jax.tree.map(place, tree)
