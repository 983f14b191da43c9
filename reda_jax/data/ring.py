"""A fixed-capacity on-device ring buffer of arbitrary pytrees, with per-row weights.

Rows with weight 0 (e.g. steps after a model rollout terminated) are stored but never
sampled. Shapes: every leaf (C, ...), weights (C,); C = capacity.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Ring:
    data: Any          # pytree, every leaf (C, ...)
    weights: jax.Array  # (C,) float32, 0 for empty or invalid rows
    pointer: jax.Array  # () int32, next row to write


def init_ring(example: Any, capacity: int) -> Ring:
    """An empty ring whose rows look like `example` (a pytree of single rows)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype),
                        example)
    return Ring(data=data, weights=jnp.zeros((capacity,), jnp.float32),
                pointer=jnp.zeros((), jnp.int32))


def push(ring: Ring, rows: Any, weights: jax.Array) -> Ring:
    """Writes n rows (every leaf (n, ...), weights (n,)) after the pointer, wrapping
    around; n must not exceed the capacity."""
    capacity = ring.weights.shape[0]
    n = weights.shape[0]
    if n > capacity:
        raise ValueError(f"pushing {n} rows into a ring of capacity {capacity}")
    idx = (ring.pointer + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda d, r: d.at[idx].set(r.astype(d.dtype)), ring.data, rows)
    return Ring(data=data, weights=ring.weights.at[idx].set(weights.astype(jnp.float32)),
                pointer=(ring.pointer + n) % capacity)


def sampling_cdf(ring: Ring) -> jax.Array:
    """(C,) cumulative weights; compute once after pushing, reuse for many draws."""
    return jnp.cumsum(ring.weights)


def sample(ring: Ring, cdf: jax.Array, key: jax.Array, batch_size: int) -> tuple[Any, jax.Array]:
    """batch_size rows drawn with probability proportional to their weight.

    Returns (rows with leaves (B, ...), ok () float32): ok is 0 when the ring holds no
    weight at all, in which case the rows are meaningless and must be masked out.
    """
    total = cdf[-1]
    u = jax.random.uniform(key, (batch_size,)) * total
    idx = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, cdf.shape[0] - 1)
    rows = jax.tree.map(lambda d: d[idx], ring.data)
    return rows, (total > 0).astype(jnp.float32)
