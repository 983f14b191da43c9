"""What one context token holds (`TrainConfig.token`), the same for every method, both
evaluation protocols and the model rollouts: token t describes how the agent arrived at
state s_t.

  'state'       (s_t, a_{t-1}): D = ds + da (the reference code's context element);
  'transition'  (s_t, a_{t-1}, r_{t-1}, s_{t-1}): D = 2 ds + da + 1, the whole transition
                that led to s_t, so a window of K tokens holds K transitions with their
                rewards instead of K states linked by K - 1 actions.

At an episode's first step the previous action, reward and state are zeros. Both kinds start
with (s_t, a_{t-1}), so code that reads those columns reads them at the same place."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from reda_jax.configs import TOKENS


def check_token(kind: str) -> None:
    if kind not in TOKENS:
        raise ValueError(f"token must be one of {TOKENS}, got {kind!r}")


def token_dim(kind: str, obs_dim: int, act_dim: int) -> int:
    """D, the size of one token."""
    check_token(kind)
    return obs_dim + act_dim if kind == "state" else 2 * obs_dim + act_dim + 1


def make_tokens(kind: str, observations: jax.Array, prev_actions: jax.Array,
                prev_rewards: jax.Array, prev_observations: jax.Array) -> jax.Array:
    """observations (..., ds), prev_actions (..., da), prev_rewards (...), prev_observations
    (..., ds) -> tokens (..., D)."""
    check_token(kind)
    if kind == "state":
        return jnp.concatenate([observations, prev_actions], -1)
    return jnp.concatenate([observations, prev_actions, prev_rewards[..., None],
                            prev_observations], -1)
