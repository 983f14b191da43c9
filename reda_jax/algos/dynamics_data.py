"""ReDA's stage-1 data: each training task's transitions split into model-training and
holdout rows (`dynamics.split_holdout`), as device arrays the task models' epochs read."""
from __future__ import annotations

import math
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from reda_jax.algos import dynamics
from reda_jax.configs import DynamicsConfig


@flax.struct.dataclass
class DynamicsData:
    """Per-task model data (shapes without the seed axis): inputs (T, N, ds+da), targets
    (T, N, ds), train_size (T,), holdout arrays (T, H, ...), holdout_size (T,); for pooled
    task models one ensemble's: inputs (1, T*N, ds+da+T) (a one-hot of the task last), ...;
    the reward model's data concatenates all tasks: reward_* (T*N, ...)."""

    inputs: jax.Array
    targets: jax.Array
    train_size: jax.Array
    holdout_inputs: jax.Array
    holdout_targets: jax.Array
    holdout_size: jax.Array
    reward_inputs: jax.Array
    reward_targets: jax.Array
    reward_train_size: jax.Array
    reward_holdout_inputs: jax.Array
    reward_holdout_targets: jax.Array
    reward_holdout_size: jax.Array



def make_dynamics_data(arrays: Sequence[dict], config: DynamicsConfig, seed: int
                       ) -> DynamicsData:
    """Holdout split per task (`dynamics.split_holdout`, the same for every run seed),
    padded to the largest task; the reward model's data concatenate every task's rows, and
    so do pooled task models' ([s, a, one-hot of the task], s' - s) with a leading axis 1."""
    rng = np.random.default_rng(seed)
    num_rows = max(len(a["rewards"]) for a in arrays)
    splits = [dynamics.split_holdout(rng, len(a["rewards"]), num_rows, config) for a in arrays]
    dyn = [dynamics.dynamics_arrays(a) for a in arrays]     # per task ([s, a], s' - s)
    rew = [dynamics.reward_arrays(a) for a in arrays]       # per task ([s, a], r)
    if config.task_models == "pooled":
        T = len(arrays)
        dyn = [(np.concatenate([x, np.broadcast_to(np.eye(T, dtype=x.dtype)[k],
                                                   x.shape[:-1] + (T,))], -1), y)
               for k, (x, y) in enumerate(dyn)]

    def padded(pairs, field, part):   # part 0: train rows, 1: holdout rows
        return jnp.asarray(np.stack([p[field][s[part]] for p, s in zip(pairs, splits)]),
                           jnp.float32)

    def joined(pairs, field, part):   # the valid rows of every task, concatenated
        return jnp.asarray(np.concatenate([p[field][s[part][:s[2 + part]]]
                                           for p, s in zip(pairs, splits)]), jnp.float32)

    reward_inputs, reward_holdout = joined(rew, 0, 0), joined(rew, 0, 1)
    if config.task_models == "pooled":
        one = lambda x: x[None]
        model = dict(inputs=one(joined(dyn, 0, 0)), targets=one(joined(dyn, 1, 0)),
                     holdout_inputs=one(joined(dyn, 0, 1)), holdout_targets=one(joined(dyn, 1, 1)),
                     train_size=jnp.asarray([sum(s[2] for s in splits)], jnp.int32),
                     holdout_size=jnp.asarray([sum(s[3] for s in splits)], jnp.int32))
    else:
        model = dict(inputs=padded(dyn, 0, 0), targets=padded(dyn, 1, 0),
                     holdout_inputs=padded(dyn, 0, 1), holdout_targets=padded(dyn, 1, 1),
                     train_size=jnp.asarray([s[2] for s in splits], jnp.int32),
                     holdout_size=jnp.asarray([s[3] for s in splits], jnp.int32))
    return DynamicsData(
        **model,
        reward_inputs=reward_inputs, reward_targets=joined(rew, 1, 0),
        reward_train_size=jnp.asarray(len(reward_inputs), jnp.int32),
        reward_holdout_inputs=reward_holdout, reward_holdout_targets=joined(rew, 1, 1),
        reward_holdout_size=jnp.asarray(len(reward_holdout), jnp.int32))


def epoch_updates(data: DynamicsData, batch_size: int) -> tuple[int, int]:
    """(dynamics, reward) model updates in one stage-1 epoch: one pass over the largest
    task's training rows, and one over the reward model's pooled rows."""
    return (math.ceil(int(np.max(np.asarray(data.train_size))) / batch_size),
            math.ceil(int(data.reward_train_size) / batch_size))
