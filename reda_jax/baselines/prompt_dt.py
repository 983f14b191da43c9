"""Prompt-DT (mxu34/prompt-dt, reference s.3): a GPT-style decision transformer whose input
is a prompt from the task followed by the agent's own recent (return-to-go, state, action)
steps; it is trained by behaviour cloning (masked action MSE) on all training tasks.

Shapes: T tasks, N rows per task, B batch, K prompt length (the context window of every
method), H = config.history (own steps read), ds / da obs / act dims, D the token size
(`data.tokens`), E embed.

Sequence = K prompt tokens, then 3H main tokens interleaved (R_0, s_0, a_0, ..., R_{H-1},
s_{H-1}, a_{H-1}); the action at step j is read at the s_j token (tanh(Dense)).

* Main tokens (as Prompt-DT): separate Dense embeddings of the scaled return-to-go (1 -> E),
  the normalised state (ds -> E) and the action (da -> E), each plus an Embed(max_timestep+1,
  E) vector of the step's timestep (clipped to max_timestep), then `embed_ln` (LayerNorm).
* Prompt tokens (deviation): the prompt IS the method-shared context window, K tokens
  (s_j, a_{j-1}[, r_{j-1}, s_{j-1}]) with no return-to-go or timestep; each token gets its
  own Dense(D -> E) (states normalised like the main states) plus a learned prompt-position vector (K
  positions); no embed_ln on prompt tokens (as Prompt-DT). Prompt-DT's prompt is instead a
  5-step (R, s, a) segment of an expert trajectory with its own four embeddings.
* Backbone: GPT-2 without learned position embeddings: embedding dropout, num_layers
  pre-LayerNorm blocks (eps 1e-5) of causal multi-head self-attention and a ReLU MLP
  (ff_dim), residual dropout, attention dropout, final LayerNorm. Attention is causal over
  the whole (prompt + main) sequence and never attends to padding (mask 0); padded tokens
  are zeroed before embedding, so their contents never change valid outputs.
* Initialisation as GPT-2 inside the backbone (normal(0.02) kernels, output projections
  normal(0.02 / sqrt(2 num_layers)), zero biases); flax defaults for the embeddings and the
  action head (Prompt-DT leaves those at PyTorch defaults); prompt positions normal(0.02).

Public API::

    DTData                       (stacked per-task data with rtg and timestep)
    make_dt_data(arrays) -> DTData;  target_return(arrays) -> float
    returns_to_go(rewards, terminals, truncations) -> (rtg (N,), timestep (N,))
    sample_segments(data (one task), key, batch_size, history, window) -> DTBatch
    DTBatch, DTState, PromptDTModule, masked_mse(pred, target, mask)
    make_prompt_dt(config, obs_dim, act_dim, num_tasks, window, state_mean, state_std,
                   target_return) -> PromptDT(init, update, epoch, act, predict, loss,
                                              sample_batch, module)

Length: one baseline, one module (the method registry's rule): the GPT, its data, its
learner and its method builder.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from reda_jax.configs import PromptDTConfig
from reda_jax.data.context import (DeviceDataset, make_device_dataset, sample_context_windows,
                                   stack_datasets, take_window, window_rows)
from reda_jax.data.stats import as_arrays
from reda_jax.data.tokens import make_tokens, token_dim
from reda_jax.methods import Method, MethodInputs, prefixed
from reda_jax.optim import apply_gradients
from reda_jax.types import History, TrainState, Transitions

_MASKED_LOGIT = -1e9
_LN_EPS = 1e-5


# ----------------------------------------------------------------------------------
# Data.


@flax.struct.dataclass
class DTData:
    """The stacked tasks' DeviceDataset plus DT targets (leading task axis T).

    dataset: DeviceDataset (T, N, ...) (rows >= size are padding);
    rtg: (T, N) float32, undiscounted sum of the rewards from the row to the end of its
        episode (as stored: an episode cut by a time limit or the data's end just sums the
        remaining stored rewards); 0 on padding
    timestep: (T, N) int32, row index - episode_start (0 on padding)
    """

    dataset: DeviceDataset
    rtg: jax.Array
    timestep: jax.Array


def returns_to_go(rewards: np.ndarray, terminals: np.ndarray,
                  truncations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) rows in episode order -> (rtg (N,) float32, timestep (N,) int32): the sum of the
    rewards from each row to its episode's last row (a row with terminal or truncation set,
    or the data's last row) and the row's index within its episode. Host numpy, float64 sums."""
    r = np.asarray(rewards, np.float64)
    n = r.shape[0]
    done = (np.asarray(terminals) > 0.5) | (np.asarray(truncations) > 0.5)
    done = done.copy()
    if n:
        done[-1] = True
    is_start = np.concatenate([[True], done[:-1]])[:n]
    episode = np.cumsum(is_start) - 1                    # episode index of each row
    last = np.flatnonzero(done)[episode]                 # its last row
    first = np.flatnonzero(is_start)[episode]
    cs = np.cumsum(r)
    rtg = cs[last] - cs + r
    return rtg.astype(np.float32), (np.arange(n) - first).astype(np.int32)


