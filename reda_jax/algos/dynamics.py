"""Gaussian ensembles trained with holdout early stopping (paper Section 3.2, Eq. 4).

`make_gaussian_ensemble(config, in_dim, out_dim, num_members, hidden_dims,
steps_per_epoch=None, num_elites=0)` returns a `GaussianEnsembleFns` of pure functions for one ensemble
of E members learning inputs (N, in) -> targets (N, out):

  init(key, inputs (N, in), targets (N, out), size ()) -> EnsembleState
      normalisers from the first `size` rows; everything else starts fresh.
  train_epoch(state, inputs (N, in), targets (N, out), train_size (),
              holdout_inputs (H, in), holdout_targets (H, out), holdout_size (), key,
              steps=None) -> (EnsembleState, metrics)
      `steps` (static int; default: the factory's `steps_per_epoch`) Adam(W) steps in one
      lax.scan; then holdout scores and the per-member best snapshot.
  predict(state, inputs (..., in), use_best=True) -> mean, std (E', ..., out), raw units;
      with use_best, E' = the `num_elites` members best on holdout (all if 0)
  predict_with(params, state, inputs (..., in)) -> mean, std (E, ..., out), raw units
  should_stop(state) -> () bool: no member improved in the last `config.patience` epochs.

Only the first `train_size` / `holdout_size` rows of the (padded) arrays are used (the
padding may hold anything, even NaN), so tasks of different sizes stack into one array.
Inputs and targets are standardised inside (statistics of the training rows); the loss is
the Gaussian NLL of the standardised targets (Eq. 4, without the constant), summed over
members, plus the MBPO penalty log_std_bound_coef * (sum max_log_std - sum min_log_std).
Every gradient step draws, for each member, its own batch of `config.batch_size` rows
uniformly with replacement from the training rows (bootstrap-style). The optimiser is Adam
with decoupled per-layer weight decay on the kernels (AdamW: -lr * (adam + wd * kernel)).

Model selection: a member improves when its holdout MSE (of the mean, raw units, the
`holdout_mse` metric) falls below (1 - improvement_threshold) x its best so far (MOPO's
relative test; the best starts at +inf, so the first epoch always improves). The holdout
NLL is reported but not used to select: it can be negative, where the relative test is
meaningless. Improved members are copied into `best_params`.

Dynamics models use inputs (s, a) and targets s' - s (`dynamics_arrays`); the reward model
(s, a) -> r (`reward_arrays`). Everything is jittable and vmappable over any number of
leading axes (tasks, seeds): no data-dependent Python control flow, no host round trips.

Length: the ensemble's loss, epoch, holdout scores and early stopping form one learner
(`make_gaussian_ensemble`) with its data helpers.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from reda_jax.configs import DynamicsConfig
from reda_jax.networks.ensemble import GaussianEnsemble
from reda_jax.optim import apply_gradients

MIN_STD = 1e-6
"""Standard deviations below this (constant columns) are replaced by 1 in a Normalizer."""


# ----------------------------------------------------------------------------- normaliser
@flax.struct.dataclass
class Normalizer:
    """Per-column standardisation: mean (d,), std (d,) (> 0)."""

    mean: jax.Array
    std: jax.Array

    def normalize(self, x: jax.Array) -> jax.Array:
        """x (..., d) -> (x - mean) / std."""
        return (x - self.mean) / self.std

    def denormalize(self, x: jax.Array) -> jax.Array:
        """x (..., d) -> x * std + mean."""
        return x * self.std + self.mean


def fit_normalizer(x: jax.Array, size: jax.Array) -> Normalizer:
    """Mean and std of the first `size` rows of x (N, d) (size may be traced). A column
    whose std is below MIN_STD gets std 1 (MBPO's scaler), so that a constant column seen
    in training cannot blow up a different value later."""
    valid = (jnp.arange(x.shape[0]) < size)[:, None]
    n = jnp.maximum(valid.sum(), 1).astype(jnp.float32)
    mean = jnp.where(valid, x, 0.0).sum(0) / n
    std = jnp.sqrt(jnp.where(valid, (x - mean) ** 2, 0.0).sum(0) / n)
    return Normalizer(mean=mean, std=jnp.where(std < MIN_STD, 1.0, std))


# ----------------------------------------------------------------------------- state
@flax.struct.dataclass
class EnsembleState:
    """One ensemble (add leading axes when vmapped over tasks / seeds).

    params, best_params: member-stacked weights (see networks.ensemble); best_params holds
        each member at its best holdout MSE so far (the initial weights before epoch 1).
    opt_state: optimiser state of params.
    input_norm: Normalizer (in,); target_norm: Normalizer (out,).
    best_holdout: (E,) float32, best holdout MSE per member (+inf before epoch 1).
    epochs_since_improvement: () int32, epochs since ANY member improved.
    epoch: () int32, completed epochs.
    """

    params: Any
    best_params: Any
    opt_state: optax.OptState
    input_norm: Normalizer
    target_norm: Normalizer
    best_holdout: jax.Array
    epochs_since_improvement: jax.Array
    epoch: jax.Array


class GaussianEnsembleFns(NamedTuple):
    """The pure functions of `make_gaussian_ensemble` (see the module doc)."""

    init: Callable[..., EnsembleState]
    train_epoch: Callable[..., tuple[EnsembleState, dict]]
    predict: Callable[..., tuple[jax.Array, jax.Array]]
    predict_with: Callable[..., tuple[jax.Array, jax.Array]]
    should_stop: Callable[[EnsembleState], jax.Array]
    loss: Callable[..., tuple[jax.Array, jax.Array]]
    module: GaussianEnsemble
    num_members: int


# ----------------------------------------------------------------------------- pieces
def gaussian_nll_terms(mean: jax.Array, log_std: jax.Array, target: jax.Array) -> jax.Array:
    """Per-element Gaussian negative log-likelihood without constants and the factor 1/2
    (Eq. 4): (mu - y)^2 exp(-2 log_std) + 2 log_std, shaped like mean and log_std."""
    return (mean - target) ** 2 * jnp.exp(-2.0 * log_std) + 2.0 * log_std


def gaussian_nll(mean: jax.Array, log_std: jax.Array, target: jax.Array) -> jax.Array:
    """`gaussian_nll_terms` averaged over rows and dims: mean, log_std (..., B, d), target
    broadcastable to them -> (...,), e.g. (E,)."""
    return gaussian_nll_terms(mean, log_std, target).mean((-2, -1))


def update_best(best_params, best_holdout: jax.Array, epochs_since_improvement: jax.Array,
                params, holdout: jax.Array, threshold: float):
    """Per-member snapshot bookkeeping after an epoch.

    best_holdout, holdout: (E,); params / best_params: pytrees with leading axis E.
    A member improves iff holdout < (1 - threshold) * best_holdout (True against +inf
    for any finite holdout). Returns (best_params, best_holdout, epochs_since_improvement,
    improved (E,) bool); epochs_since_improvement is 0 if any member improved, else +1.
    """
    improved = holdout < (1.0 - threshold) * best_holdout

    def pick(new, old):
        return jnp.where(improved.reshape(improved.shape + (1,) * (new.ndim - 1)), new, old)

    best_params = jax.tree.map(pick, params, best_params)
    best_holdout = jnp.where(improved, holdout, best_holdout)
    since = jnp.where(improved.any(), 0, epochs_since_improvement + 1).astype(jnp.int32)
    return best_params, best_holdout, since, improved


def _is_kernel_of(layer: str):
    def mask(params):
        def leaf(path, _):
            keys = [getattr(k, "key", None) for k in path]
            return layer in keys and keys[-1] == "kernel"
        return jax.tree_util.tree_map_with_path(leaf, params)
    return mask


def make_optimizer(config: DynamicsConfig, num_layers: int) -> optax.GradientTransformation:
    """Adam with decoupled weight decay config.weight_decay[i] on layer i's kernel (hidden
    layers, then the output layer); biases and log-std bounds are not decayed. The update
    is -lr * (adam_direction + wd_i * kernel), as in optax.adamw / torch AdamW."""
    if len(config.weight_decay) != num_layers:
        raise ValueError(f"weight_decay has {len(config.weight_decay)} values; "
                         f"{num_layers} layers (hidden + output) need one each")
    decays = [optax.add_decayed_weights(rate, mask=_is_kernel_of(f"layer_{i}"))
              for i, rate in enumerate(config.weight_decay) if rate != 0.0]
    return optax.chain(optax.scale_by_adam(), *decays, optax.scale(-config.learning_rate))


# ----------------------------------------------------------------------------- factory
def make_gaussian_ensemble(config: DynamicsConfig, in_dim: int, out_dim: int,
                           num_members: int, hidden_dims: Sequence[int],
                           steps_per_epoch: int | None = None,
                           num_elites: int = 0) -> GaussianEnsembleFns:
    """Pure functions of an E = num_members Gaussian ensemble (see the module doc).
    `config.weight_decay` must have len(hidden_dims) + 1 entries. `steps_per_epoch` is the
    default number of gradient steps of `train_epoch` (usually ceil(train rows / batch)).
    `num_elites` members (0: all) predict with best_params: those best on holdout MSE."""
    E = num_members
    if not 0 <= num_elites <= E:
        raise ValueError(f"num_elites={num_elites} must be in [0, {E} members]")
    num_elites = num_elites or E
    module = GaussianEnsemble(E, tuple(hidden_dims), out_dim, config.init_max_log_std,
                              config.init_min_log_std)
    opt = make_optimizer(config, len(hidden_dims) + 1)

    def init(key: jax.Array, inputs: jax.Array, targets: jax.Array, size) -> EnsembleState:
        """inputs (N, in), targets (N, out); normalisers from the first `size` rows."""
        params = module.init(key, jnp.zeros((1, in_dim), jnp.float32))
        return EnsembleState(
            params=params, best_params=params, opt_state=opt.init(params),
            input_norm=fit_normalizer(inputs, size), target_norm=fit_normalizer(targets, size),
            best_holdout=jnp.full((E,), jnp.inf, jnp.float32),
            epochs_since_improvement=jnp.zeros((), jnp.int32), epoch=jnp.zeros((), jnp.int32))

    def loss(params, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Standardised x (E, B, in) or (B, in) and y (E, B, out) or (B, out) ->
        (total loss (), NLL per member (E,)); total = sum_e NLL_e + bound penalty."""
        mean, log_std = module.apply(params, x)
        nll = gaussian_nll(mean, log_std, y)
        p = params["params"]
        penalty = p["max_log_std"].sum() - p["min_log_std"].sum()
        return nll.sum() + config.log_std_bound_coef * penalty, nll

    def predict_with(params, state: EnsembleState, inputs: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
        """inputs (..., in) raw -> mean, std (E, ..., out) in raw target units."""
        lead = inputs.shape[:-1]
        x = state.input_norm.normalize(inputs).reshape(-1, in_dim)
        mean, log_std = module.apply(params, x)
        mean = state.target_norm.denormalize(mean)
        std = jnp.exp(log_std) * state.target_norm.std
        shape = (E,) + lead + (out_dim,)
        return mean.reshape(shape), std.reshape(shape)

    def predict(state: EnsembleState, inputs: jax.Array, use_best: bool = True
                ) -> tuple[jax.Array, jax.Array]:
        """inputs (..., in) raw -> mean, std (E', ..., out) raw units, with best_params
        (use_best, the default; E' = the config's predicting members, the elites, best
        holdout MSE first) or the latest params (E' = E). `use_best` must be static."""
        mean, std = predict_with(state.best_params if use_best else state.params, state,
                                 inputs)
        if use_best and num_elites < E:
            elites = elite_members(state)
            mean, std = mean[elites], std[elites]
        return mean, std

    def elite_members(state: EnsembleState) -> jax.Array:
        """(E',) int: the members with the lowest best holdout MSE, best first (ties, e.g.
        before the first epoch, keep member order)."""
        return jnp.argsort(state.best_holdout, stable=True)[:num_elites]

    def holdout_scores(params, state: EnsembleState, inputs, targets, size):
        """Masked to the first `size` rows of inputs (H, in), targets (H, out):
        (NLL of standardised targets (E,), MSE of the mean in raw units (E,))."""
        x = state.input_norm.normalize(inputs)
        y = state.target_norm.normalize(targets)
        mean, log_std = module.apply(params, x)                       # (E, H, out)
        valid = jnp.arange(inputs.shape[0]) < size                   # (H,)
        n = jnp.maximum(valid.sum(), 1).astype(jnp.float32)
        masked_mean = lambda v: jnp.where(valid, v, 0.0).sum(-1) / n  # (E, H) -> (E,)
        nll = masked_mean(gaussian_nll_terms(mean, log_std, y).mean(-1))
        mse = masked_mean((((mean - y) * state.target_norm.std) ** 2).mean(-1))
        return nll, mse

    def train_epoch(state: EnsembleState, inputs: jax.Array, targets: jax.Array, train_size,
                    holdout_inputs: jax.Array, holdout_targets: jax.Array, holdout_size,
                    key: jax.Array, steps: int | None = None) -> tuple[EnsembleState, dict]:
        """One epoch (see the module doc). Metrics: train_loss () (mean over steps of the
        total loss), train_nll (E,) (mean over steps), holdout_nll (E,), holdout_mse (E,),
        improved (E,) bool, epochs_since_improvement () int32."""
        steps = steps_per_epoch if steps is None else steps
        if steps is None:
            raise ValueError("train_epoch needs `steps` (or the factory's steps_per_epoch)")
        inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)

        def step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (E, config.batch_size), 0, train_size)
            x = state.input_norm.normalize(inputs[idx])               # (E, B, in)
            y = state.target_norm.normalize(targets[idx])             # (E, B, out)
            (total, nll), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y)
            return apply_gradients(opt, params, opt_state, grads), (total, nll)

        (params, opt_state), (totals, nlls) = jax.lax.scan(
            step, (state.params, state.opt_state), jax.random.split(key, steps))
        nll, mse = holdout_scores(params, state, holdout_inputs, holdout_targets, holdout_size)
        best_params, best_holdout, since, improved = update_best(
            state.best_params, state.best_holdout, state.epochs_since_improvement, params, mse,
            config.improvement_threshold)
        new_state = state.replace(
            params=params, best_params=best_params, opt_state=opt_state,
            best_holdout=best_holdout, epochs_since_improvement=since, epoch=state.epoch + 1)
        metrics = {"train_loss": totals.mean(), "train_nll": nlls.mean(0), "holdout_nll": nll,
                   "holdout_mse": mse, "improved": improved,
                   "epochs_since_improvement": since}
        return new_state, metrics

    def should_stop(state: EnsembleState) -> jax.Array:
        """() bool: epochs_since_improvement >= config.patience."""
        return state.epochs_since_improvement >= config.patience

    return GaussianEnsembleFns(init=init, train_epoch=train_epoch, predict=predict,
                               predict_with=predict_with, should_stop=should_stop, loss=loss,
                               module=module, num_members=E)


