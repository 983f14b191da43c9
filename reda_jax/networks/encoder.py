"""The context encoder phi(z | x): cross-attention from the current token to a context window.

A token is (s_t, a_{t-1}) of size D = obs_dim + act_dim. The query is embedded from the
current token, keys and values from the K context tokens (plus an optional learned
position embedding; windows are right-aligned, position K-1 is the newest). Each layer is
masked cross-attention + residual + LayerNorm, then a ReLU feed-forward block + residual +
LayerNorm (post-LN); a linear head maps to z. Padded tokens (mask 0) never influence z; a
window with no valid token attends to nothing (zero attention output).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from reda_jax.configs import EncoderConfig


class ContextEncoder(nn.Module):
    """query (..., D), tokens (..., K, D), mask (..., K) -> z (..., z_dim)."""

    config: EncoderConfig

    @nn.compact
    def __call__(self, query: jax.Array, tokens: jax.Array, mask: jax.Array,
                 deterministic: bool = True) -> jax.Array:
        cfg = self.config
        d, heads = cfg.embed_dim, cfg.num_heads
        if d % heads:
            raise ValueError(f"embed_dim {d} must be divisible by num_heads {heads}")
        mask = mask.astype(jnp.float32)
        x = nn.Dense(d, name="query_embed")(query)                    # (..., d)
        kv = nn.Dense(d, name="token_embed")(tokens)                  # (..., K, d)
        if cfg.positional_encoding == "learned":
            pos = self.param("positions", nn.initializers.normal(0.02), (tokens.shape[-2], d))
            kv = kv + pos
        kv = kv * mask[..., None]
        any_valid = (mask.sum(-1, keepdims=True) > 0).astype(jnp.float32)   # (..., 1)
        head_dim = d // heads
        for layer in range(cfg.num_layers):
            q = nn.DenseGeneral((heads, head_dim), name=f"q_{layer}")(x)         # (..., H, hd)
            k = nn.DenseGeneral((heads, head_dim), name=f"k_{layer}")(kv)        # (..., K, H, hd)
            v = nn.DenseGeneral((heads, head_dim), name=f"v_{layer}")(kv)
            logits = jnp.einsum("...hd,...khd->...hk", q, k) / jnp.sqrt(head_dim)
            logits = jnp.where(mask[..., None, :] > 0, logits, -1e9)
            weights = jax.nn.softmax(logits, axis=-1) * mask[..., None, :]
            weights = nn.Dropout(cfg.dropout)(weights, deterministic=deterministic)
            attn = jnp.einsum("...hk,...khd->...hd", weights, v)
            attn = nn.DenseGeneral(d, axis=(-2, -1), name=f"out_{layer}")(attn) * any_valid
            x = nn.LayerNorm(name=f"ln_attn_{layer}")(
                x + nn.Dropout(cfg.dropout)(attn, deterministic=deterministic))
            h = nn.Dense(cfg.ff_dim, name=f"ff1_{layer}")(x)
            h = nn.Dense(d, name=f"ff2_{layer}")(nn.relu(h))
            x = nn.LayerNorm(name=f"ln_ff_{layer}")(
                x + nn.Dropout(cfg.dropout)(h, deterministic=deterministic))
        return nn.Dense(cfg.z_dim, name="head")(x)
