"""On-device sampling of transitions and context windows.

A `DeviceDataset` holds one task's transitions on the device with a precomputed
`episode_start`, padded to a fixed length so that several tasks stack into one pytree with a
leading task axis T and the samplers can be `jax.vmap`ped over it.

Context windows (`sample_context_windows`) are right-aligned: for an end index t, position
K-1 holds transition t and position j holds t-(K-1)+j; positions before the start of t's
episode are padding (mask 0, all contents zero). Windows never cross an episode boundary.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from reda_jax.types import ContextBatch, Transitions


@flax.struct.dataclass
class DeviceDataset:
    """One task's data on the device (shapes without the optional leading task axis T).

    transitions: Transitions with (N, ...) arrays, N = padded length
    episode_start: (N,) int32, index of the first transition of the episode containing i
    size: () int32, number of valid rows; rows >= size are padding and never sampled
    """

    transitions: Transitions
    episode_start: jax.Array
    size: jax.Array


def _as_transitions(data: Transitions | Mapping[str, Any]) -> Transitions:
    if isinstance(data, Transitions):
        return jax.tree.map(lambda x: np.asarray(x, np.float32), data)
    from reda_jax.data.store import to_transitions
    return to_transitions(data)


def make_device_dataset(transitions: Transitions | Mapping[str, Any],
                        pad_to: int | None = None) -> DeviceDataset:
    """Precomputes episode starts on the host, returns device arrays.

    transitions: `Transitions` or a dict of flat arrays (store.load_dataset), N rows in
        episode order; an episode ends where terminals or truncations is nonzero.
    pad_to: total length >= N; rows N..pad_to-1 are zeros (each its own one-step episode).
    """
    tr = _as_transitions(transitions)
    n = tr.rewards.shape[0]
    pad_to = n if pad_to is None else int(pad_to)
    if pad_to < n:
        raise ValueError(f"pad_to={pad_to} is smaller than the dataset ({n} rows)")
    done = (tr.terminals > 0.5) | (tr.truncations > 0.5)
    is_start = np.concatenate([[True], done[:-1]])
    idx = np.arange(n)
    episode_start = np.maximum.accumulate(np.where(is_start, idx, 0))

    extra = pad_to - n
    pad = lambda x: np.concatenate([x, np.zeros((extra,) + x.shape[1:], x.dtype)])
    return DeviceDataset(
        transitions=jax.device_put(jax.tree.map(pad, tr)),
        episode_start=jnp.asarray(np.concatenate([episode_start, np.arange(n, pad_to)]),
                                  jnp.int32),
        size=jnp.asarray(n, jnp.int32),
    )


def _pad_device_dataset(ds: DeviceDataset, length: int) -> DeviceDataset:
    n = ds.episode_start.shape[0]
    extra = length - n
    pad = lambda x: jnp.concatenate([x, jnp.zeros((extra,) + x.shape[1:], x.dtype)])
    return DeviceDataset(
        transitions=jax.tree.map(pad, ds.transitions),
        episode_start=jnp.concatenate([ds.episode_start,
                                       jnp.arange(n, length, dtype=jnp.int32)]),
        size=ds.size,
    )


def stack_datasets(datasets: Sequence[DeviceDataset | Transitions | Mapping[str, Any]]
                   ) -> DeviceDataset:
    """Stacks tasks along a new leading axis T, padding each to the longest length.

    Returns a DeviceDataset with transitions (T, N_max, ...), episode_start (T, N_max) and
    size (T,) (each task's own number of valid rows).
    """
    dss = [d if isinstance(d, DeviceDataset) else make_device_dataset(d) for d in datasets]
    if not dss:
        raise ValueError("stack_datasets needs at least one dataset")
    length = max(d.episode_start.shape[0] for d in dss)
    dss = [_pad_device_dataset(d, length) for d in dss]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *dss)


def sample_transitions(ds: DeviceDataset, key: jax.Array, batch_size: int) -> Transitions:
    """Uniform batch of B = batch_size transitions from rows [0, size); arrays (B, ...).

    Pure and jittable (batch_size static); vmap over a leading task axis of `ds` and key.
    """
    idx = jax.random.randint(key, (batch_size,), 0, ds.size)
    return jax.tree.map(lambda x: x[idx], ds.transitions)


def window_rows(ds: DeviceDataset, key: jax.Array, batch_size: int, window: int
                ) -> tuple[jax.Array, jax.Array]:
    """Row indices of B right-aligned windows of K rows: (safe (B, K) int32, valid (B, K)
    bool). End rows t are uniform in [0, size); row j of a window is t-(K-1)+j, valid if it
    is >= episode_start[t]; invalid positions point at t (read them through `take_window`)."""
    t = jax.random.randint(key, (batch_size,), 0, ds.size)             # (B,)
    idx = t[:, None] + jnp.arange(1 - window, 1)[None, :]             # (B, K)
    valid = idx >= ds.episode_start[t][:, None]                        # (B, K)
    return jnp.where(valid, idx, t[:, None]), valid


def take_window(x: jax.Array, safe: jax.Array, valid: jax.Array) -> jax.Array:
    """x (N, ...) gathered at `window_rows` -> (B, K, ...), zeros at invalid positions."""
    g = x[safe]
    m = valid.reshape(valid.shape + (1,) * (g.ndim - 2))
    return jnp.where(m, g, jnp.zeros((), g.dtype))


def take_previous(x: jax.Array, safe: jax.Array, valid: jax.Array, episode_start: jax.Array
                  ) -> jax.Array:
    """x (N, ...) at the row before each `window_rows` row in the same episode -> (B, K, ...);
    zeros at an episode's first row and at invalid positions (the previous step's action,
    reward and state of a token)."""
    return take_window(x, jnp.maximum(safe - 1, 0), valid & (safe > episode_start[safe]))


def sample_context_windows(ds: DeviceDataset, key: jax.Array, batch_size: int,
                           window: int) -> ContextBatch:
    """B = batch_size right-aligned windows of K = window transitions (see module doc).

    End indices t are uniform in [0, size). Row j of a window is transition t-(K-1)+j if
    that index is >= episode_start[t], else padding (mask 0, zeros). Returns a ContextBatch
    with observations (B, K, ds), actions (B, K, da), rewards (B, K), next_observations
    (B, K, ds), prev_actions (B, K, da), prev_rewards (B, K), prev_observations (B, K, ds),
    terminals (B, K), mask (B, K) float32.
    Pure gathers; jittable with batch_size and window static; vmappable over tasks.
    """
    safe, valid = window_rows(ds, key, batch_size, window)
    take = lambda x: take_window(x, safe, valid)
    previous = lambda x: take_previous(x, safe, valid, ds.episode_start)
    tr = ds.transitions
    return ContextBatch(
        observations=take(tr.observations),
        actions=take(tr.actions),
        rewards=take(tr.rewards),
        next_observations=take(tr.next_observations),
        prev_actions=previous(tr.actions),
        prev_rewards=previous(tr.rewards),
        prev_observations=previous(tr.observations),
        terminals=take(tr.terminals),
        mask=valid.astype(jnp.float32),
    )


def sample_task_windows(data: DeviceDataset, key: jax.Array, batch_size: int,
                        window: int) -> ContextBatch:
    """`sample_context_windows` of each task of a stacked DeviceDataset (T, ...), with the
    T keys of jax.random.split(key, T): a ContextBatch with (T, B, K, ...) arrays."""
    keys = jax.random.split(key, data.size.shape[0])
    return jax.vmap(lambda d, k: sample_context_windows(d, k, batch_size, window))(data, keys)
