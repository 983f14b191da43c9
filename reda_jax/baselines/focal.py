"""FOCAL's context encoder and distance-metric loss (FOCAL-ICLR code, reference s.1 and s.7).

Shapes: T tasks, B windows per task, K window length, D token size (`data.tokens`), Z = z_dim.

The encoder reads the K-1 transitions (s_j, a_j, s_{j+1}) derived from a window's tokens
(`transitions_from_tokens`), embeds each with an MLP (3x200 ReLU, tanh output, rlkit init)
and averages the valid ones: z = mean_j e_j (zeros for a window with no valid transition).
It is trained only by the metric loss (FOCAL's Q and V see a detached z; the caller applies
`jax.lax.stop_gradient` there).

Metric loss, as coded in FOCAL-ICLR sac.py `z_loss`: D_ij = mean over the Z dims of
(z_i - z_j)^2; over pairs i < j, a positive pair (same task) costs sqrt(D_ij + positive_eps)
and a negative pair 1 / (D_ij + negative_eps);
L = sum_pos / (n_pos + 1e-3) + sum_neg / (n_neg + 1e-3). Here pairs carry the weight
w_i * w_j (n_pos, n_neg are weighted counts) so that windows without a valid transition
drop out; every one of the T * B windows of an update is paired with every other.
`focal_metric_loss` returns the unweighted L; `update` minimises config.loss_weight * L.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from reda_jax.algos import contrastive
from reda_jax.configs import FocalConfig
from reda_jax.data.context import DeviceDataset, sample_task_windows
from reda_jax.data.tokens import token_dim
from reda_jax.methods import Method, MethodInputs, context_method, prefixed, representation_stage
from reda_jax.networks.transition_encoder import TransitionMLP, masked_mean, \
    transitions_from_tokens
from reda_jax.optim import apply_gradients
from reda_jax.types import TrainState

_COUNT_EPS = 1e-3  # FOCAL's epsilon in the denominators n_pos + eps, n_neg + eps


def focal_metric_loss(z: jax.Array, task_ids: jax.Array, weights: jax.Array | None = None,
                      positive_eps: float = 1e-3, negative_eps: float = 0.1
                      ) -> tuple[jax.Array, dict]:
    """z (N, Z), task_ids (N,) int, weights (N,) | None (ones) -> (loss (), metrics).

    loss = sum_{i<j} w_ij S_ij sqrt(D_ij + positive_eps) / (sum_{i<j} w_ij S_ij + 1e-3)
         + sum_{i<j} w_ij (1 - S_ij) / (D_ij + negative_eps) / (sum_{i<j} w_ij (1 - S_ij) + 1e-3)
    with D_ij = mean_d (z_id - z_jd)^2, S_ij = [task_i == task_j], w_ij = w_i w_j.
    metrics: "loss", "positive_distance" and "negative_distance" (weighted mean D over the
    positive / negative pairs; 0 when there are none).
    """
    n = z.shape[0]
    w = jnp.ones((n,), z.dtype) if weights is None else weights.astype(z.dtype)
    dist = jnp.mean(jnp.square(z[:, None, :] - z[None, :, :]), -1)     # (N, N)
    upper = jnp.triu(jnp.ones((n, n), bool), k=1)
    same = task_ids[:, None] == task_ids[None, :]
    w_pair = w[:, None] * w[None, :]
    pos = jnp.where(upper & same, w_pair, 0.0)
    neg = jnp.where(upper & ~same, w_pair, 0.0)
    # Evaluate each term only where it is used (finite gradients even with eps = 0).
    pos_term = jnp.sqrt(jnp.where(pos > 0, dist, 1.0) + positive_eps)
    neg_term = 1.0 / (jnp.where(neg > 0, dist, 1.0) + negative_eps)
    n_pos, n_neg = pos.sum(), neg.sum()
    loss = (pos * pos_term).sum() / (n_pos + _COUNT_EPS) + \
        (neg * neg_term).sum() / (n_neg + _COUNT_EPS)
    metrics = {
        "loss": loss,
        "positive_distance": (pos * dist).sum() / jnp.maximum(n_pos, 1e-8),
        "negative_distance": (neg * dist).sum() / jnp.maximum(n_neg, 1e-8),
    }
    return loss, metrics


def nearest_prototype_accuracy(z: jax.Array, weights: jax.Array | None = None,
                               protos: jax.Array | None = None) -> jax.Array:
    """z (T, B, Z) (window b of task t), weights (T, B) | None -> (): weighted share of
    windows whose nearest (Euclidean) prototype is their own task's. protos (T, Z) defaults
    to the weighted per-task means of z itself (`contrastive.prototypes`)."""
    protos = contrastive.prototypes(z, weights) if protos is None else protos
    own = jnp.arange(z.shape[0])[:, None]
    return contrastive.weighted_mean(contrastive.nearest_prototype_hits(z, protos, own), weights)


FocalState = TrainState


class Focal(NamedTuple):
    init: Callable[[jax.Array], FocalState]
    encode: Callable[..., jax.Array]
    update: Callable[..., tuple[FocalState, dict]]
    epoch: Callable[..., tuple[FocalState, dict]]
    params: Callable[[FocalState], dict]
    module: TransitionMLP


def make_focal(config: FocalConfig, obs_dim: int, act_dim: int, num_tasks: int,
               window: int, token: str = "state") -> Focal:
    """FOCAL's encoder learner (pure functions; vmappable over a leading seed axis):

    init(key) -> FocalState (Adam, config.learning_rate)
    encode(params, query (..., D), tokens (..., K, D), mask (..., K)) -> z (..., Z);
        query is unused (same signature as ReDA's encoder); D: tokens of kind `token`
        (`data.tokens`), of which FOCAL reads (s_j, a_{j-1})
    update(state, tokens (T, B, K, D), mask (T, B, K), key) -> (state, metrics): one Adam
        step on loss_weight * focal_metric_loss of the T*B windows (task id t, weight 1 iff
        the window has a valid transition); metrics "loss" (unweighted L),
        "positive_distance", "negative_distance", "accuracy" (in-batch nearest-prototype)
    epoch(state, data (DeviceDataset with task axis T), key) -> (state, metrics with a
        leading (updates_per_epoch,) axis): lax.scan of updates, each on contexts_per_task
        windows of K tokens per task from `sample_task_windows`
    params(state) -> encoder params
    """
    if window < 2:
        raise ValueError(f"FOCAL needs windows of >= 2 tokens (one transition), got {window}")
    module = TransitionMLP(tuple(config.hidden_dims), config.z_dim, "tanh")
    opt = optax.adam(config.learning_rate)
    D, K, B = token_dim(token, obs_dim, act_dim), window, config.contexts_per_task

    def init(key: jax.Array) -> FocalState:
        params = module.init(key, jnp.zeros((1, 2 * obs_dim + act_dim)))
        return FocalState(params=params, opt_state=opt.init(params), step=jnp.zeros((), jnp.int32))

    def encode_with_weights(params, tokens, mask):
        trans, tmask = transitions_from_tokens(tokens, mask, obs_dim, act_dim)
        return masked_mean(module.apply(params, trans), tmask), tmask.max(-1)

    def encode(params, query: jax.Array, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        del query
        return encode_with_weights(params, tokens, mask)[0]

    def update(state: FocalState, tokens: jax.Array, mask: jax.Array, key: jax.Array
               ) -> tuple[FocalState, dict]:
        del key  # deterministic encoder, no dropout
        if tokens.ndim != 4 or tokens.shape[-2:] != (K, D) or mask.shape != tokens.shape[:-1]:
            raise ValueError(f"expected tokens (T, B, {K}, {D}) and mask (T, B, {K}), got "
                             f"{tokens.shape} and {mask.shape}")
        T, nb = tokens.shape[:2]
        task_ids = jnp.repeat(jnp.arange(T), nb)

        def loss_fn(params):
            z, w = encode_with_weights(params, tokens, mask)               # (T, B, Z), (T, B)
            loss, metrics = focal_metric_loss(z.reshape(T * nb, -1), task_ids, w.reshape(-1),
                                              config.positive_eps, config.negative_eps)
            metrics["accuracy"] = nearest_prototype_accuracy(z, w)
            return config.loss_weight * loss, metrics

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        params, opt_state = apply_gradients(opt, state.params, state.opt_state, grads)
        return FocalState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def epoch(state: FocalState, data: DeviceDataset, key: jax.Array
              ) -> tuple[FocalState, dict]:
        T = data.size.shape[0]
        if T != num_tasks:
            raise ValueError(f"data has {T} tasks, expected {num_tasks}")

        def step(s, k):
            k_win, k_up = jax.random.split(k)
            batch = sample_task_windows(data, k_win, B, K)
            tokens, mask, _ = contrastive.tokens_from_context(batch, token)
            return update(s, tokens, mask, k_up)

        return jax.lax.scan(step, state, jax.random.split(key, config.updates_per_epoch))

    return Focal(init=init, encode=encode, update=update, epoch=epoch,
                 params=lambda state: state.params, module=module)


def focal_method(inputs: MethodInputs) -> Method:
    """FOCAL as a `Method` (registered in `configs.METHOD_BUILDERS`): stage 2 the
    distance-metric encoder, stage 3 SAC+BC with it fixed (paper B.4)."""
    from reda_jax.algos import meta as meta_lib
    fcfg, T, K = inputs.config.focal, inputs.num_tasks, inputs.window
    focal = make_focal(fcfg, inputs.obs_dim, inputs.act_dim, T, K, inputs.token)
    learner = meta_lib.make_meta_learner(
        inputs.config.meta, inputs.obs_dim, inputs.act_dim, T, K, fcfg.z_dim, token=inputs.token,
        encode=lambda frozen, trainable, q, t, m: focal.encode(frozen, q, t, m),
        **inputs.stage3_stats())
    return context_method(inputs, "focal", learner, [representation_stage(
        focal.init, prefixed(lambda s, _up, data, key: focal.epoch(s, data, key), "encoder/"),
        fcfg.num_epochs, inputs.data.train, output=focal.params)])