def make_dt_data(arrays: Sequence[Transitions | Mapping[str, Any]]) -> DTData:
    """Per-task dicts of flat arrays (observations, actions, rewards, next_observations,
    terminals, truncations; rows in episode order) -> DTData with a leading task axis,
    each task padded to the longest (`stack_datasets`)."""
    arrays = [as_arrays(a) for a in arrays]
    if not arrays:
        raise ValueError("make_dt_data needs at least one task")
    stacked = stack_datasets([make_device_dataset(a) for a in arrays])
    n_max = stacked.episode_start.shape[1]
    rtgs, steps = [], []
    for a in arrays:
        rtg, step = returns_to_go(a["rewards"], a["terminals"], a["truncations"])
        extra = n_max - rtg.shape[0]
        rtgs.append(np.concatenate([rtg, np.zeros(extra, np.float32)]))
        steps.append(np.concatenate([step, np.zeros(extra, np.int32)]))
    return DTData(dataset=stacked, rtg=jnp.asarray(np.stack(rtgs)),
                  timestep=jnp.asarray(np.stack(steps)))


@flax.struct.dataclass
class DTBatch:
    """B training segments with their prompts (right-aligned, left padding masked).

    prompt: (B, K, D) tokens (`data.tokens`) of a window of the segment's task (raw states)
    prompt_mask: (B, K) float32
    observations: (B, H, ds) raw states; actions: (B, H, da) the data's actions a_j
    rtg: (B, H) float32 unscaled return-to-go from step j (inclusive)
    timesteps: (B, H) int32; mask: (B, H) float32, 1 for real steps
    """

    prompt: jax.Array
    prompt_mask: jax.Array
    observations: jax.Array
    actions: jax.Array
    rtg: jax.Array
    timesteps: jax.Array
    mask: jax.Array


def sample_segments(data: DTData, key: jax.Array, batch_size: int, history: int,
                    window: int, token: str = "state") -> DTBatch:
    """One task's data (no task axis) -> B right-aligned segments of H steps whose end rows
    are uniform in [0, size) and which never cross an episode boundary (as
    `sample_context_windows`), each with an independently drawn K-token prompt window of the
    same task's data. Jittable (sizes static), vmappable over tasks."""
    k_seg, k_prompt = jax.random.split(key)
    safe, valid = window_rows(data.dataset, k_seg, batch_size, history)
    take = lambda x: take_window(x, safe, valid)

    cb = sample_context_windows(data.dataset, k_prompt, batch_size, window)
    return DTBatch(prompt=make_tokens(token, cb.observations, cb.prev_actions, cb.prev_rewards,
                                      cb.prev_observations),
                   prompt_mask=cb.mask, observations=take(data.dataset.transitions.observations),
                   actions=take(data.dataset.transitions.actions), rtg=take(data.rtg),
                   timesteps=take(data.timestep), mask=valid.astype(jnp.float32))


# ----------------------------------------------------------------------------------
# Model.


