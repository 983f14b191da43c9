"""Every method of the paper's tables as one `Method`: up to three stages of pure epoch
functions of ONE seed and the data they read, which `reda_jax.train.Trainer` vmaps
over seeds and runs.

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
import functools
import importlib
from typing import Any, Callable, NamedTuple

import numpy as np

from reda_jax.configs import METHOD_BUILDERS, TrainConfig
from reda_jax.data import stats
from reda_jax.data.train_data import TrainData
from reda_jax.envs.tasks import TaskSet


class Method(NamedTuple):
    """Pure functions of one seed (see the module doc) and the data its stages read.
    Absent stages are None.

    stage1: None, 'dynamics' or 'generative' (the stage's name in logs);
        stage1_data: what its functions read (ReDA: `dynamics_data.DynamicsData`; CORRO: the
        training DeviceDataset (T, ...)); init_stage1(key, data) -> state;
        stage1_epoch(state, data, key) -> (state, metrics); stage1_converged(state) -> ()
        bool; stage1_epochs: max.
    init_representation(key) -> state; representation_epoch(state, stage1_state, data, key)
        -> (state, metrics) on the training DeviceDataset; representation_epochs;
        frozen_params(rep_state | None) -> the encoder params fixed in stage 3.
    init_meta(key) -> state; meta_epoch(state, frozen, meta_data, key) -> (state, metrics);
        meta_epochs, eval_every; meta_data: what stage 3 reads (the training DeviceDataset,
        or Prompt-DT's `prompt_dt.DTData`).
    act_params(meta_state) -> the part of the stage-3 state acting reads (the actor, and
        encoder params trained in stage 3); act(act_params, frozen, query, context, mask[,
        hist]) -> actions; history: steps of own history act needs (0: none).
    encode(frozen, trainable, query, tokens, mask) -> z, trainable_params(meta_state); None
        for a method without a learned task representation (prompt_dt, bc, oracle).
    task_conditioned: act takes the true task's features as a keyword `task` (oracle).
    """

    name: str
    stage1: str | None
    stage1_data: Any
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
    meta_data: Any
    act_params: Callable[[Any], Any]
    act: Callable
    history: int
    encode: Callable | None
    trainable_params: Callable[[Any], Any]
    window: int
    task_conditioned: bool = False


@dataclasses.dataclass(frozen=True)
class MethodInputs:
    """What a method's builder reads (`make_method`'s arguments): the run's config and data;
    the task set's sizes and the training data's statistics derive from them (host, each
    computed once, on first use)."""

    config: TrainConfig
    data: TrainData

    @property
    def task_set(self) -> TaskSet:
        return self.data.task_set

    @property
    def obs_dim(self) -> int:
        return self.task_set.obs_dim

    @property
    def act_dim(self) -> int:
        return self.task_set.act_dim

    @property
    def num_tasks(self) -> int:
        """T, the number of training tasks."""
        return len(self.task_set.train_tasks)

    @property
    def termination_fn(self) -> Callable:
        return self.task_set.termination_fn

    @property
    def train_multipliers(self) -> tuple[float, ...]:
        """The training tasks' multipliers (T,)."""
        return tuple(t.multiplier for t in self.task_set.train_tasks)

    @property
    def window(self) -> int:
        """K, the context window length every method and protocol reads."""
        return self.config.window

    @functools.cached_property
    def state_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (ds,) of the training states, every task pooled."""
        return stats.state_stats(self.data.train_arrays)

    def stage3_stats(self) -> dict:
        """The data statistics stage 3's learner (`algos.meta.make_meta_learner`) takes:
        the TD-target clip's reward range, the states' (mean, std) and the actions' std
        (`bc_error` 'standardized'), every training task pooled."""
        arrays = self.data.train_arrays
        return dict(reward_range=stats.reward_range(arrays), state_stats=self.state_stats,
                    action_std=stats.action_std(arrays))

    def no_stages(self) -> dict:
        """Method fields of a method with stage 3 only, on the training windows (a builder
        overrides what it has)."""
        mcfg = self.config.meta
        return dict(stage1=None, stage1_data=None, init_stage1=None, stage1_epoch=None,
                    stage1_converged=None, stage1_epochs=0, init_representation=None,
                    representation_epoch=None, representation_epochs=0,
                    frozen_params=no_frozen, history=0, window=self.window,
                    meta_data=self.data.train, meta_epochs=mcfg.num_epochs,
                    eval_every=mcfg.eval_every)


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


def make_method(config: TrainConfig, data: TrainData) -> Method:
    """The Method of config.algo on a run's data, from its registered builder."""
    if config.algo not in METHOD_BUILDERS:
        raise ValueError(f"unknown algo {config.algo!r}")
    module, builder = METHOD_BUILDERS[config.algo].split(":")
    return getattr(importlib.import_module(module), builder)(MethodInputs(config, data))
