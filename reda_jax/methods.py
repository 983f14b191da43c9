"""Every method of the paper's tables as one `Method`: up to three stages of pure epoch
functions of ONE seed, which `reda_jax.train.Trainer` vmaps over seeds and runs.

  method     stage 1 ('dynamics' dir)     stage 2 ('representation')        stage 3 ('meta_policy')
  reda       task dynamics ensembles       adversarial augmentation+InfoNCE  SAC+BC, encoder fixed
  (ablations: w/o model skips stage 1; w/o adv uses a uniform rollout policy; w/o UP/TC)
  om_sac     -                             -                                 SAC+BC, transformer
                                                                             trained by the critics
  om_bc      -                             -                                 BC, transformer trained
                                                                             by the BC loss
  focal      -                             FOCAL distance-metric loss        SAC+BC, encoder fixed
  corro      CVAE (negative generator)     CORRO InfoNCE of E1               SAC+BC, E2 trained by
                                                                             the critics
  prompt_dt  -                             -                                 Prompt-DT
  bc         -                             -                                 BC without context
  oracle     -                             -                                 SAC+BC on the true
                                                                             task's multiplier

Every context-based method reads the same K-token context windows (tokens (s_t, a_{t-1}))
in training and in both evaluation protocols; Prompt-DT reads the window as its prompt.

Each method is declared once, in its own module, by a builder `MethodInputs -> Method`
(`reda_jax.algos.reda.reda_method`, `reda_jax.baselines.*`), and registered by name in
`configs.METHOD_BUILDERS`; `make_method` looks it up.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, NamedTuple

import numpy as np

from reda_jax.configs import METHOD_BUILDERS, TrainConfig


class Method(NamedTuple):
    """Pure functions of one seed (see the module doc). Absent stages are None.

    stage1: None, 'dynamics' (data: reda.DynamicsData) or 'generative' (data: the training
        DeviceDataset (T, ...)); init_stage1(key, data) -> state; stage1_epoch(state, data,
        key) -> (state, metrics); stage1_converged(state) -> () bool; stage1_epochs: max.
    init_representation(key) -> state; representation_epoch(state, stage1_state, data, key)
        -> (state, metrics); representation_epochs; frozen_params(rep_state | None) -> the
        encoder params fixed in stage 3.
    init_meta(key) -> state; meta_epoch(state, frozen, meta_data, key) -> (state, metrics);
        meta_epochs, eval_every; meta_data_kind: 'windows' (the training DeviceDataset) or
        'dt' (prompt_dt.DTData).
    act_params(meta_state) -> the part of the stage-3 state acting reads (the actor, and
        encoder params trained in stage 3); act(act_params, frozen, query, context, mask[,
        hist]) -> actions; history: steps of own history act needs (0: none).
    encode(frozen, trainable, query, tokens, mask) -> z, trainable_params(meta_state); None
        for a method without a learned task representation (prompt_dt, bc, oracle).
    task_conditioned: act takes the true task's features as a keyword `task` (oracle).
    """

    name: str
    stage1: str | None
    init_stage1: Callable | None
    stage1_epoch: Callable | None
    stage1_converged: Callable | None
    stage1_epochs: int
    init_representation: Callable | None
    representation_epoch: Callable | None
    representation_epochs: int
    frozen_params: Callable[[Any], Any]
    init_meta: Callable
    meta_epoch: Callable
    meta_epochs: int
    eval_every: int
    meta_data_kind: str
    act_params: Callable[[Any], Any]
    act: Callable
    history: int
    encode: Callable | None
    trainable_params: Callable[[Any], Any]
    window: int
    task_conditioned: bool = False


@dataclasses.dataclass(frozen=True)
class MethodInputs:
    """What a method's builder may read: the run's config, the task set's sizes and the
    training data's statistics (`make_method`'s arguments)."""

    config: TrainConfig
    obs_dim: int
    act_dim: int
    num_tasks: int
    termination_fn: Callable
    steps_per_dynamics_epoch: int = 1
    steps_per_reward_epoch: int = 1
    delta_std: np.ndarray | None = None
    state_stats: tuple[np.ndarray, np.ndarray] | None = None
    action_std: np.ndarray | None = None
    target_return: float | None = None
    reward_range: tuple[float, float] | None = None
    train_multipliers: tuple[float, ...] | None = None
    simulator: Callable | None = None

    @property
    def window(self) -> int:
        """K, the context window length every method and protocol reads."""
        return self.config.encoder.window

    def stage3_stats(self) -> dict:
        """The data statistics stage 3's learner (`algos.meta.make_meta_learner`) takes."""
        return dict(reward_range=self.reward_range, state_stats=self.state_stats,
                    action_std=self.action_std)

    def no_stages(self) -> dict:
        """Method fields of a method with stage 3 only (a builder overrides what it has)."""
        mcfg = self.config.meta
        return dict(stage1=None, init_stage1=None, stage1_epoch=None, stage1_converged=None,
                    stage1_epochs=0, init_representation=None, representation_epoch=None,
                    representation_epochs=0, frozen_params=no_frozen, history=0,
                    window=self.window, meta_data_kind="windows",
                    meta_epochs=mcfg.num_epochs, eval_every=mcfg.eval_every)