class _Block(nn.Module):
    """Pre-LN GPT-2 block: x (..., L, E), allowed (..., L, L) bool (query, key) -> (..., L, E)."""

    config: PromptDTConfig

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array, deterministic: bool) -> jax.Array:
        cfg = self.config
        E, nh = cfg.embed_dim, cfg.num_heads
        hd = E // nh
        init = nn.initializers.normal(0.02)
        proj_init = nn.initializers.normal(0.02 / math.sqrt(2 * cfg.num_layers))
        drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic)

        h = nn.LayerNorm(epsilon=_LN_EPS, name="ln_1")(x)
        qkv = nn.DenseGeneral((3, nh, hd), kernel_init=init, name="c_attn")(h)  # (.., L, 3, nh, hd)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        logits = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(hd)
        ok = allowed[..., None, :, :]                                            # (..., 1, L, L)
        logits = jnp.where(ok, logits, _MASKED_LOGIT)
        weights = drop(jax.nn.softmax(logits, axis=-1) * ok)  # no weight on masked keys
        attn = jnp.einsum("...hqk,...khd->...qhd", weights, v)
        attn = nn.DenseGeneral(E, axis=(-2, -1), kernel_init=proj_init, name="attn_proj")(attn)
        x = x + drop(attn)
        h = nn.LayerNorm(epsilon=_LN_EPS, name="ln_2")(x)
        h = nn.relu(nn.Dense(cfg.ff_dim, kernel_init=init, name="c_fc")(h))
        h = nn.Dense(E, kernel_init=proj_init, name="mlp_proj")(h)
        return x + drop(h)


class PromptDTModule(nn.Module):
    """prompt (..., K, D), prompt_mask (..., K), rtg (..., H) scaled, states (..., H, ds)
    normalised, actions (..., H, da), timesteps (..., H) int, mask (..., H)
    -> predicted actions (..., H, da) in (-1, 1), read at each s_j token (module doc)."""

    config: PromptDTConfig
    obs_dim: int
    act_dim: int

    @nn.compact
    def __call__(self, prompt, prompt_mask, rtg, states, actions, timesteps, mask,
                 deterministic: bool = True) -> jax.Array:
        cfg = self.config
        E = cfg.embed_dim
        K, H = prompt.shape[-2], states.shape[-2]
        lead = states.shape[:-2]
        pv, mv = prompt_mask > 0, mask > 0
        zero = lambda v, x: jnp.where(v.reshape(v.shape + (1,) * (x.ndim - v.ndim)), x,
                                      jnp.zeros((), x.dtype))
        prompt, rtg, states, actions = (zero(pv, prompt), zero(mv, rtg), zero(mv, states),
                                        zero(mv, actions))
        timesteps = zero(mv, jnp.clip(timesteps.astype(jnp.int32), 0, cfg.max_timestep))

        p = nn.Dense(E, name="prompt_embed")(prompt)                           # (..., K, E)
        p = p + self.param("prompt_positions", nn.initializers.normal(0.02), (K, E))
        t_emb = nn.Embed(cfg.max_timestep + 1, E, name="embed_timestep")(timesteps)
        r = nn.Dense(E, name="embed_return")(rtg[..., None]) + t_emb           # (..., H, E)
        s = nn.Dense(E, name="embed_state")(states) + t_emb
        a = nn.Dense(E, name="embed_action")(actions) + t_emb
        main = jnp.stack([r, s, a], axis=-2).reshape(lead + (3 * H, E))
        main = nn.LayerNorm(epsilon=_LN_EPS, name="embed_ln")(main)
        x = jnp.concatenate([jnp.broadcast_to(p, lead + (K, E)), main], axis=-2)
        valid = jnp.concatenate([jnp.broadcast_to(pv, lead + (K,)), jnp.repeat(mv, 3, -1)], -1)
        L = K + 3 * H
        allowed = jnp.tril(jnp.ones((L, L), bool)) & valid[..., None, :]       # (..., L, L)

        x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
        for i in range(cfg.num_layers):
            x = _Block(cfg, name=f"block_{i}")(x, allowed, deterministic)
        x = nn.LayerNorm(epsilon=_LN_EPS, name="ln_f")(x)
        hs = x[..., K:, :].reshape(lead + (H, 3, E))[..., 1, :]               # s_j tokens
        return jnp.tanh(nn.Dense(self.act_dim, name="predict_action")(hs))


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """pred, target (..., da), mask (...) -> (): mean squared error over the valid rows and
    all action dims (Prompt-DT: mean over action_preds[mask > 0])."""
    w = (mask > 0).astype(pred.dtype)
    se = ((pred - target) ** 2).sum(-1)
    return (se * w).sum() / jnp.maximum(w.sum() * pred.shape[-1], 1.0)


