"""The offline datasets of a task set, cut from the behavior checkpoints' rollouts.

For every task (train and unseen multipliers) and every checkpoint group g of
`CollectConfig.checkpoint_groups`:
  train: the first N / |g| transitions of each checkpoint in g (N = train_transitions),
  test:  the first `test_transitions_per_checkpoint` of every checkpoint outside g
         (the off-policy protocol's contexts).
A cut ends its last episode with a truncation. Datasets are named by
`store.dataset_id(task_set, task, group_name(g), split)` under `<root>`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from reda_jax.configs import CollectConfig
from reda_jax.data import store
from reda_jax.envs.tasks import TaskSet, TaskSpec, task_env_spec

def group_name(group: Sequence[int]) -> str:
    """'ckpt1', 'ckpt3', 'ckpt5': groups are named by their number of checkpoints."""
    return f"ckpt{len(group)}"


def find_group(config: CollectConfig, num_checkpoints: int) -> tuple[int, ...]:
    for group in config.checkpoint_groups:
        if len(group) == num_checkpoints:
            return tuple(group)
    valid = sorted(len(g) for g in config.checkpoint_groups)
    raise ValueError(f"no checkpoint group of size {num_checkpoints}; valid sizes: {valid}")


def prefix(arrays: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first n transitions; the last one ends its episode (truncation unless terminal)."""
    total = len(arrays["rewards"])
    if n > total:
        raise ValueError(f"asked for {n} transitions but the rollout has only {total}")
    out = {k: np.array(arrays[k][:n]) for k in store.FIELDS}
    if not out["terminals"][-1]:
        out["truncations"][-1] = True
    return out


def concat(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in store.FIELDS}


def build_datasets(rollout_dir: str | os.PathLike, root: str | os.PathLike, task_set: TaskSet,
                   config: CollectConfig, tasks: Sequence[TaskSpec] | None = None,
                   overwrite: bool = False) -> list[str]:
    """Writes every (task, group, split) dataset from `<rollout_dir>/<task>/ckpt_<k>.npz`;
    complete datasets already in `root` are kept unless `overwrite`. Returns the ids."""
    rollout_dir, root = Path(rollout_dir), Path(root)
    ids = []
    for task in tasks or task_set.all_tasks:
        cache: dict[int, dict[str, np.ndarray]] = {}

        def rollout(k: int) -> dict[str, np.ndarray]:
            if k not in cache:
                path = rollout_dir / task.name / f"ckpt_{k:03d}.npz"
                if not path.is_file():
                    raise FileNotFoundError(f"missing behavior rollout {path}: run the collection first")
                with np.load(path) as z:
                    cache[k] = {f: z[f] for f in z.files}
            return cache[k]

        for group in config.checkpoint_groups:
            others = [k for k in range(1, config.num_checkpoints + 1) if k not in group]
            splits = {
                "train": (list(group), config.train_transitions // len(group)),
                "test": (others, config.test_transitions_per_checkpoint),
            }
            for split, (ckpts, per_ckpt) in splits.items():
                ds_id = store.dataset_id(task_set.name, task.name, group_name(group), split)
                ids.append(ds_id)
                if not overwrite and (store.dataset_path(root, ds_id) / store.MARKER_FILE).is_file():
                    continue
                data = concat([prefix(rollout(k), per_ckpt) for k in ckpts])
                returns = {int(k): float(np.mean(rollout(k)["episode_returns"])) for k in ckpts}
                meta = dict(
                    task_set=task_set.name, task_name=task.name, env_id=task.env_id,
                    parameter=task.parameter, multiplier=task.multiplier,
                    env_kwargs=dict(task.env_kwargs), split=split, group=group_name(group),
                    checkpoints=[int(k) for k in ckpts], transitions_per_checkpoint=per_ckpt,
                    checkpoint_returns=returns, is_train_task=task in task_set.train_tasks,
                    collection_seed=config.seed, behavior_total_steps=config.total_steps,
                    num_behavior_checkpoints=config.num_checkpoints)
                store.write_dataset(root, ds_id, data, meta, env_spec=task_env_spec(task))
    return ids


def load_datasets(root: str | os.PathLike, task_set: TaskSet, num_checkpoints: int, split: str,
                  config: CollectConfig, tasks: Sequence[TaskSpec] | None = None
                  ) -> dict[str, tuple[dict[str, np.ndarray], dict]]:
    """{task name: (arrays, metadata)} for the given group size and split. Each dataset's
    metadata must name the requested task set, task, split, group and id, and its
    dimensions must be the task set's (DatasetError naming the file otherwise)."""
    group = group_name(find_group(config, num_checkpoints))
    out = {}
    for task in tasks or task_set.all_tasks:
        ds_id = store.dataset_id(task_set.name, task.name, group, split)
        expect = dict(dataset_id=ds_id, task_set=task_set.name, task_name=task.name,
                      split=split, group=group)
        arrays, meta = store.load_dataset(root, ds_id, expect=expect)
        where = store.dataset_path(root, ds_id) / store.CACHE_FILE
        for what, dim, want in (("observation", arrays["observations"].shape[1],
                                 task_set.obs_dim),
                                ("action", arrays["actions"].shape[1], task_set.act_dim)):
            if dim != want:
                raise store.DatasetError(f"{where}: {what} dimension {dim}, but task set "
                                         f"{task_set.name} has {want}")
        out[task.name] = (arrays, meta)
    return out
