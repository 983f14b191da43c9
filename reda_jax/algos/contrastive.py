"""InfoNCE over tasks (paper Eq. 2 / 7), task scores R(z) (Eq. 5) and the encoder learner.

Shapes: T tasks, B windows per task, K window length, D token size, Z = z dim.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from reda_jax.configs import EncoderConfig
from reda_jax.networks.encoder import ContextEncoder
from reda_jax.types import ContextBatch


def info_nce_with_permutation(z: jax.Array, perm: jax.Array, weights: jax.Array | None = None,
                              temperature: float = 1.0) -> tuple[jax.Array, dict]:
    """InfoNCE for anchors z (T, B, Z) against candidates z[:, perm] (T, B, Z).

    Anchor (i, b) scores every task's candidate at the permuted index:
    logits[i, b, j] = <z[i, b], z[j, perm[b]]> / temperature; the positive is j = i (the same
    task, another window), the negatives are the other tasks. The loss is the weighted mean
    of the cross-entropy -log softmax_j(logits)[i] (log-sum-exp, stable), symmetrised by
    also scoring the candidates against the anchors. weights (T, B): a window's weight
    (0 for invalid windows); a pair counts with weight w[i, b] * w[i, perm[b]].
    """
    T, B, _ = z.shape
    w = jnp.ones((T, B), z.dtype) if weights is None else weights.astype(z.dtype)
    cand = z[:, perm]                                                  # (T, B, Z)
    w_pair = w * w[:, perm]
    labels = jnp.arange(T)[:, None]

    def ce(anchor, candidate):
        logits = jnp.einsum("ibz,jbz->ibj", anchor, candidate) / temperature
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(logp, jnp.broadcast_to(labels[..., None], (T, B, 1)), -1)[..., 0]
        acc = (jnp.argmax(logits, -1) == labels).astype(z.dtype)
        return nll, acc

    nll_a, acc_a = ce(z, cand)
    nll_b, acc_b = ce(cand, z)
    denom = jnp.maximum(w_pair.sum(), 1e-8)
    loss = 0.5 * ((nll_a + nll_b) * w_pair).sum() / denom
    acc = 0.5 * ((acc_a + acc_b) * w_pair).sum() / denom
    return loss, {"loss": loss, "accuracy": acc}


def info_nce_loss(z: jax.Array, key: jax.Array, weights: jax.Array | None = None,
                  temperature: float = 1.0) -> tuple[jax.Array, dict]:
    """`info_nce_with_permutation` with a random permutation of the B indices."""
    return info_nce_with_permutation(z, jax.random.permutation(key, z.shape[1]), weights,
                                     temperature)


def prototypes(z: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """(T, B, Z) -> (T, Z): each task's weighted mean representation."""
    if weights is None:
        return z.mean(1)
    w = weights.astype(z.dtype)[..., None]
    return (z * w).sum(1) / jnp.maximum(w.sum(1), 1e-8)


def task_log_prob(z: jax.Array, protos: jax.Array, temperature: float = 1.0) -> jax.Array:
    """(..., Z), (T, Z) -> (..., T): log softmax over tasks of <z, p_j> / temperature."""
    return jax.nn.log_softmax(jnp.einsum("...z,tz->...t", z, protos) / temperature, axis=-1)


def task_score(z: jax.Array, protos: jax.Array, task: jax.Array,
               temperature: float = 1.0) -> jax.Array:
    """R(z) of Eq. 5 with z* = the task prototypes: log p(true task | z); task (...) int."""
    logp = task_log_prob(z, protos, temperature)
    task = jnp.broadcast_to(task, logp.shape[:-1])
    return jnp.take_along_axis(logp, task[..., None], -1)[..., 0]


def task_id_accuracy(z: jax.Array, protos: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """(T, B, Z) -> (): weighted share of windows whose highest-scoring task is their own."""
    pred = jnp.argmax(jnp.einsum("tbz,jz->tbj", z, protos), -1)
    hit = (pred == jnp.arange(z.shape[0])[:, None]).astype(jnp.float32)
    w = jnp.ones_like(hit) if weights is None else weights.astype(jnp.float32)
    return (hit * w).sum() / jnp.maximum(w.sum(), 1e-8)


def tokens_from_context(batch: ContextBatch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """ContextBatch (..., K, ...) -> tokens (..., K, D) = (s_t, a_{t-1}), mask (..., K),
    query (..., D) = the newest token (a training window's query)."""
    tokens = jnp.concatenate([batch.observations, batch.prev_actions], -1)
    return tokens, batch.mask, tokens[..., -1, :]


@flax.struct.dataclass
class EncoderState:
    params: dict
    opt_state: optax.OptState
    step: jax.Array


class EncoderLearner(NamedTuple):
    init: Callable[[jax.Array], EncoderState]
    update: Callable[..., tuple[EncoderState, dict]]
    encode: Callable[..., jax.Array]
    module: ContextEncoder


def make_encoder_learner(config: EncoderConfig, obs_dim: int, act_dim: int) -> EncoderLearner:
    """init(key); encode(params, query, tokens, mask) -> z (deterministic);
    update(state, query (T, B, D), tokens (T, B, K, D), mask (T, B, K), key, weights (T, B))
    -> (state, metrics): one Adam step on the InfoNCE loss."""
    module = ContextEncoder(config)
    opt = optax.adam(config.learning_rate)
    D, K = obs_dim + act_dim, config.window

    def init(key) -> EncoderState:
        params = module.init(key, jnp.zeros((1, D)), jnp.zeros((1, K, D)), jnp.ones((1, K)))
        return EncoderState(params=params, opt_state=opt.init(params),
                            step=jnp.zeros((), jnp.int32))

    def encode(params, query, tokens, mask):
        return module.apply(params, query, tokens, mask)

    def update(state: EncoderState, query, tokens, mask, key, weights=None):
        k_perm, k_drop = jax.random.split(key)

        def loss_fn(params):
            z = module.apply(params, query, tokens, mask, deterministic=config.dropout == 0.0,
                             rngs={"dropout": k_drop})
            return info_nce_loss(z, k_perm, weights, config.temperature)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = opt.update(grads, state.opt_state)
        return EncoderState(params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state, step=state.step + 1), metrics

    return EncoderLearner(init=init, update=update, encode=encode, module=module)
