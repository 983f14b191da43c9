"""The behavior policies of a training checkpoint group under the methods' evaluation: each
checkpoint's deterministic policy on its own task, rolled out on the episodes (reset seeds)
`experiments.train` evaluates a meta-policy on. The reference for the sanity rows (the
floor: `oracle` should at least match the behavior policies on the training tasks).

  python -m experiments.behavior_returns --task_set=hopper-gravity --preset=mini --checkpoints=1
  python -m experiments.behavior_returns ... --collect_seed=1   # collection 1's policies
"""
from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from reda_jax import presets
from reda_jax.experiment import check_collection_seed, collection_dir
from reda_jax.envs.tasks import TASK_SETS, get_task_set
from reda_jax.eval.behavior import behavior_returns

_TASK_SET = flags.DEFINE_enum("task_set", "hopper-gravity", sorted(TASK_SETS), "Task set.")
_PRESET = flags.DEFINE_enum("preset", "mini", list(presets.PRESETS), "Size preset.")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "1", ["1", "3", "5"],
                                 "Training checkpoint group (its size).")
_COLLECT_SEED = flags.DEFINE_integer(
    "collect_seed", None, "Seed of the behavior data collection; default: the preset's. "
    "Collection s lives at runs/data/<preset>/<task_set>-seed<s>, as experiments.train reads it.",
    lower_bound=0)
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Collection directory; default: the --collect_seed collection's.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    task_set = get_task_set(_TASK_SET.value)
    collect = presets.collect_preset(_PRESET.value, _TASK_SET.value)
    evaluation = presets.train_preset(_PRESET.value, _TASK_SET.value).eval
    group = next(g for g in collect.checkpoint_groups if len(g) == int(_CHECKPOINTS.value))
    seed = collect.seed if _COLLECT_SEED.value is None else _COLLECT_SEED.value
    data_dir = _DATA_DIR.value or collection_dir(f"runs/data/{_PRESET.value}/{_TASK_SET.value}",
                                                 seed, _PRESET.value, _TASK_SET.value)[1]
    check_collection_seed(data_dir, seed)
    train = [i for i, t in enumerate(task_set.all_tasks) if t in task_set.train_tasks]
    out = {}
    for k in group:
        r = behavior_returns(data_dir, collect, task_set.all_tasks, k, evaluation, which=train)
        out[k] = {task_set.all_tasks[i].name: float(r[j].mean()) for j, i in enumerate(train)}
        out[k]["mean"] = float(np.mean(r))
    print(json.dumps({"task_set": _TASK_SET.value, "preset": _PRESET.value,
                      "collect_seed": seed, "data_dir": data_dir,
                      "episodes": evaluation.num_episodes, "eval_seed": evaluation.seed,
                      "checkpoints": out}, indent=1))


if __name__ == "__main__":
    app.run(main)
