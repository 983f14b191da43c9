"""The context encoder phi(z | x): cross-attention from the current token to a context window.

A token (`data.tokens`: (s_t, a_{t-1}) or the transition that led to s_t) has size D. The
query is embedded (Dense) from the current token, keys and values from the K context tokens
(Dense, plus an optional learned embedding per window position; windows are right-aligned,
position K-1 is the newest). Each of `num_layers` layers is masked multi-head
cross-attention + residual + LayerNorm, then a ReLU feed-forward block (ff_dim) + residual
+ LayerNorm (post-LN, as PyTorch's TransformerEncoderLayer); a linear head maps to z, then
`z_squash` ('none', or 'tanh' as the reference code's decoder) bounds it.

Masking: padded tokens (mask 0) are replaced by zeros before anything reads them and get
no attention weight, so their contents never change z (not even NaN or inf). A window with
no valid token attends to nothing: its attention output is exactly zero and z is a
function of the query alone. Dropout (rng name 'dropout') is applied, as in PyTorch, to the
attention weights, to the attention and feed-forward outputs before each residual, and to
the feed-forward hidden layer; `deterministic=True` turns it off.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from reda_jax.configs import EncoderConfig

_MASKED_LOGIT = -1e9


class ContextEncoder(nn.Module):
    """query (..., D), tokens (..., K, D), mask (..., K) -> z (..., z_dim).

    Leading dims (...) are arbitrary and shared; K must equal the K used at init when
    positional_encoding is 'learned' (one learned vector per position).
    """

    config: EncoderConfig

    @nn.compact
    def __call__(self, query: jax.Array, tokens: jax.Array, mask: jax.Array,
                 deterministic: bool = True) -> jax.Array:
        cfg = self.config
        d, heads = cfg.embed_dim, cfg.num_heads
        if d % heads:
            raise ValueError(f"embed_dim {d} must be divisible by num_heads {heads}")
        valid = mask > 0                                                  # (..., K) bool
        tokens = jnp.where(valid[..., None], tokens, jnp.zeros((), tokens.dtype))
        drop = lambda x: nn.Dropout(cfg.dropout)(x, deterministic=deterministic)

        x = nn.Dense(d, name="query_embed")(query)                        # (..., d)
        kv = nn.Dense(d, name="token_embed")(tokens)                      # (..., K, d)
        if cfg.positional_encoding == "learned":
            pos = self.param("positions", nn.initializers.normal(0.02), (tokens.shape[-2], d))
            kv = kv + pos
        any_valid = valid.any(-1, keepdims=True).astype(x.dtype)          # (..., 1)
        head_dim = d // heads
        for layer in range(cfg.num_layers):
            q = nn.DenseGeneral((heads, head_dim), name=f"q_{layer}")(x)      # (..., H, hd)
            k = nn.DenseGeneral((heads, head_dim), name=f"k_{layer}")(kv)     # (..., K, H, hd)
            v = nn.DenseGeneral((heads, head_dim), name=f"v_{layer}")(kv)
            logits = jnp.einsum("...hd,...khd->...hk", q, k) / jnp.sqrt(head_dim)
            logits = jnp.where(valid[..., None, :], logits, _MASKED_LOGIT)   # (..., H, K)
            # Zero weight on padding, and all-zero weights when nothing is valid.
            weights = jax.nn.softmax(logits, axis=-1) * valid[..., None, :]
            weights = drop(weights)
            attn = jnp.einsum("...hk,...khd->...hd", weights, v)
            attn = nn.DenseGeneral(d, axis=(-2, -1), name=f"out_{layer}")(attn) * any_valid
            x = nn.LayerNorm(name=f"ln_attn_{layer}")(x + drop(attn))
            h = nn.relu(nn.Dense(cfg.ff_dim, name=f"ff1_{layer}")(x))
            h = nn.Dense(d, name=f"ff2_{layer}")(drop(h))
            x = nn.LayerNorm(name=f"ln_ff_{layer}")(x + drop(h))
        z = nn.Dense(cfg.z_dim, name="head")(x)
        return jnp.tanh(z) if cfg.z_squash == "tanh" else z
