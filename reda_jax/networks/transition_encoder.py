"""Per-transition encoders for the FOCAL and CORRO baselines, read from token windows.

A context window is K right-aligned tokens, token j starting with (s_j, a_{j-1}) (D >= ds +
da: `data.tokens`; what follows is not read here), with a mask (K,) (1 = valid; padding on
the left). At evaluation time only tokens exist, so the baselines read the K-1 *transitions
derived from consecutive tokens*: transition j = (s_j, a_j, s_{j+1}) with s_j =
tokens[j, :ds], a_j = tokens[j+1, ds:ds+da] (the next token's previous action) and s_{j+1} =
tokens[j+1, :ds]; it is valid iff tokens j and j+1 both are. There is no reward (the tasks
differ in dynamics only).

Networks use rlkit's initialisation (FOCAL-ICLR and CORRO both build on rlkit's Mlp):
hidden kernels U(+-1/sqrt(n)) with n = weight.size(0) of the PyTorch (out, in) weight, i.e.
the layer's *output* width (rlkit's `fanin_init` quirk, copied), hidden biases 0.1, and
the last layer's kernel and bias U(+-3e-3).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_MASKED_LOGIT = -1e9


def transitions_from_tokens(tokens: jax.Array, mask: jax.Array, obs_dim: int, act_dim: int
                            ) -> tuple[jax.Array, jax.Array]:
    """tokens (..., K, D), mask (..., K) -> trans (..., K-1, 2*ds+da), tmask (..., K-1).

    trans[..., j] = concat(s_j, a_j, s_{j+1}) (see module doc); tmask[..., j] = 1 iff
    mask[..., j] and mask[..., j+1] are both > 0 (float, mask's dtype). Invalid rows are zeros.
    """
    s = tokens[..., :-1, :obs_dim]
    a = tokens[..., 1:, obs_dim:obs_dim + act_dim]
    s_next = tokens[..., 1:, :obs_dim]
    valid = (mask[..., :-1] > 0) & (mask[..., 1:] > 0)                  # (..., K-1)
    trans = jnp.concatenate([s, a, s_next], -1)
    trans = jnp.where(valid[..., None], trans, jnp.zeros((), trans.dtype))
    return trans, valid.astype(mask.dtype)


def rlkit_hidden_init(key, shape, dtype=jnp.float32):
    """Flax kernel (in, out) -> U(+-1/sqrt(out)) (rlkit's fanin_init on an (out, in) weight)."""
    bound = 1.0 / jnp.sqrt(shape[-1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def rlkit_last_init(key, shape, dtype=jnp.float32, init_w: float = 3e-3):
    """U(+-3e-3), rlkit's last-layer kernel and bias."""
    return jax.random.uniform(key, shape, dtype, -init_w, init_w)


class RlkitMLP(nn.Module):
    """x (..., d_in) -> (..., out_dim): ReLU hidden layers, linear output, rlkit init."""

    hidden_dims: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_dims:
            x = nn.relu(nn.Dense(width, kernel_init=rlkit_hidden_init,
                                 bias_init=nn.initializers.constant(0.1))(x))
        return nn.Dense(self.out_dim, kernel_init=rlkit_last_init, bias_init=rlkit_last_init)(x)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x (..., Z) -> x / max(|x|, eps) along the last axis (PyTorch F.normalize), with
    finite gradients at x = 0."""
    sq = jnp.sum(x * x, -1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


class TransitionMLP(nn.Module):
    """trans (..., 2*ds+da) -> e (..., z_dim), one embedding per transition.

    output: 'tanh' (FOCAL, bounded), 'l2' (CORRO's E1, unit norm) or 'linear'.
    """

    hidden_dims: Sequence[int]
    z_dim: int
    output: str = "linear"

    @nn.compact
    def __call__(self, trans: jax.Array) -> jax.Array:
        if self.output not in ("tanh", "l2", "linear"):
            raise ValueError(f"output must be 'tanh', 'l2' or 'linear', got {self.output!r}")
        x = RlkitMLP(tuple(self.hidden_dims), self.z_dim, name="mlp")(trans)
        if self.output == "tanh":
            return jnp.tanh(x)
        if self.output == "l2":
            return l2_normalize(x)
        return x


def masked_mean(e: jax.Array, mask: jax.Array) -> jax.Array:
    """e (..., N, Z), mask (..., N) -> (..., Z): mean of the rows with mask > 0 (FOCAL's
    task embedding); zeros when no row is valid. Invalid rows are never read (even NaN)."""
    valid = mask > 0
    total = jnp.where(valid[..., None], e, jnp.zeros((), e.dtype)).sum(-2)
    count = valid.sum(-1, keepdims=True).astype(e.dtype)
    return total / jnp.maximum(count, 1.0)


class AttentionAggregator(nn.Module):
    """CORRO's E2 (SelfAttnEncoder): e (..., N, Z), mask (..., N) -> z (..., Z).

    score_i = Dense(1)(e_i); w = softmax of the scores over the valid rows only;
    z = sum_i w_i e_i. A window with no valid row gives z = 0; invalid rows are never read.
    The score layer has PyTorch's default nn.Linear init (kernel and bias U(+-1/sqrt(Z))).
    """

    @nn.compact
    def __call__(self, e: jax.Array, mask: jax.Array) -> jax.Array:
        valid = mask > 0
        e = jnp.where(valid[..., None], e, jnp.zeros((), e.dtype))
        bound = 1.0 / float(e.shape[-1]) ** 0.5
        torch_init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
            key, shape, dtype, -bound, bound)
        scores = nn.Dense(1, kernel_init=torch_init, bias_init=torch_init,
                          name="score")(e)[..., 0]                       # (..., N)
        scores = jnp.where(valid, scores, _MASKED_LOGIT)
        w = jax.nn.softmax(scores, axis=-1) * valid                      # 0 if none valid
        return jnp.einsum("...n,...nz->...z", w, e)
