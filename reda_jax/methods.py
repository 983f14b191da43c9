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

Every context-based method reads the same K-token context windows (`TrainConfig.window`
tokens of the kind `TrainConfig.token`, `data.tokens`) in training and in both evaluation
protocols; Prompt-DT reads the window as its prompt.

A method is a short list of `Stage` records (name, init, epoch function, epochs,
convergence test, the data they read), ending with the stage that trains the acting
policy, plus how it acts and encodes. Each is declared once, in its own module, by a
builder `MethodInputs -> Method` (`reda_jax.algos.reda.reda_method`, `reda_jax.baselines.*`),
and registered by name in `configs.METHOD_BUILDERS`; `make_method` looks it up.
`reda_jax.train.Trainer` runs the stages in order through one `stage_loop.StageLoop`.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Callable, NamedTuple

import numpy as np

from reda_jax.configs import METHOD_BUILDERS, TrainConfig
from reda_jax.data import stats
from reda_jax.data.tokens import token_dim
from reda_jax.data.train_data import TrainData
from reda_jax.envs.tasks import TaskSet
from reda_jax.metrics_log import STAGES


def _identity(state):
    return state


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage of a method: pure functions of ONE seed (the Trainer vmaps them
    over seeds) and the data they read.

    name: the stage's slot in the pipeline, one of `metrics_log.STAGES` ('dynamics',
        'representation', 'meta_policy'): its checkpoint directory, its metrics.csv stage
        and its RNG stream (`stage_loop.seed_keys` index STAGES.index(name) + 1).
    label: what logs and the progress bar call it ('stage 1: dynamics').
    init(key, data) -> state.
    epoch(state, upstream, data, key) -> (state, metrics): one epoch (a `lax.scan` of
        updates); upstream is the previous stage's `output` ({} for a first stage).
    num_epochs: at most this many epochs.
    data: what init and epoch read (the training DeviceDataset (T, ...), ReDA's
        `dynamics_data.DynamicsData`, Prompt-DT's `prompt_dt.DTData`).
    output(state) -> what the next stage reads (default: the state itself; a stage before
        the policy stage outputs the encoder parameters the policy stage keeps fixed).
    converged(state) -> () bool: stop before num_epochs (None: never).
    progress: metric-name endings shown on the progress bar (means over seeds).
    """

    name: str
    label: str
    init: Callable
    epoch: Callable
    num_epochs: int
    data: Any
    output: Callable[[Any], Any] = _identity
    converged: Callable | None = None
    progress: tuple[str, ...] = ()

    def __post_init__(self):
        if self.name not in STAGES:
            raise ValueError(f"stage name must be one of {STAGES}, got {self.name!r}")

    @property
    def index(self) -> int:
        """1, 2 or 3: the stage's place in the pipeline (its RNG stream)."""
        return STAGES.index(self.name) + 1


class Method(NamedTuple):
    """A method of the paper's tables: its stages and how its policy acts (pure functions of
    one seed; see the module doc).

    stages: in pipeline order; the last ('meta_policy') trains the acting policy and reads
        the previous stage's output as the frozen encoder parameters ({} if it is the only
        stage).
    act_params(policy_state) -> the part of the last stage's state acting reads (the
        actor, and encoder params trained in that stage); act(act_params, frozen, query,
        context, mask[, hist]) -> actions; history: steps of own history act needs (0:
        none). eval_every: the policy stage is evaluated every this many epochs.
    encode(frozen, trainable, query, tokens, mask) -> z, trainable_params(policy_state);
        encode None for a method without a learned task representation (prompt_dt, bc,
        oracle).
    task_conditioned: act takes the true task's features as a keyword `task` (oracle).
    window, token: the K tokens of what kind (`data.tokens`) act's context windows hold.
    """

    name: str
    stages: tuple[Stage, ...]
    act_params: Callable[[Any], Any]
    act: Callable
    history: int
    encode: Callable | None
    trainable_params: Callable[[Any], Any]
    window: int
    token: str
    eval_every: int
    task_conditioned: bool = False

    @property
    def policy_stage(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage | None:
        """The stage of that name, None if the method has none."""
        return next((s for s in self.stages if s.name == name), None)


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

    @property
    def token(self) -> str:
        """What a context token holds (`data.tokens`), for every method and protocol."""
        return self.config.token

    @property
    def token_dim(self) -> int:
        """D, the size of one context token."""
        return token_dim(self.token, self.obs_dim, self.act_dim)

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

    def policy_stage(self, init: Callable, epoch: Callable, data: Any = None,
                     num_epochs: int | None = None) -> Stage:
        """The 'meta_policy' stage: init(key) -> state, epoch(state, frozen, data, key) on
        `data` (default: the training windows) for `num_epochs` (default: the meta config's)."""
        return Stage("meta_policy", "stage 3: meta-policy", lambda key, _data: init(key),
                     epoch, self.config.meta.num_epochs if num_epochs is None else num_epochs,
                     self.data.train if data is None else data)

    def method(self, name: str, stages, act_params, act, encode=None,
               trainable_params=None, history: int = 0, eval_every: int | None = None,
               task_conditioned: bool = False) -> Method:
        """A Method of this run's context windows (eval_every default: the meta config's)."""
        return Method(name=name, stages=tuple(stages), act_params=act_params, act=act,
                      history=history, encode=encode,
                      trainable_params=trainable_params or no_params, window=self.window,
                      token=self.token,
                      eval_every=self.config.meta.eval_every if eval_every is None
                      else eval_every, task_conditioned=task_conditioned)


def no_params(_state) -> dict:
    return {}


def context_method(inputs: MethodInputs, name: str, learner, stages=(), **fields) -> Method:
    """A Method whose policy stage is `learner` (an `algos.meta.MetaLearner`: SAC+BC or BC on
    the encoded context) after `stages`; `fields`: other `MethodInputs.method` arguments."""
    return inputs.method(
        name, (*stages, inputs.policy_stage(learner.init, learner.epoch)),
        act_params=lambda ms: (ms.policy.actor_params, ms.encoder),
        act=lambda p, frozen, q, c, m: learner.act(p[0], frozen, p[1], q, c, m),
        encode=learner.encode, trainable_params=lambda ms: ms.encoder, **fields)


def representation_stage(init: Callable, epoch: Callable, num_epochs: int, data: Any,
                         output: Callable) -> Stage:
    """The 'representation' stage: init(key) -> state, epoch(state, upstream, data, key),
    output(state) -> the encoder parameters the policy stage keeps fixed."""
    return Stage("representation", "stage 2: representation", lambda key, _data: init(key),
                 epoch, num_epochs, data, output=output,
                 progress=("/loss", "test_task_id_accuracy"))


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