# ----------------------------------------------------------------------------------
# Learner.


DTState = TrainState


class PromptDT(NamedTuple):
    init: Callable[[jax.Array], DTState]
    update: Callable[[DTState, DTBatch, jax.Array], tuple[DTState, dict]]
    epoch: Callable[[DTState, DTData, jax.Array], tuple[DTState, dict]]
    act: Callable[..., jax.Array]
    predict: Callable[..., jax.Array]
    loss: Callable[..., jax.Array]
    sample_batch: Callable[[DTData, jax.Array], DTBatch]
    module: PromptDTModule


def make_prompt_dt(config: PromptDTConfig, obs_dim: int, act_dim: int, num_tasks: int,
                   window: int, state_mean: Any, state_std: Any,
                   target_return: float, token: str = "state") -> PromptDT:
    """Prompt-DT's learner and policy (pure functions of one seed; vmap over seeds):

    init(key) -> DTState (params, AdamW state, step 0)
    sample_batch(data: DTData (T, N, ...), key) -> DTBatch with B = T * segments_per_task
        (segments_per_task per task, task-major), segments of H = config.history steps
    predict(params, batch, key=None) -> (B, H, da); key None: deterministic, else dropout
    loss(params, batch, key=None) -> masked action MSE over the valid steps
    update(state, batch, key) -> (state, {"loss", "grad_norm", "learning_rate"}): one step of
        clip_by_global_norm(grad_clip) then AdamW(lr * min((step+1)/warmup, 1), weight_decay),
        dropout on (key)
    epoch(state, data, key) -> (state, metrics of (updates_per_epoch,) arrays): lax.scan of
        updates_per_epoch (sample_batch, update)
    act(params, query (M, D), context (M, K, D), mask (M, K), hist: History of (M, H, ...))
        -> actions (M, da), deterministic: prompt = the context window; rtg_j =
        (target_return - hist.returns_before_j) / rtg_scale; states = hist.tokens[..., :ds];
        action j = hist.tokens[j+1, ds:ds+da] (a zero action at the current step); the prediction
        at the current (last) state token. query is unused (it is hist.tokens[:, -1]).
    States (main and prompt) are normalised with (state_mean, state_std); rtg is divided by
    config.rtg_scale.
    """
    if config.embed_dim % config.num_heads:
        raise ValueError(f"embed_dim {config.embed_dim} must be divisible by num_heads "
                         f"{config.num_heads}")
    for name, v in (("window", window), ("history", config.history),
                    ("num_tasks", num_tasks), ("segments_per_task", config.segments_per_task),
                    ("warmup_steps", config.warmup_steps)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    ds, da, K, H = obs_dim, act_dim, int(window), int(config.history)
    D = token_dim(token, ds, da)
    mean = jnp.asarray(state_mean, jnp.float32).reshape(ds)
    std = jnp.asarray(state_std, jnp.float32).reshape(ds)
    target = float(target_return)
    module = PromptDTModule(config, obs_dim, act_dim)
    lr = config.learning_rate
    warmup = float(config.warmup_steps)
    schedule = lambda count: lr * jnp.minimum((count + 1) / warmup, 1.0)
    opt = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                      optax.adamw(schedule, weight_decay=config.weight_decay))

    def normalise(x):
        return (x - mean) / std

    def predict(params, batch: DTBatch, key: jax.Array | None = None) -> jax.Array:
        p = batch.prompt   # its states (s_j, and s_{j-1} of transition tokens) normalised
        prompt = jnp.concatenate([normalise(p[..., :ds]), p[..., ds:ds + da]] + (
            [p[..., ds + da:ds + da + 1], normalise(p[..., ds + da + 1:])]
            if token == "transition" else []), -1)
        rngs = None if key is None else {"dropout": key}
        return module.apply(params, prompt, batch.prompt_mask, batch.rtg / config.rtg_scale,
                            normalise(batch.observations), batch.actions, batch.timesteps,
                            batch.mask, deterministic=key is None, rngs=rngs)

    def loss(params, batch: DTBatch, key: jax.Array | None = None) -> jax.Array:
        return masked_mse(predict(params, batch, key), batch.actions, batch.mask)

    def init(key: jax.Array) -> DTState:
        params = module.init(key, jnp.zeros((1, K, D)), jnp.ones((1, K)), jnp.zeros((1, H)),
                             jnp.zeros((1, H, ds)), jnp.zeros((1, H, da)),
                             jnp.zeros((1, H), jnp.int32), jnp.ones((1, H)))
        return DTState(params=params, opt_state=opt.init(params), step=jnp.zeros((), jnp.int32))

    def sample_batch(data: DTData, key: jax.Array) -> DTBatch:
        T = data.dataset.size.shape[0]
        if T != num_tasks:
            raise ValueError(f"data has {T} tasks, the learner was built for {num_tasks}")
        keys = jax.random.split(key, T)
        b = jax.vmap(lambda d, k: sample_segments(d, k, config.segments_per_task, H, K, token))(
            data, keys)
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), b)

    def update(state: DTState, batch: DTBatch, key: jax.Array) -> tuple[DTState, dict]:
        drop_key = key if config.dropout > 0 else None
        value, grads = jax.value_and_grad(loss)(state.params, batch, drop_key)
        params, opt_state = apply_gradients(opt, state.params, state.opt_state, grads)
        metrics = {"loss": value, "grad_norm": optax.tree.norm(grads),
                   "learning_rate": schedule(state.step)}
        return DTState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def epoch(state: DTState, data: DTData, key: jax.Array) -> tuple[DTState, dict]:
        def body(st, k):
            k_batch, k_drop = jax.random.split(k)
            return update(st, sample_batch(data, k_batch), k_drop)

        return jax.lax.scan(body, state, jax.random.split(key, config.updates_per_epoch))

    def act(params, query: jax.Array, context: jax.Array, mask: jax.Array,
            hist: History) -> jax.Array:
        tokens = jnp.asarray(hist.tokens, jnp.float32)
        if tokens.shape[-2] != H:
            raise ValueError(f"hist has {tokens.shape[-2]} steps, the model reads H = {H}")
        prev = tokens[..., ds:ds + da]
        actions = jnp.concatenate([prev[..., 1:, :], jnp.zeros_like(prev[..., :1, :])], -2)
        batch = DTBatch(prompt=jnp.asarray(context, jnp.float32),
                        prompt_mask=jnp.asarray(mask, jnp.float32),
                        observations=tokens[..., :ds], actions=actions,
                        rtg=target - jnp.asarray(hist.returns_before, jnp.float32),
                        timesteps=jnp.asarray(hist.timesteps, jnp.int32),
                        mask=jnp.asarray(hist.mask, jnp.float32))
        return predict(params, batch)[..., -1, :]

    return PromptDT(init=init, update=update, epoch=epoch, act=act, predict=predict, loss=loss,
                    sample_batch=sample_batch, module=module)


