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
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from reda_jax.algos import meta as meta_lib
from reda_jax.algos.reda import make_reda
from reda_jax.configs import TrainConfig

STAGE1_KINDS = ("dynamics", "generative")


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


def _no_frozen(_rep_state) -> dict:
    return {}


def _prefixed(epoch_fn: Callable, prefix: str) -> Callable:
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
    """The Method of config.algo. delta_std (ds,): std of s' - s in the training data
    (corro's noise negatives); state_stats (mean, std) of the training states: prompt_dt
    and stage 3's normalize_states; action_std (da,) of the training actions: stage 3's
    bc_error 'standardized'; target_return: prompt_dt;
    reward_range (r_min, r_max) of the training data: stage 3's TD-target clip;
    train_multipliers (T,): the training tasks' multipliers (oracle);
    simulator: reda with representation.rollout_physics 'simulator' (`make_reda`)."""
    algo, mcfg, ecfg = config.algo, config.meta, config.encoder
    T, K = num_tasks, ecfg.window
    empty = dict(stage1=None, init_stage1=None, stage1_epoch=None, stage1_converged=None,
                 stage1_epochs=0, init_representation=None, representation_epoch=None,
                 representation_epochs=0, frozen_params=_no_frozen, history=0, window=K,
                 meta_data_kind="windows", meta_epochs=mcfg.num_epochs,
                 eval_every=mcfg.eval_every)
    meta_kw = dict(reward_range=reward_range, state_stats=state_stats, action_std=action_std)

    def context_method(name, learner: meta_lib.MetaLearner, **stages) -> Method:
        return Method(**{**empty, **stages}, name=name, init_meta=learner.init,
                      meta_epoch=learner.epoch,
                      act_params=lambda ms: (ms.policy.actor_params, ms.encoder),
                      act=lambda p, frozen, q, c, m: learner.act(p[0], frozen, p[1], q, c, m),
                      encode=learner.encode, trainable_params=lambda ms: ms.encoder)

    if algo in ("reda", "om_sac", "om_bc"):
        from reda_jax.algos.contrastive import make_encoder_learner
        enc = make_encoder_learner(ecfg, obs_dim, act_dim)
        if algo == "reda":
            r = make_reda(config, obs_dim, act_dim, T, termination_fn, steps_per_dynamics_epoch,
                          steps_per_reward_epoch, simulator)
            learner = meta_lib.make_meta_learner(
                mcfg, obs_dim, act_dim, T, K, ecfg.z_dim,
                encode=lambda frozen, trainable, q, t, m: enc.encode(frozen, q, t, m), **meta_kw)
            stage1 = {}
            if config.representation.augmentation != "none":
                stage1 = dict(stage1="dynamics", init_stage1=r.init_models,
                              stage1_epoch=r.dynamics_epoch,
                              stage1_converged=r.models_converged,
                              stage1_epochs=config.dynamics.max_epochs)
            return context_method(
                "reda", learner, **stage1, init_representation=r.init_representation,
                representation_epoch=r.representation_epoch,
                representation_epochs=config.representation.num_epochs,
                frozen_params=lambda rep: rep.encoder.params)
        learner = meta_lib.make_meta_learner(
            mcfg, obs_dim, act_dim, T, K, ecfg.z_dim,
            encode=lambda frozen, trainable, q, t, m: enc.encode(trainable, q, t, m),
            init_trainable=lambda key: enc.init(key).params, encoder_lr=ecfg.learning_rate,
            objective="sac_bc" if algo == "om_sac" else "bc", **meta_kw)
        return context_method(algo, learner)

    if algo == "bc":
        learner = meta_lib.make_meta_learner(mcfg, obs_dim, act_dim, T, K, 0,
                                             encode=meta_lib.no_context, objective="bc",
                                             **meta_kw)
        return context_method("bc", learner)._replace(encode=None)

    if algo == "oracle":
        if train_multipliers is None or len(train_multipliers) != T:
            raise ValueError(f"oracle needs the {T} training tasks' multipliers, got "
                             f"{train_multipliers}")
        feats = task_features(train_multipliers, train_multipliers, mcfg.oracle_code)
        learner = meta_lib.make_meta_learner(mcfg, obs_dim, act_dim, T, K, feats.shape[1],
                                             encode=meta_lib.no_context, task_features=feats,
                                             **meta_kw)
        return context_method("oracle", learner)._replace(
            encode=None, task_conditioned=True,
            act=lambda p, frozen, q, c, m, task: learner.act(p[0], frozen, p[1], q, c, m, task))

    if algo == "focal":
        from reda_jax.baselines.focal import make_focal
        fcfg = config.focal
        focal = make_focal(fcfg, obs_dim, act_dim, T, K)
        learner = meta_lib.make_meta_learner(
            mcfg, obs_dim, act_dim, T, K, fcfg.z_dim,
            encode=lambda frozen, trainable, q, t, m: focal.encode(frozen, q, t, m), **meta_kw)
        return context_method(
            "focal", learner, init_representation=focal.init,
            representation_epoch=_prefixed(
                lambda s, _models, data, key: focal.epoch(s, data, key), "encoder/"),
            representation_epochs=fcfg.num_epochs, frozen_params=focal.params)

    if algo == "corro":
        from reda_jax.baselines.corro import make_corro
        ccfg = config.corro
        if delta_std is None:
            raise ValueError("corro needs delta_std, the per-dimension std of s' - s")
        corro = make_corro(ccfg, obs_dim, act_dim, T, K, delta_std)
        learner = meta_lib.make_meta_learner(
            mcfg, obs_dim, act_dim, T, K, ccfg.z_dim, encode=corro.encode,
            init_trainable=corro.init_aggregator, encoder_lr=ccfg.learning_rate, **meta_kw)
        return context_method(
            "corro", learner, stage1="generative",
            init_stage1=lambda key, _data: corro.init_generative(key),
            stage1_epoch=_prefixed(corro.generative_epoch, "generative/"),
            stage1_converged=lambda _s: jax.numpy.asarray(False),
            stage1_epochs=ccfg.cvae_epochs, init_representation=corro.init,
            representation_epoch=_prefixed(lambda s, cvae, data, key: corro.epoch(
                s, cvae.params, data, key), "encoder/"),
            representation_epochs=ccfg.num_epochs, frozen_params=corro.params)

    if algo == "prompt_dt":
        from reda_jax.baselines.prompt_dt import make_prompt_dt
        if state_stats is None or target_return is None:
            raise ValueError("prompt_dt needs state_stats and target_return")
        pcfg = config.prompt_dt
        dt = make_prompt_dt(pcfg, obs_dim, act_dim, T, K, state_stats[0], state_stats[1],
                            target_return)
        return Method(**{**empty, "meta_epochs": pcfg.num_epochs,
                         "eval_every": pcfg.eval_every, "history": pcfg.history,
                         "meta_data_kind": "dt"},
                      name="prompt_dt", init_meta=dt.init,
                      meta_epoch=_prefixed(lambda s, _frozen, data, key: dt.epoch(s, data, key),
                                           "meta/"),
                      act_params=lambda s: s.params,
                      act=lambda p, _frozen, q, c, m, hist: dt.act(p, q, c, m, hist),
                      encode=None, trainable_params=lambda _s: {})

    raise ValueError(f"unknown algo {algo!r}")