# ----------------------------------------------------------------------------- host helpers
def num_holdout(size: int, config: DynamicsConfig) -> int:
    """Held-out rows of a task with `size` rows: min(int(fraction * size) + 1, max_holdout)."""
    return min(int(config.holdout_fraction * size) + 1, config.max_holdout)


def split_holdout(rng: np.random.Generator | int, size: int, num_rows: int,
                  config: DynamicsConfig) -> tuple[np.ndarray, np.ndarray, int, int]:
    """A random train / holdout split of rows [0, size) as fixed-size padded index arrays.

    num_rows >= size is the common padded length (e.g. the largest task). Returns
    train_idx (num_rows,) int32, holdout_idx (num_holdout(num_rows),) int32, train_size,
    holdout_size: the first train_size / holdout_size entries are the split (disjoint,
    together every row once); the padding entries are 0 and must be masked by the sizes
    (train_epoch does).
    """
    if not 1 < size <= num_rows:
        raise ValueError(f"need 1 < size <= num_rows, got size={size}, num_rows={num_rows}")
    rng = np.random.default_rng(rng)
    h = num_holdout(size, config)
    perm = rng.permutation(size).astype(np.int32)
    train_idx = np.zeros(num_rows, np.int32)
    train_idx[:size - h] = perm[h:]
    holdout_idx = np.zeros(num_holdout(num_rows, config), np.int32)
    holdout_idx[:h] = perm[:h]
    return train_idx, holdout_idx, size - h, h


