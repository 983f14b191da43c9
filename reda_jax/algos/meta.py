"""Stage 3, shared by every context-based method: the meta-policy pi(a | s, z) (paper B.4).

z = encode(frozen, trainable, query, tokens, mask) of a K-token context window of the same
task. `frozen` are encoder parameters fixed in this stage (ReDA's, FOCAL's and CORRO's E1,
trained in stage 2); `trainable` are encoder parameters this stage trains ({} for ReDA and
FOCAL; the whole transformer for OM-SAC and OM-BC; CORRO's aggregator E2), by the same loss
as the policy's learner:

  objective 'sac_bc' (ReDA, OM-SAC, FOCAL, CORRO): SAC+BC (`algos.sac`, TD3+BC scaling).
      The critic loss is differentiated with respect to the critics AND the trainable encoder
      parameters (as CORRO and PEARL train their encoders); the actor and the temperature see
      the same z held constant; z' of the next window is held constant as well.
  objective 'bc' (OM-BC, BC): behavior cloning alone, mean over the batch of
      sum_dims (tanh(mu(s, z)) - a_data)^2, differentiated with respect to the actor and
      the trainable encoder parameters.

Sanity baselines: `bc` is objective 'bc' with `no_context` (z of size 0); `oracle` is
'sac_bc' with `task_features`: z is the true task's features instead of an encoding.

Batches: `per_task` = batch_size // T windows of every training task, each window's newest
step is the transition. config.context_source 'transition': z is that window's and z' the
window shifted by one step's (its newest token is (s', a), or (s', a, r, s) for transition
tokens); 'independent': z is that of another window of the same task drawn independently,
and z' = z. Shapes: T tasks, K window, D token size (`data.tokens`), Z = z dim.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from reda_jax.algos.contrastive import tokens_from_context
from reda_jax.algos.sac import make_sac, value_bounds
from reda_jax.configs import MetaPolicyConfig
from reda_jax.data.context import DeviceDataset, sample_task_windows
from reda_jax.data.tokens import make_tokens
from reda_jax.networks.policies import TanhGaussianActor
from reda_jax.optim import apply_gradients
from reda_jax.types import Transitions, data_vector

OBJECTIVES = ("sac_bc", "bc")
MIN_ACTION_STD = 1e-3
"""Floor of the action std that config.bc_error 'standardized' divides by (a constant action
dimension would otherwise get an unbounded weight)."""

EncodeFn = Callable[[Any, Any, jax.Array, jax.Array, jax.Array], jax.Array]
"""(frozen, trainable, query (..., D), tokens (..., K, D), mask (..., K)) -> z (..., Z)."""


@flax.struct.dataclass
class BCState:
    actor_params: dict
    actor_opt_state: optax.OptState
    step: jax.Array


@flax.struct.dataclass
class MetaState:
    """policy: SACState ('sac_bc') or BCState ('bc'); encoder: trainable encoder params
    ({} if none); encoder_opt_state: their Adam state; epoch: () int32."""

    policy: Any
    encoder: Any
    encoder_opt_state: optax.OptState
    epoch: jax.Array


class MetaLearner(NamedTuple):
    init: Callable[[jax.Array], MetaState]
    update: Callable[..., tuple[MetaState, dict]]
    epoch: Callable[..., tuple[MetaState, dict]]
    act: Callable[..., jax.Array]
    encode: EncodeFn


def task_z(task_features: jax.Array, lead: tuple[int, ...]) -> jax.Array:
    """The oracle's z of windows laid out (T, ...lead[1:]): task t's features (T, Z) broadcast
    to lead + (Z,)."""
    return jnp.broadcast_to(task_features.reshape(task_features.shape[:1]
                                                  + (1,) * (len(lead) - 1)
                                                  + task_features.shape[1:]),
                            lead + task_features.shape[1:])


def window_features(encode: EncodeFn, frozen, trainable, batch,
                    task_features: jax.Array | None = None,
                    context=None, normalize: Callable[[jax.Array], jax.Array] = lambda s: s,
                    token: str = "state") -> tuple[Transitions, jax.Array]:
    """ContextBatch (T, P, K, ...) -> (Transitions (T*P, ...) with z appended to s and z' to
    s', z (T*P, Z)). z' (of the window shifted by one step) is held constant. token: what
    the windows' tokens hold (`data.tokens`).
    task_features (T, Z): the oracle's z, the true task's features, replaces the encoder.
    context: ContextBatch (T, P, K, ...) of independent windows of the same tasks: z is
    theirs and z' = z (held constant); None: z of the transitions' own windows.
    normalize: applied to s and s' before z is appended (the encoder reads raw tokens)."""
    if task_features is not None:
        z = z_next = task_z(task_features, batch.rewards.shape[:2])
    elif context is not None:
        tokens, mask, query = tokens_from_context(context, token)
        z = encode(frozen, trainable, query, tokens, mask)
        z_next = jax.lax.stop_gradient(z)
    else:
        tokens, mask, query = tokens_from_context(batch, token)
        z = encode(frozen, trainable, query, tokens, mask)
        newest = lambda x: x[:, :, -1]
        next_token = make_tokens(token, newest(batch.next_observations), newest(batch.actions),
                                 newest(batch.rewards), newest(batch.observations))
        next_tokens = jnp.concatenate([tokens[:, :, 1:], next_token[:, :, None]], 2)
        next_mask = jnp.concatenate([mask[:, :, 1:], jnp.ones_like(mask[:, :, :1])], 2)
        z_next = jax.lax.stop_gradient(encode(frozen, trainable, next_token, next_tokens,
                                              next_mask))
    n = batch.rewards.shape[0] * batch.rewards.shape[1]     # T*P, explicit: z may be (T, P, 0)
    last = lambda x: x[:, :, -1].reshape((n,) + x.shape[3:])
    flat = lambda x: x.reshape((n,) + x.shape[2:])
    z = flat(z)
    return Transitions(
        observations=jnp.concatenate([normalize(last(batch.observations)), z], -1),
        actions=last(batch.actions), rewards=last(batch.rewards),
        next_observations=jnp.concatenate([normalize(last(batch.next_observations)),
                                           flat(z_next)], -1),
        terminals=last(batch.terminals),
        truncations=jnp.zeros_like(last(batch.rewards))), z


def no_context(frozen, trainable, query: jax.Array, tokens, mask) -> jax.Array:
    """The encoder of a context-free policy (`bc`): z (..., 0)."""
    return jnp.zeros(query.shape[:-1] + (0,), query.dtype)


def make_meta_learner(config: MetaPolicyConfig, obs_dim: int, act_dim: int, num_tasks: int,
                      window: int, z_dim: int, encode: EncodeFn,
                      init_trainable: Callable[[jax.Array], Any] | None = None,
                      encoder_lr: float = 3e-4, objective: str = "sac_bc",
                      reward_range: tuple[float, float] | None = None,
                      task_features: jax.Array | None = None,
                      state_stats: tuple[Any, Any] | None = None,
                      action_std: Any | None = None, token: str = "state") -> MetaLearner:
    """init(key) -> MetaState;
    update(state, frozen, batch: ContextBatch (T, P, K, ...), key, context=None) -> (state,
        metrics); context: independent windows (T, P, K, ...) that give z
        (config.context_source 'independent'), None: the batch's own windows;
    epoch(state, frozen, data: DeviceDataset (T, ...), key) -> (state, metrics): a lax.scan
        of config.updates_per_epoch updates, metrics with a leading (updates,) axis;
    act(actor_params, frozen, trainable, query (..., D), context (..., K, D), mask (..., K),
        task=None) -> deterministic actions (..., da); D: tokens of kind `token`
        (`data.tokens`), which start with the state s_t.
    reward_range (r_min, r_max) of the training data: TD targets are clipped to
        `value_bounds` of it when config.clip_td_target.
    task_features (T, z_dim): the oracle: z is the true task's features (training windows
        of task t get task_features[t]; `act` takes them as `task` (..., z_dim)), the
        encoder is unused.
    state_stats (mean (ds,), std (ds,)) of the training states: needed when
        config.normalize_states, which standardises the policy's and critics' s (and s').
    action_std (da,) of the training actions: needed when config.bc_error is 'standardized'
        (the BC error of dimension d is divided by max(std_d, 1e-3)^2)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    T, K = num_tasks, window
    independent = config.context_source == "independent" and task_features is None
    if task_features is not None:
        task_features = jnp.asarray(task_features, jnp.float32)
        if task_features.shape != (T, z_dim):
            raise ValueError(f"task_features must be (num_tasks, z_dim) = {(T, z_dim)}, got "
                             f"{task_features.shape}")
    per_task = max(config.sac.batch_size // T, 1)
    normalize = lambda s: s
    if config.normalize_states:
        mean, std = (data_vector(x, obs_dim, f"state_stats {name}", "normalize_states") for x, name
                     in zip(state_stats or (None, None), ("mean", "std")))
        normalize = lambda s: (s - mean) / std
    bounds = None
    if config.clip_td_target:
        if reward_range is None:
            raise ValueError("clip_td_target needs the training data's reward_range")
        bounds = value_bounds(float(reward_range[0]), float(reward_range[1]), config.sac.gamma)
    bc_scale = 1.0
    if config.bc_error == "standardized":
        action_std = data_vector(action_std, act_dim, "action_std", "bc_error 'standardized'")
        bc_scale = 1.0 / jnp.maximum(action_std, MIN_ACTION_STD) ** 2
    sac = make_sac(config.sac, obs_dim + z_dim, act_dim, q_weight=config.q_weight,
                   bc_weight=config.bc_weight, actor_entropy=config.actor_entropy,
                   target_bounds=bounds, bc_on_mean=config.bc_on_mean, bc_scale=bc_scale)
    bc_actor = TanhGaussianActor(config.sac.hidden_dims, act_dim, config.sac.log_std_min,
                                 config.sac.log_std_max)
    bc_opt = optax.adam(config.sac.actor_lr)
    enc_opt = optax.adam(encoder_lr)

    def init(key) -> MetaState:
        k_pol, k_enc = jax.random.split(key)
        trainable = {} if init_trainable is None else init_trainable(k_enc)
        if objective == "sac_bc":
            policy = sac.init(k_pol)
        else:
            params = bc_actor.init(k_pol, jnp.zeros((1, obs_dim + z_dim)))
            policy = BCState(actor_params=params, actor_opt_state=bc_opt.init(params),
                             step=jnp.zeros((), jnp.int32))
        return MetaState(policy=policy, encoder=trainable,
                         encoder_opt_state=enc_opt.init(trainable), epoch=jnp.zeros((), jnp.int32))

    def step_encoder(state: MetaState, grads):
        return apply_gradients(enc_opt, state.encoder, state.encoder_opt_state, grads)

    def update(state: MetaState, frozen, batch, key, context=None) -> tuple[MetaState, dict]:
        if objective == "sac_bc":
            k_critic, k_actor = jax.random.split(key)

            def loss(critic_params, trainable):
                tr, _ = window_features(encode, frozen, trainable, batch, task_features,
                                        context, normalize, token)
                l, info = sac.critic_loss(critic_params, state.policy, tr, k_critic)
                return l, (info, tr)

            (g_critic, g_enc), (c_info, tr) = jax.grad(loss, argnums=(0, 1), has_aux=True)(
                state.policy.critic_params, state.encoder)
            policy = sac.apply_critic_grads(state.policy, g_critic)
            policy, a_info = sac.actor_step(policy, jax.lax.stop_gradient(tr), k_actor)
            info = {**c_info, **a_info}
        else:
            def loss(actor_params, trainable):   # BC needs no z' of the next window
                tokens, mask, query = tokens_from_context(
                    batch if context is None else context, token)
                if task_features is None:
                    z = encode(frozen, trainable, query, tokens, mask)
                else:
                    z = task_z(task_features, query.shape[:2])
                obs = jnp.concatenate([normalize(batch.observations[:, :, -1]), z], -1)
                mean, _ = bc_actor.apply(actor_params, obs)
                mse = ((jnp.tanh(mean) - batch.actions[:, :, -1]) ** 2).sum(-1).mean()
                return mse, {"bc_mse": mse}

            (g_actor, g_enc), info = jax.grad(loss, argnums=(0, 1), has_aux=True)(
                state.policy.actor_params, state.encoder)
            actor, opt_state = apply_gradients(bc_opt, state.policy.actor_params,
                                               state.policy.actor_opt_state, g_actor)
            policy = BCState(actor_params=actor, actor_opt_state=opt_state,
                             step=state.policy.step + 1)
        encoder, enc_opt_state = step_encoder(state, g_enc)
        return MetaState(policy=policy, encoder=encoder, encoder_opt_state=enc_opt_state,
                         epoch=state.epoch), info

    def epoch(state: MetaState, frozen, data: DeviceDataset, key) -> tuple[MetaState, dict]:
        def body(s, k):
            k_b, k_u = jax.random.split(k)
            batch = sample_task_windows(data, k_b, per_task, K)
            context = None
            if independent:   # a key of its own; 'transition' keeps its draws unchanged
                context = sample_task_windows(data, jax.random.fold_in(k_b, 1), per_task, K)
            return update(s, frozen, batch, k_u, context)

        state, metrics = jax.lax.scan(body, state,
                                      jax.random.split(key, config.updates_per_epoch))
        return state.replace(epoch=state.epoch + 1), {f"meta/{k}": v for k, v in metrics.items()}

    def act(actor_params, frozen, trainable, query, context, mask, task=None) -> jax.Array:
        if task_features is None:
            z = encode(frozen, trainable, query if config.acting_query == "current"
                       else context[..., -1, :], context, mask)
        elif task is None:
            raise ValueError("an oracle meta-policy acts on the true task's features: pass task")
        else:
            z = jnp.broadcast_to(task, query.shape[:-1] + task.shape[-1:])
        obs = jnp.concatenate([normalize(query[..., :obs_dim]), z], -1)
        if objective == "sac_bc":
            return sac.act(actor_params, obs, None, deterministic=True)
        return jnp.tanh(bc_actor.apply(actor_params, obs)[0])

    return MetaLearner(init=init, update=update, epoch=epoch, act=act, encode=encode)
