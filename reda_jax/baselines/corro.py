"""CORRO's bi-level encoder, negative generators and InfoNCE (PKU-RL/CORRO, reference s.2).

Shapes: T tasks, B batch, N negatives, K window length, ds / da observation / action dims,
D token size (`data.tokens`), Z = z_dim, L = cvae_latent. A transition is concat(s, a, s') of size
2*ds + da (no reward: the tasks differ in dynamics only).

Stages:
1. CVAE (`cvae_loss`, `generative_epoch`), trained on the training tasks' data only:
   q(z | s, a, s') = MLP(1 hidden layer, ReLU) -> (mean, log-variance) of size L; the decoder
   (s, a, z) -> MLP(1 hidden layer) predicts s' - s (CORRO predicts s' and r). Loss =
   kl_weight * KL(q || N(0, I)) (sum over L, mean over the batch) + MSE(s' - s).
2. E1 (`epoch`): TransitionMLP (ReLU, L2-normalised output) trained by InfoNCE. Each of the
   B pairs draws a task uniformly and the query and key transitions independently and
   uniformly from that task's rows; N negatives share the query's (s, a) with a generated
   s': the CVAE decoder with z ~ N(0, I) ('generative') or s' + noise ('noise').
3. E2 (`init_aggregator`, `encode`): attention aggregation of E1's per-transition embeddings
   of a window's transitions; trained by the meta-policy's critic loss (not here), with
   E1's parameters behind `jax.lax.stop_gradient`.

Length: one baseline, one module (the method registry's rule).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from reda_jax.configs import CorroConfig
from reda_jax.data.context import DeviceDataset
from reda_jax.methods import Method, MethodInputs, Stage, context_method, prefixed, \
    representation_stage
from reda_jax.networks.transition_encoder import AttentionAggregator, RlkitMLP, TransitionMLP, \
    transitions_from_tokens
from reda_jax.optim import apply_gradients
from reda_jax.types import TrainState, data_vector


class CVAE(nn.Module):
    """Conditional VAE of s' given (s, a); rlkit-initialised 1-hidden-layer ReLU MLPs.

    __call__(s (..., ds), a (..., da), s_next (..., ds), eps (..., L))
        -> mean (..., L), logvar (..., L), predicted s' - s (..., ds) at z = mean + std * eps
    encode(s, a, s_next) -> mean, logvar; decode(s, a, z) -> predicted s' - s.
    """

    hidden: int
    latent: int
    obs_dim: int

    def setup(self):
        self.encoder = RlkitMLP((self.hidden,), 2 * self.latent)
        self.decoder = RlkitMLP((self.hidden,), self.obs_dim)

    def encode(self, s, a, s_next):
        out = self.encoder(jnp.concatenate([s, a, s_next], -1))
        return out[..., :self.latent], out[..., self.latent:]

    def decode(self, s, a, z):
        return self.decoder(jnp.concatenate([s, a, z], -1))

    def __call__(self, s, a, s_next, eps):
        mean, logvar = self.encode(s, a, s_next)
        z = mean + jnp.exp(0.5 * logvar) * eps
        return mean, logvar, self.decode(s, a, z)


def cvae_module(config: CorroConfig, obs_dim: int) -> CVAE:
    return CVAE(hidden=config.cvae_hidden, latent=config.cvae_latent, obs_dim=obs_dim)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the last axis: (..., L) -> (...)."""
    return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mean) - jnp.exp(logvar), -1)


def cvae_loss(params, s: jax.Array, a: jax.Array, s_next: jax.Array, key: jax.Array,
              config: CorroConfig) -> tuple[jax.Array, dict]:
    """s (B, ds), a (B, da), s_next (B, ds) -> (loss (), {"loss", "kl", "mse"}).

    loss = config.cvae_kl_weight * mean_b KL_b + mse, mse = mean over (B, ds) of
    (decode(s, a, z) - (s' - s))^2 with z = mean + exp(logvar / 2) * N(0, 1) (key).
    """
    module = cvae_module(config, s.shape[-1])
    eps = jax.random.normal(key, s.shape[:-1] + (config.cvae_latent,), s.dtype)
    mean, logvar, pred = module.apply(params, s, a, s_next, eps)
    kl = gaussian_kl(mean, logvar).mean()
    mse = jnp.mean(jnp.square(pred - (s_next - s)))
    loss = config.cvae_kl_weight * kl + mse
    return loss, {"loss": loss, "kl": kl, "mse": mse}


