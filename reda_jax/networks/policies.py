"""Tanh-squashed Gaussian actor and twin Q critics."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from reda_jax.networks.mlp import MLP, concat

_LOG_2 = jnp.log(2.0)


class TanhGaussianActor(nn.Module):
    """obs (..., d) -> (mean, log_std), each (..., act_dim), pre-tanh."""

    hidden_dims: Sequence[int]
    act_dim: int
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    network_init: str = "lecun"
    """Initialisation of the MLP (reda_jax.networks.mlp.NETWORK_INITS)."""

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_dims, 2 * self.act_dim, network_init=self.network_init)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def sample_tanh_gaussian(
    mean: jax.Array, log_std: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample a = tanh(u), u ~ N(mean, std). Returns (a, log_prob):
    a (..., da), log_prob (...,) with the tanh change-of-variables correction."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + std * eps
    log_prob_u = -0.5 * eps**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    # log(1 - tanh(u)^2) computed stably as 2 (log 2 - u - softplus(-2u)).
    log_det = 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(log_prob_u - log_det, axis=-1)


class TwinCritic(nn.Module):
    """(obs (..., d), act (..., da)) -> Q (2, ...): two independent MLP heads."""

    hidden_dims: Sequence[int]
    num_qs: int = 2
    network_init: str = "lecun"
    """Initialisation of the MLP heads (reda_jax.networks.mlp.NETWORK_INITS)."""

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        heads = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_qs,
        )(self.hidden_dims, 1, network_init=self.network_init)
        return heads(concat(obs, act))[..., 0]
