"""Stage-3 probe of the copycat hypothesis on the didactic data: does a z that
carries the previous action a_{t-1} ruin the meta-policy?

The encoder's query is the current token (s_t, a_{t-1}) (paper Sec. 3.4) and
`networks.encoder.ContextEncoder` adds the query's embedding to its output through a
residual, so z can carry a_{t-1}. The behavior policy is smooth, so a_{t-1} predicts a_t on
the data; a policy that copies it does not react to the state when it acts on its own.
This probe trains stage 3 alone (no encoder, same data, same seeds) with z in {} (BC /
SAC+BC without context) or z = a_{t-1} (the copycat's input, nothing else), and prints the
task-1 on-policy return per seed.

  python -m experiments.probe_copycat --collect_seed=0
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from reda_jax import presets
from reda_jax.algos.meta import make_meta_learner, no_context
from reda_jax.data.context import stack_datasets
from reda_jax.envs.tasks import get_task_set
from reda_jax.eval import protocols
from reda_jax.report import didactic
from reda_jax.run_info import quiet_logs

_COLLECT_SEED = flags.DEFINE_integer("collect_seed", 0, "Didactic data collection seed.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 3, "Learner seeds (vmapped).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/didactic", "Didactic workdir (data reused).")
_VARIANTS = flags.DEFINE_list("variants", "bc,bc_prev,sac_bc,sac_bc_prev",
                              "Objectives x inputs to run.")


def main(argv):
    del argv
    quiet_logs()
    work = Path(_WORKDIR.value) / f"collect{_COLLECT_SEED.value}"
    train, _, info = didactic.didactic_data(work, "default", _COLLECT_SEED.value)
    task_set = get_task_set(didactic.TASK_SET)
    names = [t.name for t in task_set.train_tasks]
    data = stack_datasets([train[n] for n in names])
    rewards = np.concatenate([train[n]["rewards"] for n in names])
    config = presets.didactic_train_config("oracle", "default", _NUM_SEEDS.value)
    obs_dim, act_dim = task_set.obs_dim, task_set.act_dim
    prev_action = lambda frozen, trainable, query, tokens, mask: query[..., obs_dim:]
    S, K = _NUM_SEEDS.value, config.window
    out = {"data": info}
    for variant in _VARIANTS.value:
        objective = "bc" if variant.startswith("bc") else "sac_bc"
        prev = variant.endswith("_prev")
        learner = make_meta_learner(
            config.meta, obs_dim, act_dim, len(names), K, act_dim if prev else 0,
            prev_action if prev else no_context, objective=objective,
            reward_range=(float(rewards.min()), float(rewards.max())))
        keys = jax.random.split(jax.random.key(config.seed), S)
        state = jax.jit(jax.vmap(learner.init))(keys)
        epoch = jax.jit(jax.vmap(learner.epoch, in_axes=(0, None, None, 0)))
        for e in range(config.meta.num_epochs):
            state, metrics = epoch(state, {}, data, jax.vmap(
                lambda k: jax.random.fold_in(k, e))(keys))
        actor = (state.policy.actor_params,)
        act = jax.jit(jax.vmap(lambda p, q, c, m: learner.act(p[0], {}, {}, q, c, m)))
        result = protocols.evaluate(task_set.all_tasks[:1], act, actor, S, K, "on_policy",
                                    config.eval.num_episodes, config.eval.seed,
                                    max_steps=config.eval.max_steps)
        per_seed = result.returns.mean(-1)[:, 0]
        last = {k: float(jnp.mean(v[:, -1])) for k, v in metrics.items()
                if k in ("meta/q", "meta/bc_mse")}
        out[variant] = {"per_seed": per_seed.round(1).tolist(),
                        "mean": float(per_seed.mean()), **last}
        print(variant, json.dumps(out[variant]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