def no_frozen(_rep_state) -> dict:
    return {}


def context_method(inputs: MethodInputs, name: str, learner, **fields) -> Method:
    """A Method whose stage 3 is `learner` (an `algos.meta.MetaLearner`: SAC+BC or BC on the
    encoded context); `fields` are its earlier stages (and any other Method field)."""
    return Method(**{**inputs.no_stages(), **fields}, name=name, init_meta=learner.init,
                  meta_epoch=learner.epoch,
                  act_params=lambda ms: (ms.policy.actor_params, ms.encoder),
                  act=lambda p, frozen, q, c, m: learner.act(p[0], frozen, p[1], q, c, m),
                  encode=learner.encode, trainable_params=lambda ms: ms.encoder)


def prefixed(epoch_fn: Callable, prefix: str) -> Callable:
    """epoch_fn with its metric names prefixed (the trainer's logs group them by prefix)."""
    def fn(*args):
        state, metrics = epoch_fn(*args)
        return state, {k if k.startswith(prefix) else prefix + k: v for k, v in metrics.items()}
    return fn


def task_features(multipliers, train_multipliers, code: str = "standardized") -> np.ndarray:
    """The oracle's z of tasks with these multipliers: (T, 1). code 'multiplier': the
    multiplier itself; 'standardized': (m - mean) / std over train_multipliers (std 1 when
    there is a single training task). Both interpolate to unseen multipliers."""
    m = np.asarray(multipliers, np.float32).reshape(-1, 1)
    if code == "multiplier":
        return m
    if code != "standardized":
        raise ValueError(f"unknown oracle task code {code!r}")
    train = np.asarray(train_multipliers, np.float32)
    std = float(train.std())
    return (m - train.mean()) / (std if std > 0 else 1.0)


def make_method(config: TrainConfig, obs_dim: int, act_dim: int, num_tasks: int,
                termination_fn: Callable, steps_per_dynamics_epoch: int = 1,
                steps_per_reward_epoch: int = 1, delta_std: np.ndarray | None = None,
                state_stats: tuple[np.ndarray, np.ndarray] | None = None,
                action_std: np.ndarray | None = None, target_return: float | None = None,
                reward_range: tuple[float, float] | None = None,
                train_multipliers: tuple[float, ...] | None = None,
                simulator: Callable | None = None) -> Method:
    """The Method of config.algo, from its registered builder. delta_std (ds,): std of
    s' - s in the training data (corro's noise negatives); state_stats (mean, std) of the
    training states: prompt_dt and stage 3's normalize_states; action_std (da,) of the
    training actions: stage 3's bc_error 'standardized'; target_return: prompt_dt;
    reward_range (r_min, r_max) of the training data: stage 3's TD-target clip;
    train_multipliers (T,): the training tasks' multipliers (oracle);
    simulator: reda with representation.rollout_physics 'simulator' (`make_reda`)."""
    if config.algo not in METHOD_BUILDERS:
        raise ValueError(f"unknown algo {config.algo!r}")
    module, builder = METHOD_BUILDERS[config.algo].split(":")
    inputs = MethodInputs(config, obs_dim, act_dim, num_tasks, termination_fn,
                          steps_per_dynamics_epoch, steps_per_reward_epoch, delta_std,
                          state_stats, action_std, target_return, reward_range,
                          train_multipliers, simulator)
    return getattr(importlib.import_module(module), builder)(inputs)
