"""Multi-layer perceptrons."""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

NETWORK_INITS = ("lecun", "pytorch")
"""Initialisations of `MLP`'s Dense layers:
  'lecun': Flax's default, kernels lecun_normal (variance 1/fan_in), zero biases.
  'pytorch': PyTorch's nn.Linear default (kaiming_uniform with a=sqrt(5)): kernels AND
    biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. variance 1/(3 fan_in); the
    initialisation of the PyTorch SAC implementations (rlkit, Spinning Up,
    stable-baselines3)."""


def pytorch_linear_init(fan_in: int) -> tuple[Callable, Callable]:
    """(kernel_init, bias_init) of PyTorch's nn.Linear for a layer with `fan_in` inputs."""
    bound = 1.0 / jnp.sqrt(fan_in)

    def bias_init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    return kernel_init, bias_init


class MLP(nn.Module):
    """x (..., d_in) -> (..., out_dim), hidden layers with `activation`, linear output.

    `network_init` (one of NETWORK_INITS) picks the initialisation; with 'lecun' (the default),
    `kernel_init` replaces lecun_normal."""

    hidden_dims: Sequence[int]
    out_dim: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    kernel_init: Callable = nn.initializers.lecun_normal()
    network_init: str = "lecun"

    def _dense(self, width: int, fan_in: int) -> nn.Dense:
        if self.network_init == "lecun":
            return nn.Dense(width, kernel_init=self.kernel_init)
        if self.network_init == "pytorch":
            kernel_init, bias_init = pytorch_linear_init(fan_in)
            return nn.Dense(width, kernel_init=kernel_init, bias_init=bias_init)
        raise ValueError(f"unknown init {self.network_init!r}; valid: {', '.join(NETWORK_INITS)}")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_dims:
            x = self.activation(self._dense(width, x.shape[-1])(x))
        return self._dense(self.out_dim, x.shape[-1])(x)


def concat(*xs: jax.Array) -> jax.Array:
    """Concatenate along the last axis."""
    return jnp.concatenate(xs, axis=-1)
