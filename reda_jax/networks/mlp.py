"""Multi-layer perceptrons."""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """x (..., d_in) -> (..., out_dim), hidden layers with `activation`, linear output."""

    hidden_dims: Sequence[int]
    out_dim: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_dims:
            x = self.activation(nn.Dense(width, kernel_init=self.kernel_init)(x))
        return nn.Dense(self.out_dim, kernel_init=self.kernel_init)(x)


def concat(*xs: jax.Array) -> jax.Array:
    """Concatenate along the last axis."""
    return jnp.concatenate(xs, axis=-1)
