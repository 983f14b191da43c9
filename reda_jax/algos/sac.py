"""Soft actor-critic as pure functions.

`make_sac(config, obs_dim, act_dim)` returns an `SAC` of pure functions:
  init(key) -> SACState
  update(state, batch: Transitions, key) -> (SACState, metrics)
  act(actor_params, obs (..., obs_dim), key, deterministic) -> actions (..., act_dim)
The observation may be any feature vector (e.g. [state, z] for a task-conditioned policy).
With `q_weight` set, the actor is offline (SAC+BC, paper Section 3.3): its loss is
  alpha * log pi(a~|s) - q_weight * Q(s, a~) / mean|Q| + bc_weight * sum_dims (a~ - a_data)^2
averaged over the batch, with mean|Q| taken over the batch and held constant (TD3+BC's
normalisation, Fujimoto & Gu 2021).
Update order: critics (twin, clipped double-Q, entropy backup), actor (on the new critics),
temperature (target entropy -|A| by default), then Polyak averaging of the target critics.
The pieces (`critic_loss`, `apply_critic_grads`, `actor_step`) are exposed so that a
caller can also differentiate the critic loss with respect to its own inputs (e.g. a
context encoder trained through the critics, reda_jax.algos.meta).
Bootstrapping is cut by `terminals` only: a time-limit truncation bootstraps.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from reda_jax.configs import SACConfig
from reda_jax.networks.policies import TanhGaussianActor, TwinCritic, sample_tanh_gaussian
from reda_jax.optim import apply_gradients
from reda_jax.types import Transitions, check_transitions


@flax.struct.dataclass
class SACState:
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array  # ()
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    step: jax.Array  # () int32


def td_target(rewards: jax.Array, terminals: jax.Array, next_q: jax.Array, next_log_prob: jax.Array,
              alpha: jax.Array, gamma: float, backup_entropy: bool = True,
              bounds: tuple[float, float] | None = None) -> jax.Array:
    """Soft TD target, all (B,) except next_q (num_qs, B):
    r + gamma * (1 - terminal) * (min_i Q_i(s', a') - alpha * log pi(a'|s')),
    clipped to bounds = (low, high) if given."""
    v = next_q.min(0)
    if backup_entropy:
        v = v - alpha * next_log_prob
    target = rewards + gamma * (1.0 - terminals) * v
    if bounds is not None:
        target = jnp.clip(target, bounds[0], bounds[1])
    return target


def value_bounds(reward_min: float, reward_max: float, gamma: float) -> tuple[float, float]:
    """The range of any discounted return when every reward lies in [reward_min, reward_max]
    and an episode may end (terminal value 0) at any step:
    [min(0, r_min), max(0, r_max)] / (1 - gamma)."""
    if not (reward_min <= reward_max) or not 0.0 <= gamma < 1.0:
        raise ValueError(f"need reward_min <= reward_max and 0 <= gamma < 1, got "
                         f"{reward_min}, {reward_max}, {gamma}")
    return min(0.0, reward_min) / (1.0 - gamma), max(0.0, reward_max) / (1.0 - gamma)


class SAC(NamedTuple):
    init: Callable[[jax.Array], SACState]
    update: Callable[[SACState, Transitions, jax.Array], tuple[SACState, dict]]
    act: Callable[..., jax.Array]
    actor: TanhGaussianActor
    critic: TwinCritic
    critic_loss: Callable[..., tuple[jax.Array, dict]]
    """(critic_params, state, batch, key) -> (loss, info): twin-critic TD loss."""
    apply_critic_grads: Callable[[SACState, dict], SACState]
    actor_step: Callable[[SACState, Transitions, jax.Array], tuple[SACState, dict]]


def actor_objective(log_prob: jax.Array, q: jax.Array, alpha: jax.Array,
                    q_weight: float | None = None, bc_weight: float = 0.0,
                    actions: jax.Array | None = None, data_actions: jax.Array | None = None,
                    entropy: bool = True, bc_scale: jax.Array | float = 1.0) -> jax.Array:
    """The actor's loss from (B,) log pi(a~|s) and (B,) min-Q at the sampled actions a~ (B, da).

    q_weight None: SAC's mean(alpha * log pi - Q). Otherwise SAC+BC with TD3+BC scaling:
    mean(alpha * log pi - q_weight * Q / stop_grad(mean|Q|)
         + bc_weight * sum_dims bc_scale * (a~ - a_data)^2),
    bc_scale a scalar or (da,) per-dimension weights (e.g. 1 / the data's action variance).
    entropy False drops the alpha * log pi term.
    """
    ent = alpha * log_prob if entropy else jnp.zeros_like(log_prob)
    if q_weight is None:
        return (ent - q).mean()
    scale = q_weight / jax.lax.stop_gradient(jnp.abs(q).mean() + 1e-6)
    bc = (bc_scale * (actions - data_actions) ** 2).sum(-1)
    return (ent - scale * q + bc_weight * bc).mean()


def make_sac(config: SACConfig, obs_dim: int, act_dim: int, q_weight: float | None = None,
             bc_weight: float = 0.0, actor_entropy: bool = True,
             target_bounds: tuple[float, float] | None = None,
             bc_on_mean: bool = False, bc_scale: jax.Array | float = 1.0) -> SAC:
    """SAC (q_weight None) or offline SAC+BC (q_weight, bc_weight; see the module doc).
    actor_entropy False: no alpha * log pi term in the actor's loss; target_bounds (low,
    high): TD targets clipped to that range (e.g. `value_bounds` of the data's rewards);
    bc_on_mean: the BC error is that of the deterministic action tanh(mu(s)) (TD3+BC's
    deterministic actor) instead of the sampled a~ (the reference code); bc_scale: weights of
    the BC error's action dimensions, a scalar or (act_dim,) (`actor_objective`)."""
    actor = TanhGaussianActor(config.hidden_dims, act_dim, config.log_std_min, config.log_std_max,
                              network_init=config.network_init)
    critic = TwinCritic(config.hidden_dims, network_init=config.network_init)
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)
    alpha_opt = optax.adam(config.alpha_lr)
    target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy

    def init(key: jax.Array) -> SACState:
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, obs_dim))
        act = jnp.zeros((1, act_dim))
        actor_params = actor.init(k_actor, obs)
        critic_params = critic.init(k_critic, obs, act)
        log_alpha = jnp.asarray(jnp.log(config.init_temperature), jnp.float32)
        return SACState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=jax.tree.map(jnp.copy, critic_params),
            log_alpha=log_alpha,
            actor_opt_state=actor_opt.init(actor_params),
            critic_opt_state=critic_opt.init(critic_params),
            alpha_opt_state=alpha_opt.init(log_alpha),
            step=jnp.zeros((), jnp.int32),
        )

    def policy(actor_params, obs, key):
        mean, log_std = actor.apply(actor_params, obs)
        return sample_tanh_gaussian(mean, log_std, key)

    def act(actor_params, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        if deterministic:
            return jnp.tanh(actor.apply(actor_params, obs)[0])
        return policy(actor_params, obs, key)[0]

    def critic_loss(critic_params, state: SACState, batch: Transitions, key):
        next_act, next_logp = policy(state.actor_params, batch.next_observations, key)
        next_q = critic.apply(state.target_critic_params, batch.next_observations, next_act)
        target = td_target(batch.rewards, batch.terminals, next_q, next_logp,
                           jnp.exp(state.log_alpha), config.gamma, config.backup_entropy,
                           target_bounds)
        q = critic.apply(critic_params, batch.observations, batch.actions)  # (2, B)
        loss = ((q - jax.lax.stop_gradient(target)) ** 2).mean(1).sum()
        return loss, {"critic_loss": loss, "q": q.mean(), "q_max": q.max(),
                      "target_q": target.mean()}

    def actor_loss(actor_params, critic_params, log_alpha, batch: Transitions, key):
        mean, log_std = actor.apply(actor_params, batch.observations)
        a, logp = sample_tanh_gaussian(mean, log_std, key)
        q = critic.apply(critic_params, batch.observations, a).min(0)
        bc_actions = jnp.tanh(mean) if bc_on_mean else a
        loss = actor_objective(logp, q, jnp.exp(log_alpha), q_weight, bc_weight, bc_actions,
                               batch.actions, actor_entropy, bc_scale)
        info = {"actor_loss": loss, "entropy": -logp.mean()}
        if q_weight is not None:
            info["bc_mse"] = ((a - batch.actions) ** 2).sum(-1).mean()
            info["mean_action_mse"] = ((jnp.tanh(mean) - batch.actions) ** 2).sum(-1).mean()
        return loss, info

    def alpha_loss(log_alpha, entropy):
        return log_alpha * (entropy - target_entropy)

    def apply_critic_grads(state: SACState, grads) -> SACState:
        """One Adam step of the critics from gradients of `critic_loss`."""
        critic_params, critic_opt_state = apply_gradients(
            critic_opt, state.critic_params, state.critic_opt_state, grads)
        return state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)

    def actor_step(state: SACState, batch: Transitions, key: jax.Array) -> tuple[SACState, dict]:
        """The rest of an update after the critics: actor (on the current critics),
        temperature, Polyak averaging of the target critics, step + 1."""
        grads, a_info = jax.grad(actor_loss, has_aux=True)(
            state.actor_params, state.critic_params, state.log_alpha, batch, key)
        actor_params, actor_opt_state = apply_gradients(
            actor_opt, state.actor_params, state.actor_opt_state, grads)

        entropy = jax.lax.stop_gradient(a_info["entropy"])
        grad_alpha = jax.grad(alpha_loss)(state.log_alpha, entropy)
        log_alpha, alpha_opt_state = apply_gradients(
            alpha_opt, state.log_alpha, state.alpha_opt_state, grad_alpha)

        target_critic_params = optax.incremental_update(
            state.critic_params, state.target_critic_params, config.tau)
        new_state = state.replace(
            actor_params=actor_params, target_critic_params=target_critic_params,
            log_alpha=log_alpha, actor_opt_state=actor_opt_state,
            alpha_opt_state=alpha_opt_state, step=state.step + 1)
        return new_state, {**a_info, "alpha": jnp.exp(log_alpha)}

    def update(state: SACState, batch: Transitions, key: jax.Array) -> tuple[SACState, dict]:
        """One gradient step on a batch of (B, ...) transitions."""
        check_transitions(batch, obs_dim, act_dim)
        k_critic, k_actor = jax.random.split(key)
        grads, c_info = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch, k_critic)
        state = apply_critic_grads(state, grads)
        state, a_info = actor_step(state, batch, k_actor)
        return state, {**c_info, **a_info}

    return SAC(init=init, update=update, act=act, actor=actor, critic=critic,
               critic_loss=critic_loss, apply_critic_grads=apply_critic_grads,
               actor_step=actor_step)
