"""Stage-3 probes of the offline learner on the didactic data: one method under
one variant of MetaPolicyConfig, on one collection; prints the task-1 return per seed (on
policy, and for context methods with D1_train and D1_test contexts) and the critics' Q range
from metrics.csv. Same data and seeds for every variant. `oracle` and `bc` have no encoder,
so only the learner is tested; a context method (reda, om_sac, focal, ...) reuses the
finished earlier stages (dynamics, representation) of `--from_workdir` (default: the
didactic's run of that method and collection), so only stage 3 changes.

  python -m experiments.probe_offline_learner --variant=old --num_checkpoints=12
  python -m experiments.probe_offline_learner --variant=clip_q01 --num_checkpoints=12
  python -m experiments.probe_offline_learner --algo=reda --num_seeds=5 --variant=independent
  python -m experiments.probe_offline_learner --algo=reda --num_seeds=5 --variant=bcstd \
      --collect_seed=1 --workdir=runs/probe_q01 --from_workdir=runs/didactic_q0/collect1/reda

(--num_checkpoints=12 reproduces the data of docs/notebook.md's Q-weight table, collected
before the didactic moved to 24 checkpoints.)
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from absl import flags

from reda_jax import configs, presets
from reda_jax.envs.tasks import get_task_set
from reda_jax.metrics_log import read_metrics
from reda_jax.report import didactic
from reda_jax.run_info import prepare_run_dir, quiet_logs
from reda_jax.validate import InputError, at_least, run_app, writable_dir

VARIANTS = {
    # name: (MetaPolicyConfig fields, SACConfig fields of its learner)
    "old": (dict(clip_td_target=False, actor_entropy=True, q_weight=2.5), {}),
    "clip": (dict(clip_td_target=True, actor_entropy=True, q_weight=2.5), {}),
    "noent": (dict(clip_td_target=False, actor_entropy=False, q_weight=2.5), {}),
    "q025": (dict(clip_td_target=False, actor_entropy=True, q_weight=0.25), {}),
    "clip_q1": (dict(clip_td_target=True, actor_entropy=True, q_weight=1.0), {}),
    "clip_q025": (dict(clip_td_target=True, actor_entropy=True, q_weight=0.25), {}),
    "clip_q01": (dict(clip_td_target=True, actor_entropy=True, q_weight=0.1), {}),
    "q0": (dict(clip_td_target=True, actor_entropy=True, q_weight=0.0), {}),
    "clip_q01_t01": (dict(clip_td_target=True, actor_entropy=True, q_weight=0.1),
                     dict(init_temperature=0.1)),
    "clip_noentall_q1": (dict(clip_td_target=True, actor_entropy=False, q_weight=1.0),
                         dict(backup_entropy=False)),
    "clip_noentall_q025": (dict(clip_td_target=True, actor_entropy=False, q_weight=0.25),
                           dict(backup_entropy=False)),
    "default": ({}, {}),
    "independent": (dict(context_source="independent"), {}),
    "window": (dict(acting_query="window"), {}),
    "independent_window": (dict(context_source="independent", acting_query="window"), {}),
    "independent_q0": (dict(context_source="independent", q_weight=0.0), {}),
    "independent_window_q0": (dict(context_source="independent", acting_query="window",
                                   q_weight=0.0), {}),
    "independent_window_bcmean": (dict(context_source="independent", acting_query="window",
                                       bc_on_mean=True), {}),
    "independent_window_bcmean_q0": (dict(context_source="independent", acting_query="window",
                                          bc_on_mean=True, q_weight=0.0), {}),
    "independent_window_bcmean_norm": (dict(context_source="independent",
                                            acting_query="window", bc_on_mean=True,
                                            normalize_states=True), {}),
    "independent_window_bcmean_q0_norm": (dict(context_source="independent",
                                               acting_query="window", bc_on_mean=True,
                                               q_weight=0.0, normalize_states=True), {}),
    "bcmean": (dict(bc_on_mean=True), {}),
    # the current defaults with one field changed
    "nonorm": (dict(normalize_states=False), {}),
    "bcstd": (dict(bc_error="standardized"), {}),
    # relative to the defaults before normalize_states / bc_on_mean / 'independent' /
    # 'window' became the defaults: each of them alone on top of that recipe
    "transition_current_sample": (dict(context_source="transition", acting_query="current",
                                       bc_on_mean=False, normalize_states=False), {}),
    "transition_current_sample_norm": (dict(context_source="transition",
                                            acting_query="current", bc_on_mean=False,
                                            normalize_states=True), {}),
}

_ALGO = flags.DEFINE_enum("algo", "oracle", list(didactic.METHODS), "Method.")
_VARIANT = flags.DEFINE_enum("variant", "old", list(VARIANTS), "MetaPolicyConfig variant.")
_COLLECT_SEED = flags.DEFINE_integer("collect_seed", 0, "Didactic data collection seed.")
_NUM_CKPT = flags.DEFINE_integer("num_checkpoints", None,
                                 "Behavior checkpoints of the collection (default: the "
                                 "didactic's).")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 3, "Learner seeds (vmapped).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/probe_offline_learner", "Output directory.")
_PROTOTYPES = flags.DEFINE_bool("prototypes", False,
                                "Context methods: also evaluate the final policy with z fixed "
                                "to each training task's prototype (the mean z of 1,000 of its "
                                "training windows), on-policy on every task.")
_ORACLE_CODE = flags.DEFINE_enum(
    "oracle_code", None, ["multiplier", "standardized"],
    "The oracle's task code (meta.oracle_code; default: the config's). The run directory "
    "gets the suffix -code<value>.")
_ONLY_TASK = flags.DEFINE_integer(
    "only_task", None,
    "bc only: train on training task <only_task>'s data alone (1-based; every training "
    "task's data is replaced by it), to separate what pooling the tasks' behaviors costs "
    "context-free BC from what the learner costs. The run directory gets the suffix "
    "-only<k>.")
_FROM_WORKDIR = flags.DEFINE_string("from_workdir", None,
                                    "Context methods: run whose finished earlier stages are "
                                    "reused (default runs/didactic/collect<k>/<algo>).")


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    at_least("num_seeds", _NUM_SEEDS.value)
    at_least("num_checkpoints", _NUM_CKPT.value)
    at_least("collect_seed", _COLLECT_SEED.value, 0)
    writable_dir("workdir", _WORKDIR.value)
    quiet_logs()
    if _ONLY_TASK.value is not None and _ALGO.value != "bc":
        raise InputError(f"--only_task applies to --algo=bc only (a task-conditioned or "
                         f"context method would see one task's data under another's "
                         f"label), got --algo={_ALGO.value}")
    names = [t.name for t in get_task_set(didactic.TASK_SET).train_tasks]
    if _ONLY_TASK.value is not None and not 1 <= _ONLY_TASK.value <= len(names):
        raise InputError(f"--only_task must be in 1..{len(names)} (the training tasks "
                         f"{names}), got {_ONLY_TASK.value}")
    variant = _VARIANT.value + (f"-code{_ORACLE_CODE.value}" if _ORACLE_CODE.value else "")
    variant += f"-only{_ONLY_TASK.value}" if _ONLY_TASK.value is not None else ""
    work = Path(_WORKDIR.value) / f"collect{_COLLECT_SEED.value}"
    train, test, info = didactic.didactic_data(work, "default", _COLLECT_SEED.value,
                                                _NUM_CKPT.value)
    if _ONLY_TASK.value is not None:
        train = {name: train[names[_ONLY_TASK.value - 1]] for name in names}
    config = presets.didactic_train_config(_ALGO.value, "default", _NUM_SEEDS.value)
    meta_kw, sac_kw = VARIANTS[_VARIANT.value]
    if _ORACLE_CODE.value:
        meta_kw = dict(meta_kw, oracle_code=_ORACLE_CODE.value)
    config = dataclasses.replace(config, meta=dataclasses.replace(
        config.meta, sac=dataclasses.replace(config.meta.sac, **sac_kw), **meta_kw))
    run_dir = prepare_run_dir(work / f"{_ALGO.value}-{variant}",
                              {"train": configs.to_dict(config)})
    from reda_jax.data.train_data import make_train_data
    from reda_jax.metrics_log import STAGES
    from reda_jax.stage_checkpoints import reuse_stages
    from reda_jax.train import Trainer
    if _ALGO.value in didactic.CONTEXT_METHODS:
        source = Path(_FROM_WORKDIR.value or
                      f"runs/didactic/collect{_COLLECT_SEED.value}/{_ALGO.value}")
        reuse_stages(run_dir, source, STAGES[-1])
    trainer = Trainer(config, make_train_data(get_task_set(didactic.TASK_SET), train, test),
                      run_dir, show_progress=False)
    results = trainer.run()
    t1 = get_task_set(didactic.TASK_SET).all_tasks[0].name
    per_seed = lambda summary: summary["tasks"][t1]["per_seed"]
    returns = {"on_policy": per_seed(results["protocols"]["on_policy"]),
               "D1_test": per_seed(results["protocols"]["off_policy"])}
    if _ALGO.value in didactic.CONTEXT_METHODS:
        returns["D1_train"] = per_seed(trainer.evaluate_policy(*trainer.final_state,
                                                               "off_policy", contexts=train))
    if _PROTOTYPES.value and _ALGO.value in didactic.CONTEXT_METHODS:
        returns.update(prototype_returns(trainer, config))
    stats = {}
    for r in read_metrics(run_dir):
        if r["metric"] in ("meta/q", "meta/q_max", "meta/bc_mse"):
            stats.setdefault(r["metric"], []).append(float(r["value"]))
    print(json.dumps({"algo": _ALGO.value, "variant": variant, "data": info,
                      "task1": returns, "mean": {k: float(np.mean(v)) for k, v in
                                                 returns.items()},
                      "range": {k: [min(v), max(v)] for k, v in stats.items()}}))


def prototype_returns(trainer, config, num_windows: int = 1000) -> dict[str, list[float]]:
    """{'proto<t>@<task>': per-seed return on <task> (on-policy) of the final policy with z
    fixed to training task t's prototype}: separates the policy's task modes from the
    spread of z within a task."""
    import jax
    import jax.numpy as jnp
    from reda_jax.algos.contrastive import tokens_from_context
    from reda_jax.algos.sac import make_sac
    from reda_jax.data.stats import state_stats
    from reda_jax.data.context import sample_task_windows
    from reda_jax.eval import protocols

    meta_state, frozen = trainer.final_state
    method, data = trainer.method, trainer.data
    actor_params, trainable = method.act_params(meta_state)
    windows = sample_task_windows(data.train, jax.random.key(7), num_windows, method.window)
    tokens, mask, query = tokens_from_context(windows, method.token)
    z = jax.vmap(lambda f, tr: method.encode(f, tr, query, tokens, mask))(frozen, trainable)
    protos = z.mean(2)                                              # (S, T, Z)
    obs_dim = data.train.transitions.observations.shape[-1]
    act_dim = data.train.transitions.actions.shape[-1]
    sac = make_sac(config.meta.sac, obs_dim + protos.shape[-1], act_dim)
    mean, std = state_stats(data.train_arrays) if config.meta.normalize_states else (0.0, 1.0)

    def act(params, query, context, mask):
        actor, zz = params                          # (S, ...), (S, Z); query (S, M, D)
        zz = jnp.broadcast_to(zz[:, None, :], query.shape[:-1] + zz.shape[-1:])
        obs = jnp.concatenate([(query[..., :obs_dim] - mean) / std, zz], -1)
        return jax.vmap(lambda a, o: sac.act(a, o, None, deterministic=True))(actor, obs)

    act = jax.jit(act)
    tasks = data.task_set.all_tasks
    out = {}
    for t, task in enumerate(data.task_set.train_tasks):
        result = protocols.evaluate(
            tasks, act, (actor_params, protos[:, t]), trainer.num_seeds, method.window,
            "on_policy", config.eval.num_episodes, config.eval.seed,
            max_steps=config.eval.max_steps, simulators=trainer.simulators)
        summary = protocols.summarize(result)
        for name in (x.name for x in tasks):
            out[f"proto_{task.name}@{name}"] = summary["tasks"][name]["per_seed"]
    return out


if __name__ == "__main__":
    run_app(main)