def _field(transitions, name: str):
    return transitions[name] if isinstance(transitions, Mapping) else getattr(transitions, name)


def _xp(*arrays):
    return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def dynamics_arrays(transitions) -> tuple[Any, Any]:
    """Transitions (or a dict of arrays) with observations (..., ds), actions (..., da),
    next_observations (..., ds) -> inputs (..., ds + da) = [s, a], targets (..., ds) = s' - s.
    NumPy in, NumPy out; otherwise jax arrays."""
    obs, act = _field(transitions, "observations"), _field(transitions, "actions")
    nxt = _field(transitions, "next_observations")
    xp = _xp(obs, act, nxt)
    return xp.concatenate([obs, act], -1), nxt - obs


def reward_arrays(transitions) -> tuple[Any, Any]:
    """-> inputs (..., ds + da) = [s, a], targets (..., 1) = r."""
    obs, act = _field(transitions, "observations"), _field(transitions, "actions")
    rew = _field(transitions, "rewards")
    xp = _xp(obs, act, rew)
    return xp.concatenate([obs, act], -1), rew[..., None]


# ----------------------------------------------------------------------------- model use
def next_state_distribution(fns: GaussianEnsembleFns, state: EnsembleState, obs: jax.Array,
                            act: jax.Array, use_best: bool = True
                            ) -> tuple[jax.Array, jax.Array]:
    """obs (..., ds), act (..., da) -> mean next obs s + E[delta] (E, ..., ds), std (E, ..., ds)."""
    mean, std = fns.predict(state, jnp.concatenate([obs, act], -1), use_best)
    return obs + mean, std


def uncertainty(std: jax.Array) -> jax.Array:
    """u(s, a): std (E, ..., ds) -> (...), the maximum over members of the L2 norm of the
    predicted standard deviation (paper Section 3.2)."""
    return jnp.linalg.norm(std, axis=-1).max(0)


def sample_next_obs(mean: jax.Array, std: jax.Array, member_idx: jax.Array,
                    key: jax.Array) -> jax.Array:
    """A draw from member member_idx[r]'s Gaussian for every row r:
    mean, std (E, ..., ds), member_idx (...) int -> (..., ds)."""
    idx = jnp.asarray(member_idx)[None, ..., None]
    mu = jnp.take_along_axis(mean, idx, axis=0)[0]
    sigma = jnp.take_along_axis(std, idx, axis=0)[0]
    return mu + sigma * jax.random.normal(key, mu.shape, mu.dtype)
