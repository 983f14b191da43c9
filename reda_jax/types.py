"""Pytrees shared across the library, with their array shapes.

N = number of transitions, B = batch, K = context window length,
ds = observation dim, da = action dim, T = tasks (a leading axis when vmapped).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import chex
import flax.struct
import jax
import numpy as np


@flax.struct.dataclass
class Transitions:
    """A flat set of transitions in episode order.

    observations: (N, ds) float32
    actions: (N, da) float32, in the normalised action box [-1, 1]
    rewards: (N,) float32
    next_observations: (N, ds) float32
    terminals: (N,) float32, 1.0 where the MDP terminated (never set by a time limit)
    truncations: (N,) float32, 1.0 where the episode was cut by the time limit
        (or by the end of collection) without terminating
    An episode ends at a transition whose terminal or truncation is 1.
    """

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    terminals: jax.Array
    truncations: jax.Array

    @property
    def size(self) -> int:
        return self.rewards.shape[-1]


@flax.struct.dataclass
class ContextBatch:
    """Length-K context windows that never cross an episode boundary.

    Windows are right-aligned: position K-1 is the newest transition; positions before
    the episode start are padding with mask 0 and zero contents.
    observations: (B, K, ds); actions: (B, K, da); rewards: (B, K);
    next_observations: (B, K, ds); prev_actions: (B, K, da), prev_rewards (B, K) and
    prev_observations (B, K, ds): the step before (zero at an episode's first step);
    terminals: (B, K); mask: (B, K) float32, 1.0 for real transitions.
    """

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    prev_actions: jax.Array
    prev_rewards: jax.Array
    prev_observations: jax.Array
    terminals: jax.Array
    mask: jax.Array


def check_transitions(batch: Transitions, obs_dim: int, act_dim: int) -> None:
    """Trace-time shape check of a batch (any leading dims L): observations and
    next_observations (*L, obs_dim), actions (*L, act_dim), rewards / terminals /
    truncations (*L,). Raises AssertionError naming the field and the shapes."""
    lead = batch.rewards.shape
    expected = dict(observations=lead + (obs_dim,), next_observations=lead + (obs_dim,),
                    actions=lead + (act_dim,), rewards=lead, terminals=lead, truncations=lead)
    for name, shape in expected.items():
        actual = getattr(batch, name).shape
        chex.assert_equal(actual, shape, custom_message=f"Transitions.{name} has shape "
                          f"{actual}, expected {shape}")


@flax.struct.dataclass
class TrainState:
    """A network trained by one optax optimiser: params, its optimiser state, and the
    number of updates done (() int32). The state of every single-network learner."""

    params: dict
    opt_state: Any
    step: jax.Array


def data_vector(value: Any, size: int, name: str, needed_for: str) -> jax.Array:
    """`value` (a statistic of the training data, e.g. a per-dimension std) as a float32
    (size,) array; ValueError naming it when it is missing or has another shape."""
    if value is None:
        raise ValueError(f"{needed_for} needs the training data's {name} ({size},)")
    out = jax.numpy.asarray(value, jax.numpy.float32)
    if out.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {out.shape}")
    return out


class History(NamedTuple):
    """An env's own last H steps of the current episode, right-aligned (step t at H-1).

    tokens: (S, M, H, D) float32, token j = (s_j, a_{j-1}) (a_{-1} = 0), zeros on padding
    mask: (S, M, H) float32, 1 for real steps, 0 before the episode start
    returns_before: (S, M, H) float32, undiscounted return collected before step j (0 at j=0)
    timesteps: (S, M, H) int32, step index j within the episode (0 on padding)
    """

    tokens: np.ndarray
    mask: np.ndarray
    returns_before: np.ndarray
    timesteps: np.ndarray