def sample_negatives(cvae_params, s: jax.Array, a: jax.Array, key: jax.Array, n: int,
                     config: CorroConfig) -> jax.Array:
    """s (B, ds), a (B, da) -> s_neg (B, n, ds) = s + decode(s, a, z), z ~ N(0, I) (the
    prior), no gradient (to the CVAE nor to s, a)."""
    module = cvae_module(config, s.shape[-1])
    B, ds = s.shape
    s_rep = jnp.broadcast_to(s[:, None, :], (B, n, ds))
    a_rep = jnp.broadcast_to(a[:, None, :], (B, n, a.shape[-1]))
    z = jax.random.normal(key, (B, n, config.cvae_latent), s.dtype)
    delta = module.apply(cvae_params, s_rep, a_rep, z, method=CVAE.decode)
    return jax.lax.stop_gradient(s_rep + delta)


def noise_negatives(s: jax.Array, s_next: jax.Array, delta_std: jax.Array, key: jax.Array,
                    n: int, noise_std: float) -> jax.Array:
    """s, s_next (B, ds), delta_std (ds,) -> (B, n, ds): s' + noise_std * delta_std * N(0, 1)
    (the dynamics analogue of CORRO's reward randomisation; s is unused)."""
    del s
    noise = jax.random.normal(key, (s_next.shape[0], n, s_next.shape[-1]), s_next.dtype)
    return s_next[:, None, :] + noise_std * delta_std * noise


def corro_info_nce(q: jax.Array, k: jax.Array, negs: jax.Array, temperature: float
                   ) -> tuple[jax.Array, dict]:
    """q, k (B, Z), negs (B, N, Z) (already L2-normalised) -> (loss (), {"loss", "accuracy",
    "spread"}).

    logits = [q.k, q.n_1, ..., q.n_N] / temperature; loss = mean_b cross-entropy with label 0;
    accuracy = share of queries whose positive logit is strictly the largest; spread = 1 -
    the mean cosine between the B queries' embeddings (pairs i != j): 0 when E1 maps every
    transition to one point, where the loss is exactly log(N + 1) whatever the data.
    """
    pos = jnp.sum(q * k, -1, keepdims=True)                             # (B, 1)
    neg = jnp.einsum("bz,bnz->bn", q, negs)                             # (B, N)
    logits = jnp.concatenate([pos, neg], -1) / temperature
    loss = jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])
    acc = jnp.mean((logits[:, 0] > neg.max(-1) / temperature).astype(jnp.float32))
    B = q.shape[0]
    cos_sum = jnp.sum(q @ q.T) - jnp.sum(q * q)                         # off-diagonal pairs
    spread = 1.0 - cos_sum / max(B * (B - 1), 1)
    return loss, {"loss": loss, "accuracy": acc, "spread": jax.lax.stop_gradient(spread)}


def transition_delta_std(data: DeviceDataset) -> jax.Array:
    """data with (T, N, ...) transitions -> (ds,): std of s' - s over every task's valid rows
    (the scale of the 'noise' negatives)."""
    tr = data.transitions
    delta = tr.next_observations - tr.observations                      # (T, N, ds)
    valid = (jnp.arange(delta.shape[1])[None, :] < data.size[:, None])[..., None]
    count = jnp.maximum(valid.sum(), 1)
    mean = jnp.where(valid, delta, 0.0).sum((0, 1)) / count
    var = jnp.where(valid, jnp.square(delta - mean), 0.0).sum((0, 1)) / count
    return jnp.sqrt(var)


