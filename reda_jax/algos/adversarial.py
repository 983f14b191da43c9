"""Branch rollouts in learned models and the adversarial reward (paper Section 3.2, Eq. 5-6).

A rollout of horizon h starts from a real token (s_0, a_{-1}[, r_{-1}, s_{-1}]) and produces
tokens (s_{t+1}, a_t[, r_t, s_t]), t = 0..h-1 (`data.tokens`), so it holds h + 1 tokens;
token t is valid while the rollout is alive (a terminal next state is still a valid token;
nothing after it is). Everything is a `lax.scan` over the horizon with fixed shapes and an
alive mask.

Shapes: R = rollouts, h = horizon, K = window, ds / da = observation / action dims,
D = the token size (`data.tokens`), T = tasks.
"""
from __future__ import annotations

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from reda_jax.data.tokens import make_tokens


@flax.struct.dataclass
class Rollout:
    """observations (R, h+1, ds): s_0..s_h; actions (R, h, da): a_0..a_{h-1};
    prev_action (R, da), prev_reward (R,), prev_observation (R, ds): a_{-1}, r_{-1}, s_{-1}
    of the real start token; rewards (R, h): the learned task reward r^(s_t, a_t);
    uncertainty (R, h): u(s_t, a_t); terminals (R, h): s_{t+1} is terminal;
    alive (R, h+1): token t is valid (alive[:, 0] = 1)."""

    observations: jax.Array
    actions: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array
    prev_observation: jax.Array
    rewards: jax.Array
    uncertainty: jax.Array
    terminals: jax.Array
    alive: jax.Array

    def tokens(self, kind: str) -> jax.Array:
        """(R, h+1, D): token t = (s_t, a_{t-1}[, r_{t-1}, s_{t-1}]) of `kind`."""
        prev_act = jnp.concatenate([self.prev_action[:, None], self.actions], axis=1)
        prev_rew = jnp.concatenate([self.prev_reward[:, None], self.rewards], axis=1)
        prev_obs = jnp.concatenate([self.prev_observation[:, None], self.observations[:, :-1]],
                                   axis=1)
        return make_tokens(kind, self.observations, prev_act, prev_rew, prev_obs)


# step_fn(obs (R, ds), act (R, da), key) -> (next_obs (R, ds), uncertainty (R,), reward (R,))
StepFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
# policy_fn(obs (R, ds), key) -> actions (R, da) in [-1, 1]
PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]


def model_rollout(start_obs: jax.Array, start_prev_action: jax.Array, step_fn: StepFn,
                  policy_fn: PolicyFn, termination_fn: Callable, horizon: int,
                  key: jax.Array, start_prev_reward: jax.Array | None = None,
                  start_prev_obs: jax.Array | None = None) -> Rollout:
    """Rolls `policy_fn` for `horizon` steps in a learned model from start_obs (R, ds);
    start_prev_action (R, da), start_prev_reward (R,) and start_prev_obs (R, ds): the
    start token's previous step (None: zeros, an episode's first step)."""

    def body(carry, key_t):
        obs, alive = carry
        k_act, k_step = jax.random.split(key_t)
        act = policy_fn(obs, k_act)
        next_obs, unc, rew = step_fn(obs, act, k_step)
        done = termination_fn(obs, act, next_obs)
        # A dead row keeps its last state so that the model never sees garbage.
        next_obs = jnp.where(alive[:, None], next_obs, obs)
        next_alive = alive * (1.0 - done.astype(jnp.float32))
        return (next_obs, next_alive), (act, next_obs, rew, unc, done.astype(jnp.float32), alive)

    alive0 = jnp.ones(start_obs.shape[:1], jnp.float32)
    _, (acts, next_obs, rews, uncs, dones, alives) = jax.lax.scan(
        body, (start_obs, alive0), jax.random.split(key, horizon))
    swap = lambda x: jnp.swapaxes(x, 0, 1)
    # Token t+1 is valid iff step t was taken by a live rollout.
    alive = jnp.concatenate([alive0[:, None], swap(alives)], axis=1)
    return Rollout(
        observations=jnp.concatenate([start_obs[:, None], swap(next_obs)], axis=1),
        actions=swap(acts), prev_action=start_prev_action,
        prev_reward=(jnp.zeros(start_obs.shape[:1], start_obs.dtype)
                     if start_prev_reward is None else start_prev_reward),
        prev_observation=(jnp.zeros_like(start_obs) if start_prev_obs is None
                          else start_prev_obs),
        rewards=swap(rews),
        uncertainty=swap(uncs), terminals=swap(dones), alive=alive)


def prefix_windows(tokens: jax.Array, valid: jax.Array, window: int
                   ) -> tuple[jax.Array, jax.Array]:
    """Right-aligned windows ending at every token.

    tokens (R, L, D), valid (R, L) -> windows (R, L, K, D), mask (R, L, K): window t holds
    tokens t-K+1..t; positions before token 0 or on invalid tokens are masked and zeroed.
    """
    length = tokens.shape[1]
    idx = jnp.arange(length)[:, None] + jnp.arange(1 - window, 1)[None, :]   # (L, K)
    inside = idx >= 0
    safe = jnp.clip(idx, 0, length - 1)
    win = tokens[:, safe]                                                     # (R, L, K, D)
    mask = valid[:, safe] * inside[None].astype(valid.dtype)                  # (R, L, K)
    # A window ending on an invalid token is entirely invalid.
    mask = mask * valid[:, :, None]
    return win * mask[..., None], mask


def adversarial_reward(scores: jax.Array) -> jax.Array:
    """r_adv_t from the true task's InfoNCE scores R(z_t), scores (..., h+1) -> (..., h).

    Eq. 5 writes R(z_{t+1}) - R(z_t); the adversary *minimises* J (Eq. 3: min over pi_a),
    so it is rewarded for lowering the true task's score: r_adv_t = R(z_t) - R(z_{t+1})
    (DESIGN.md fidelity rule 3; tests/test_reda.py pins the sign behaviourally).
    """
    return scores[..., :-1] - scores[..., 1:]


def imitation_reward(scores: jax.Array) -> jax.Array:
    """The public ReDA code's r_adv_t = R_k(z_{t+1}) - R_k(z_t), scores (..., h+1) -> (..., h):
    task k's score in a rollout of ANOTHER task's model, which the adversary raises (it
    learns to make the other tasks look like task k). `representation.adversary_reward =
    'reference'`."""
    return -adversarial_reward(scores)


def total_reward(r_adv: jax.Array, uncertainty: jax.Array, task_reward: jax.Array,
                 lambda1: float, lambda2: float) -> jax.Array:
    """Eq. 6: r_adv - lambda1 * u(s, a) + lambda2 * r^(s, a); all (R, h)."""
    return r_adv - lambda1 * uncertainty + lambda2 * task_reward
