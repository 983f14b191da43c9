"""The behavior policies themselves under the methods' evaluation: a behavior checkpoint's
deterministic policy rolled out on the very episodes (reset seeds) a meta-policy is
evaluated on (`protocols.evaluate`), the reference a sanity floor compares with."""
from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np

from reda_jax.algos.sac import make_sac
from reda_jax.checkpoint import Checkpointer
from reda_jax.configs import CollectConfig, EvalConfig
from reda_jax.envs.tasks import TaskSpec
from reda_jax.eval import protocols


def behavior_returns(collect_dir: str | os.PathLike, config: CollectConfig,
                     members: Sequence[TaskSpec], checkpoint: int, evaluation: EvalConfig,
                     which: Sequence[int] | None = None) -> np.ndarray:
    """Returns (len(which), E) episode returns of checkpoint `checkpoint` (1-based) of a
    `BehaviorCollector` run in collect_dir whose members (in order) are `members`; member i
    is rolled out on members[i] with `evaluate`'s reset seeds for task index j (its position
    in `which`, default every member), as a meta-policy evaluated on those tasks would be."""
    which = list(range(len(members)) if which is None else which)
    env = members[0].make_env()
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    sac = make_sac(config.sac, obs_dim, act_dim)
    like = jax.vmap(sac.init)(jax.random.split(jax.random.key(0), len(members))).actor_params
    path = os.path.join(os.fspath(collect_dir), "checkpoints", "policies")
    params, _ = Checkpointer(path, max_to_keep=None).restore(checkpoint, like)
    params = jax.tree.map(lambda x: x[np.asarray(which)][None], params)   # (S=1, T, ...)
    act = jax.jit(jax.vmap(jax.vmap(                                      # seeds, tasks
        jax.vmap(lambda p, q: sac.act(p, q[:obs_dim], None, deterministic=True),
                 in_axes=(None, 0)))))                                     # episodes
    E = evaluation.num_episodes

    def act_fn(p, query, context, mask):                                  # query (1, T*E, D)
        q = query.reshape(1, len(which), E, -1)
        return act(p, q).reshape(1, len(which) * E, act_dim)

    result = protocols.evaluate([members[i] for i in which], act_fn, params, 1, 1, "on_policy",
                                E, evaluation.seed, max_steps=evaluation.max_steps)
    return result.returns[0]