def sample_pooled_rows(data: DeviceDataset, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """(task (n,), row (n,)) int32, uniform over all valid rows of all tasks pooled (each
    transition equally likely, so a larger task is drawn more often)."""
    size = data.size.astype(jnp.int32)
    cum = jnp.cumsum(size)
    u = jax.random.randint(key, (n,), 0, cum[-1])
    task = jnp.searchsorted(cum, u, side="right").astype(jnp.int32)
    return task, u - (cum[task] - size[task])


def sample_task_pairs(data: DeviceDataset, key: jax.Array, n: int) -> tuple[jax.Array, ...]:
    """(task, query row, key row), each (n,) int32: a task uniform over T, then the query and
    key rows independently uniform over that task's valid rows."""
    k_t, k_q, k_k = jax.random.split(key, 3)
    task = jax.random.randint(k_t, (n,), 0, data.size.shape[0])
    size = data.size[task]
    return (task, jax.random.randint(k_q, (n,), 0, size), jax.random.randint(k_k, (n,), 0, size))


def _gather(data: DeviceDataset, task: jax.Array, row: jax.Array):
    tr = data.transitions
    return tr.observations[task, row], tr.actions[task, row], tr.next_observations[task, row]


CVAEState = TrainState


E1State = TrainState


class Corro(NamedTuple):
    init_generative: Callable[[jax.Array], CVAEState]
    generative_update: Callable[..., tuple[CVAEState, dict]]
    generative_epoch: Callable[..., tuple[CVAEState, dict]]
    init: Callable[[jax.Array], E1State]
    update: Callable[..., tuple[E1State, dict]]
    epoch: Callable[..., tuple[E1State, dict]]
    init_aggregator: Callable[[jax.Array], dict]
    encode: Callable[..., jax.Array]
    params: Callable[[E1State], dict]
    negatives: Callable[..., jax.Array]
    e1: TransitionMLP
    e2: AttentionAggregator
    cvae: CVAE


def make_corro(config: CorroConfig, obs_dim: int, act_dim: int, num_tasks: int, window: int,
               delta_std: Any = None) -> Corro:
    """CORRO's learners (pure functions; vmappable over a leading seed axis):

    init_generative(key) -> CVAEState (Adam, config.learning_rate)
    generative_update(state, data (T, ...), key) -> (state, {"loss", "kl", "mse"}): one step
        on cvae_batch_size transitions uniform over all valid (task, row) pairs
    generative_epoch(state, data, key) -> (state, metrics (cvae_updates_per_epoch,))
    init(key) -> E1State (Adam, config.learning_rate)
    update(state, cvae_params | None, data, key) -> (state, {"loss", "accuracy", "spread",
        "negative_spread"}): one InfoNCE step on batch_size pairs with num_negatives
        negatives each (`corro_info_nce`; negative_spread: std of a query's negatives)
    epoch(state, cvae_params | None, data, key) -> (state, metrics (updates_per_epoch,))
    init_aggregator(key) -> E2 params
    encode(e1_params, e2_params, query (..., D), tokens (..., K, D), mask (..., K))
        -> z (..., Z); query unused; no gradient reaches e1_params
    params(state) -> E1 params
    negatives(cvae_params | None, s, a, s_next (B, ds), key) -> (B, num_negatives, ds)
    delta_std (ds,): std of s' - s in the training data (`transition_delta_std`); required
    for config.negatives == 'noise'. cvae_params may be None for 'noise'.
    """
    if window < 2:
        raise ValueError(f"CORRO needs windows of >= 2 tokens (one transition), got {window}")
    if config.negatives == "noise":
        delta_std = data_vector(delta_std, obs_dim, "delta_std", "negatives='noise'")
    e1 = TransitionMLP(tuple(config.hidden_dims), config.z_dim, "l2")
    e2 = AttentionAggregator()
    cvae = cvae_module(config, obs_dim)
    opt = optax.adam(config.learning_rate)
    ds, da, K = obs_dim, act_dim, window

    def check_tasks(data: DeviceDataset):
        if data.size.shape != (num_tasks,):
            raise ValueError(f"data must have a leading task axis of {num_tasks}, got sizes "
                             f"of shape {data.size.shape}")

    def init_generative(key: jax.Array) -> CVAEState:
        k_init, k_eps = jax.random.split(key)
        params = cvae.init(k_init, jnp.zeros((1, ds)), jnp.zeros((1, da)), jnp.zeros((1, ds)),
                           jnp.zeros((1, config.cvae_latent)))
        return CVAEState(params=params, opt_state=opt.init(params), step=jnp.zeros((), jnp.int32))

    def generative_update(state: CVAEState, data: DeviceDataset, key: jax.Array):
        k_rows, k_loss = jax.random.split(key)
        s, a, s_next = _gather(data, *sample_pooled_rows(data, k_rows, config.cvae_batch_size))
        grads, metrics = jax.grad(lambda p: cvae_loss(p, s, a, s_next, k_loss, config),
                                  has_aux=True)(state.params)
        params, opt_state = apply_gradients(opt, state.params, state.opt_state, grads)
        return CVAEState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def generative_epoch(state: CVAEState, data: DeviceDataset, key: jax.Array):
        check_tasks(data)
        return jax.lax.scan(lambda s, k: generative_update(s, data, k), state,
                            jax.random.split(key, config.cvae_updates_per_epoch))

    def init(key: jax.Array) -> E1State:
        params = e1.init(key, jnp.zeros((1, 2 * ds + da)))
        return E1State(params=params, opt_state=opt.init(params), step=jnp.zeros((), jnp.int32))

    def negatives(cvae_params, s, a, s_next, key) -> jax.Array:
        n = config.num_negatives
        if config.negatives == "generative":
            if cvae_params is None:
                raise ValueError("negatives='generative' needs the CVAE params")
            return sample_negatives(cvae_params, s, a, key, n, config)
        return noise_negatives(s, s_next, delta_std, key, n, config.noise_std)

    def update(state: E1State, cvae_params, data: DeviceDataset, key: jax.Array):
        k_pairs, k_neg = jax.random.split(key)
        task, row_q, row_k = sample_task_pairs(data, k_pairs, config.batch_size)
        s_q, a_q, sn_q = _gather(data, task, row_q)
        s_k, a_k, sn_k = _gather(data, task, row_k)
        sn_neg = negatives(cvae_params, s_q, a_q, sn_q, k_neg)           # (B, N, ds)
        B, N = sn_neg.shape[:2]
        q_in = jnp.concatenate([s_q, a_q, sn_q], -1)
        k_in = jnp.concatenate([s_k, a_k, sn_k], -1)
        n_in = jnp.concatenate([jnp.broadcast_to(s_q[:, None], (B, N, ds)),
                                jnp.broadcast_to(a_q[:, None], (B, N, da)), sn_neg], -1)

        def loss_fn(params):
            q, k, negs = (e1.apply(params, x) for x in (q_in, k_in, n_in))
            return corro_info_nce(q, k, negs, config.temperature)

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
        params, opt_state = apply_gradients(opt, state.params, state.opt_state, grads)
        # How far apart the negatives of one query are (std over the N, mean over batch and
        # dimensions, state units): ~0 when the CVAE ignores z and every negative is one s'.
        metrics = {**metrics, "negative_spread": jnp.mean(jnp.std(sn_neg, axis=1))}
        return E1State(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def epoch(state: E1State, cvae_params, data: DeviceDataset, key: jax.Array):
        check_tasks(data)
        return jax.lax.scan(lambda s, k: update(s, cvae_params, data, k), state,
                            jax.random.split(key, config.updates_per_epoch))

    def init_aggregator(key: jax.Array) -> dict:
        return e2.init(key, jnp.zeros((1, K - 1, config.z_dim)), jnp.ones((1, K - 1)))

    def encode(e1_params, e2_params, query: jax.Array, tokens: jax.Array, mask: jax.Array
               ) -> jax.Array:
        del query
        trans, tmask = transitions_from_tokens(tokens, mask, ds, da)
        e = e1.apply(jax.lax.stop_gradient(e1_params), trans)
        return e2.apply(e2_params, e, tmask)

    return Corro(init_generative=init_generative, generative_update=generative_update,
                 generative_epoch=generative_epoch, init=init, update=update, epoch=epoch,
                 init_aggregator=init_aggregator, encode=encode,
                 params=lambda state: state.params, negatives=negatives, e1=e1, e2=e2,
                 cvae=cvae)


def delta_std(arrays) -> np.ndarray:
    """(ds,) std of s' - s over every training task's rows pooled, + 1e-6: the scale of
    the noise negatives."""
    delta = np.concatenate([a["next_observations"] - a["observations"] for a in arrays])
    return delta.std(0).astype(np.float32) + 1e-6


def corro_method(inputs: MethodInputs) -> Method:
    """CORRO as a `Method` (registered in `configs.METHOD_BUILDERS`): stage 1 the CVAE
    (negative generator), stage 2 E1's InfoNCE, stage 3 SAC+BC with E2 trained by the
    critics."""
    from reda_jax.algos import meta as meta_lib
    ccfg, T, K = inputs.config.corro, inputs.num_tasks, inputs.window
    corro = make_corro(ccfg, inputs.obs_dim, inputs.act_dim, T, K,
                       delta_std(inputs.data.train_arrays))
    learner = meta_lib.make_meta_learner(
        inputs.config.meta, inputs.obs_dim, inputs.act_dim, T, K, ccfg.z_dim, token=inputs.token,
        encode=corro.encode, init_trainable=corro.init_aggregator,
        encoder_lr=ccfg.learning_rate, **inputs.stage3_stats())
    generative = Stage("dynamics", "stage 1: generative",
                       lambda key, _data: corro.init_generative(key),
                       prefixed(lambda s, _up, data, key: corro.generative_epoch(s, data, key),
                                "generative/"),
                       ccfg.cvae_epochs, inputs.data.train, progress=("generative/loss",))
    representation = representation_stage(
        corro.init, prefixed(lambda s, cvae, data, key: corro.epoch(s, cvae.params, data, key),
                             "encoder/"),
        ccfg.num_epochs, inputs.data.train, output=corro.params)
    return context_method(inputs, "corro", learner, [generative, representation])
