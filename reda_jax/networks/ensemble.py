"""An ensemble of Gaussian MLPs with stacked weights (a leading member axis E).

Parameters (E members, L = len(hidden_dims) hidden layers):
  params["layer_i"]["kernel"] (E, d_i, d_{i+1}), ["bias"] (E, d_{i+1}) for i = 0..L, layer
  L being the output layer of width 2 * out_dim (mean, then raw log-std);
  params["max_log_std"], params["min_log_std"] (E, out_dim): each member's learned bounds.
Kernels use the reference code's truncated normal, std 1 / (2 sqrt(fan_in)); biases are zero.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def soft_bound(x: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """Soft clamp of x to [lo, hi] (MBPO / the reference code):
    y = hi - softplus(hi - x), then lo + softplus(y - lo). Differentiable in x, lo and hi.
    The result lies in (lo, hi + log(1 + exp(lo - hi))): the second softplus may overshoot
    hi by that (0.005 for the initial bounds 0.25 and -5)."""
    x = hi - nn.softplus(hi - x)
    return lo + nn.softplus(x - lo)


class EnsembleDense(nn.Module):
    """E independent dense layers: x (E, B, d_in) or (B, d_in) (shared by all members)
    -> (E, B, features)."""

    num_members: int
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d_in = x.shape[-1]
        std = 1.0 / (2.0 * math.sqrt(d_in))
        kernel = self.param("kernel", nn.initializers.truncated_normal(std),
                            (self.num_members, d_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.num_members, self.features))
        if x.ndim == 2:
            y = jnp.einsum("bi,eio->ebo", x, kernel)
        else:
            y = jnp.einsum("ebi,eio->ebo", x, kernel)
        return y + bias[:, None, :]


class GaussianEnsemble(nn.Module):
    """x (E, B, in_dim), or (B, in_dim) broadcast to every member
    -> mean (E, B, out_dim), log_std (E, B, out_dim).

    Hidden layers `hidden_dims` with swish; the log-std is soft-bounded by each member's
    learned `min_log_std` / `max_log_std` (E, out_dim), initialised to the given values.
    """

    num_members: int
    hidden_dims: Sequence[int]
    out_dim: int
    init_max_log_std: float = 0.25
    init_min_log_std: float = -5.0

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if x.ndim not in (2, 3):
            raise ValueError(f"GaussianEnsemble takes (B, in) or (E, B, in), got {x.shape}")
        for i, width in enumerate(self.hidden_dims):
            x = nn.swish(EnsembleDense(self.num_members, width, name=f"layer_{i}")(x))
        out = EnsembleDense(self.num_members, 2 * self.out_dim,
                            name=f"layer_{len(self.hidden_dims)}")(x)
        mean, raw = jnp.split(out, 2, axis=-1)
        shape = (self.num_members, self.out_dim)
        hi = self.param("max_log_std", nn.initializers.constant(self.init_max_log_std), shape)
        lo = self.param("min_log_std", nn.initializers.constant(self.init_min_log_std), shape)
        return mean, soft_bound(raw, lo[:, None, :], hi[:, None, :])
