"""InfoNCE over tasks (paper Eq. 2 / 7), task scores R(z) (Eq. 5) and the encoder learner.

Shapes: T tasks, B windows per task, K window length, D token size (`data.tokens`),
Z = z dim. Every function is pure, jittable, and vmappable over a leading seed axis.

InfoNCE (Eq. 2 with S(z, z') = <z, z'> / temperature, temperature 1 in the paper): a random
permutation perm of the B window indices pairs each anchor z[i, b] with the positive
z[i, perm[b]] (same task, another window) and the negatives z[j, perm[b]], j != i (the other
tasks' windows at that same index), as in the reference code. The loss is the
cross-entropy with target i, symmetrised: the candidates z[i, perm[b]] are also anchors
against z[j, b]; the two directions are averaged. Unlike the reference code, the random
permutation is a single B-cycle (no fixed points), so a positive is never the anchor itself,
and zero-weight (invalid) windows are never negatives.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from reda_jax.configs import EncoderConfig
from reda_jax.data.tokens import make_tokens
from reda_jax.networks.encoder import ContextEncoder
from reda_jax.optim import apply_gradients
from reda_jax.types import ContextBatch, TrainState

_MASKED = -1e30  # logit of an excluded (zero-weight) negative; exp underflows to 0


def info_nce_with_permutation(z: jax.Array, perm: jax.Array, weights: jax.Array | None = None,
                              temperature: float = 1.0) -> tuple[jax.Array, dict]:
    """InfoNCE of anchors z (T, B, Z) against candidates z[:, perm] (T, B, Z); perm (B,) int.

    Direction 1: logits[i, b, j] = <z[i, b], z[j, perm[b]]> / temperature, target j = i.
    Direction 2: logits[i, b, j] = <z[i, perm[b]], z[j, b]> / temperature, target j = i.
    nll = logsumexp_j(logits) - logits[i] (stable for huge logits). The loss is
    sum_{i,b} w_pair[i, b] * (nll_1 + nll_2) / 2 / sum w_pair, with the pair weight
    w_pair[i, b] = weights[i, b] * weights[i, perm[b]] (weights (T, B), None = all ones).
    A negative whose window has weight 0 is left out of the softmax (an invalid window is
    no evidence against anything); the positive is always in it.
    Returns (loss, {"loss", "accuracy": weighted share of anchors whose argmax is j = i,
    "z_norm": weighted mean |z| of the anchors}).
    """
    T, B, _ = z.shape
    w = jnp.ones((T, B), z.dtype) if weights is None else weights.astype(z.dtype)
    cand, w_cand = z[:, perm], w[:, perm]                               # (T, B, Z), (T, B)
    w_pair = w * w_cand
    eye = jnp.eye(T, dtype=bool)[:, None, :]                            # (T, 1, T): j == i

    def nll_and_hit(anchor, candidate, w_candidate):
        logits = jnp.einsum("ibz,jbz->ibj", anchor, candidate) / temperature   # (T, B, T)
        keep = eye | (w_candidate.T[None, :, :] > 0)                    # (T, B, T)
        logits = jnp.where(keep, logits, _MASKED)
        positive = jnp.diagonal(logits, axis1=0, axis2=2).T            # (T, B): logits[i, b, i]
        nll = jax.nn.logsumexp(logits, axis=-1) - positive
        hit = (jnp.argmax(logits, -1) == jnp.arange(T)[:, None]).astype(z.dtype)
        return nll, hit

    nll_1, hit_1 = nll_and_hit(z, cand, w_cand)
    nll_2, hit_2 = nll_and_hit(cand, z, w)
    denom = jnp.maximum(w_pair.sum(), 1e-8)
    loss = 0.5 * ((nll_1 + nll_2) * w_pair).sum() / denom
    acc = 0.5 * ((hit_1 + hit_2) * w_pair).sum() / denom
    z_norm = (jnp.linalg.norm(z, axis=-1) * w).sum() / jnp.maximum(w.sum(), 1e-8)
    return loss, {"loss": loss, "accuracy": acc, "z_norm": z_norm}


def random_cyclic_permutation(key: jax.Array, n: int) -> jax.Array:
    """(n,) int32: a uniformly random permutation consisting of one n-cycle, so that
    perm[b] != b for every b when n >= 2 (perm = [0] when n = 1)."""
    order = jax.random.permutation(key, n)
    return jnp.zeros(n, jnp.int32).at[order].set(jnp.roll(order, -1).astype(jnp.int32))


def info_nce_loss(z: jax.Array, key: jax.Array, weights: jax.Array | None = None,
                  temperature: float = 1.0) -> tuple[jax.Array, dict]:
    """z (T, B, Z), weights (T, B) | None -> (loss (), metrics): `info_nce_with_permutation`
    with perm = random_cyclic_permutation(key, B) (each positive is another window)."""
    return info_nce_with_permutation(z, random_cyclic_permutation(key, z.shape[1]), weights,
                                     temperature)


def prototypes(z: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """z (T, B, Z), weights (T, B) | None -> (T, Z): each task's weighted mean representation
    (zeros for a task with zero total weight)."""
    if weights is None:
        return z.mean(1)
    w = weights.astype(z.dtype)[..., None]
    return (z * w).sum(1) / jnp.maximum(w.sum(1), 1e-8)


def task_log_prob(z: jax.Array, protos: jax.Array, temperature: float = 1.0) -> jax.Array:
    """z (..., Z), protos (T, Z) -> (..., T): log softmax over tasks j of <z, p_j> / temperature."""
    return jax.nn.log_softmax(jnp.einsum("...z,tz->...t", z, protos) / temperature, axis=-1)


def task_score(z: jax.Array, protos: jax.Array, task: jax.Array,
               temperature: float = 1.0) -> jax.Array:
    """R(z) of Eq. 5 with z* = the task prototypes: log p(true task | z).

    z (..., Z), protos (T, Z), task int broadcastable to (...) -> (...)."""
    logp = task_log_prob(z, protos, temperature)
    task = jnp.broadcast_to(jnp.asarray(task, jnp.int32), logp.shape[:-1])
    return jnp.take_along_axis(logp, task[..., None], -1)[..., 0]


def weighted_mean(x: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """x, weights (same shape) | None -> (): sum(x * w) / sum(w) (0 when every weight is 0)."""
    w = jnp.ones_like(x) if weights is None else weights.astype(jnp.float32)
    return (x * w).sum() / jnp.maximum(w.sum(), 1e-8)


def nearest_prototype_hits(z: jax.Array, protos: jax.Array, labels: jax.Array) -> jax.Array:
    """z (..., Z), protos (P, Z), labels int broadcastable to (...) -> (...) float 0/1:
    whether z's nearest prototype (Euclidean; ties to the lower index) is its label's."""
    d = jnp.sum(jnp.square(z[..., None, :] - protos), -1)
    return (jnp.argmin(d, -1) == labels).astype(jnp.float32)


def task_id_accuracy(z: jax.Array, protos: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """z (T, B, Z) (window b of task t), protos (T, Z), weights (T, B) | None -> ():
    weighted share of windows whose highest-scoring task argmax_j <z, p_j> is their own."""
    pred = jnp.argmax(jnp.einsum("tbz,jz->tbj", z, protos), -1)
    return weighted_mean((pred == jnp.arange(z.shape[0])[:, None]).astype(jnp.float32), weights)


def tokens_from_context(batch: ContextBatch, kind: str
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """ContextBatch with (..., K, ...) fields -> tokens (..., K, D) of `kind`
    (`data.tokens`: 'state' (s_t, a_{t-1}) or 'transition' (s_t, a_{t-1}, r_{t-1}, s_{t-1}));
    mask (..., K); query (..., D) = tokens[..., -1, :], the newest token (the query of a
    training window)."""
    tokens = make_tokens(kind, batch.observations, batch.prev_actions, batch.prev_rewards,
                         batch.prev_observations)
    return tokens, batch.mask, tokens[..., -1, :]


EncoderState = TrainState


class EncoderLearner(NamedTuple):
    init: Callable[[jax.Array], EncoderState]
    update: Callable[..., tuple[EncoderState, dict]]
    encode: Callable[..., jax.Array]
    module: ContextEncoder


def make_encoder_learner(config: EncoderConfig, token_dim: int, window: int) -> EncoderLearner:
    """The context encoder of K = window tokens of D = token_dim and its contrastive learner
    (pure functions):

    init(key) -> EncoderState (Adam, config.learning_rate)
    encode(params, query (..., D), tokens (..., K, D), mask (..., K)) -> z (..., Z), no dropout
    update(state, query (T, B, D), tokens (T, B, K, D), mask (T, B, K), key,
           weights (T, B) | None = None) -> (state, {"loss", "accuracy", "z_norm"}):
        one Adam step on `info_nce_loss` of the encoded windows (dropout on if config.dropout > 0).
    """
    module = ContextEncoder(config)
    opt = optax.adam(config.learning_rate)
    D, K = token_dim, window

    def init(key: jax.Array) -> EncoderState:
        params = module.init(key, jnp.zeros((1, D)), jnp.zeros((1, K, D)), jnp.ones((1, K)))
        return EncoderState(params=params, opt_state=opt.init(params),
                            step=jnp.zeros((), jnp.int32))

    def encode(params, query: jax.Array, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        return module.apply(params, query, tokens, mask)

    def update(state: EncoderState, query: jax.Array, tokens: jax.Array, mask: jax.Array,
               key: jax.Array, weights: jax.Array | None = None) -> tuple[EncoderState, dict]:
        if tokens.shape[-2:] != (K, D) or query.shape[-1] != D:
            raise ValueError(f"expected tokens (T, B, {K}, {D}) and query (T, B, {D}), got "
                             f"{tokens.shape} and {query.shape}")
        k_perm, k_drop = jax.random.split(key)

        def loss_fn(params):
            z = module.apply(params, query, tokens, mask, deterministic=config.dropout == 0.0,
                             rngs={"dropout": k_drop})
            return info_nce_loss(z, k_perm, weights, config.temperature)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        params, opt_state = apply_gradients(opt, state.params, state.opt_state, grads)
        return EncoderState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return EncoderLearner(init=init, update=update, encode=encode, module=module)