def target_return(arrays: Sequence[Mapping[str, Any]]) -> float:
    """The best episode return in the training data (the return-to-go at an episode's
    first step is its return): the return Prompt-DT is conditioned on when acting."""
    def best(a):
        rtg, step = returns_to_go(a["rewards"], a["terminals"], a["truncations"])
        return float(rtg[step == 0].max())
    return max(best(a) for a in arrays)


def prompt_dt_method(inputs: MethodInputs) -> Method:
    """Prompt-DT as a `Method` (registered in `configs.METHOD_BUILDERS`): stage 3 only, on
    `make_dt_data`'s sequences; acting reads the episode's own history."""
    pcfg, arrays = inputs.config.prompt_dt, inputs.data.train_arrays
    mean, std = inputs.state_stats
    dt = make_prompt_dt(pcfg, inputs.obs_dim, inputs.act_dim, inputs.num_tasks, inputs.window,
                        mean, std, target_return(arrays), inputs.token)
    stage = inputs.policy_stage(
        dt.init, prefixed(lambda s, _frozen, data, key: dt.epoch(s, data, key), "meta/"),
        make_dt_data(arrays), pcfg.num_epochs)
    return inputs.method("prompt_dt", [stage], act_params=lambda s: s.params,
                         act=lambda p, _frozen, q, c, m, hist: dt.act(p, q, c, m, hist),
                         history=pcfg.history, eval_every=pcfg.eval_every)
