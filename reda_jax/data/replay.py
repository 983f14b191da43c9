"""An on-device replay buffer with a leading member axis (tasks or seeds).

Arrays are (M, capacity, ...); `size` counts the filled rows (the same for every member,
since all members step together). Insertion writes a whole chunk of steps at once.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from reda_jax.types import Transitions


@flax.struct.dataclass
class ReplayBuffer:
    data: Transitions  # every field (M, capacity, ...)
    size: jax.Array  # () int32


def init_replay(num_members: int, capacity: int, obs_dim: int, act_dim: int) -> ReplayBuffer:
    def z(*shape):
        return jnp.zeros((num_members, capacity) + shape, jnp.float32)

    data = Transitions(z(obs_dim), z(act_dim), z(), z(obs_dim), z(), z())
    return ReplayBuffer(data=data, size=jnp.zeros((), jnp.int32))


def insert(buffer: ReplayBuffer, chunk: Transitions) -> ReplayBuffer:
    """Appends `chunk` (every field (M, n, ...)) after the filled rows. Capacity must not be
    exceeded (the caller sizes the buffer to the run's total steps)."""
    n = chunk.rewards.shape[1]

    def put(dst, src):
        start = (0, buffer.size) + (0,) * (dst.ndim - 2)
        return jax.lax.dynamic_update_slice(dst, src.astype(dst.dtype), start)

    return ReplayBuffer(data=jax.tree.map(put, buffer.data, chunk), size=buffer.size + n)


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transitions:
    """Uniform batch per member from the filled rows: every field (M, batch_size, ...)."""
    num_members = buffer.data.rewards.shape[0]
    idx = jax.random.randint(key, (num_members, batch_size), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda x: jax.vmap(lambda xm, im: xm[im])(x, idx), buffer.data)
