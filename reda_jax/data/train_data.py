"""The data of one run: the training tasks' offline datasets and every task's
unseen-checkpoint data, on the device (`TrainData`), as every method and read-out sees them."""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from reda_jax.data.context import DeviceDataset, make_device_dataset, stack_datasets
from reda_jax.envs.tasks import TaskSet


@dataclasses.dataclass
class TrainData:
    """Host and device data of one run.

    train: DeviceDataset stacked over the T training tasks (the offline datasets);
    train_arrays: the same as host dicts (for the dynamics holdout split);
    test_train_tasks: DeviceDataset (T, ...) of the unseen-checkpoint data of the training
        tasks (encoder task-identification accuracy);
    contexts: {task name: DeviceDataset} unseen-checkpoint data of every task (off-policy
        evaluation contexts);
    test_all_tasks: the same stacked over every task of the set, in `all_tasks` order
        (embeddings.npz);
    collection_seed: the seed of the behavior data collection these data come from (runs
        on independent collections are pooled by `experiments.tables`), None if unknown.
    """

    task_set: TaskSet
    train: DeviceDataset
    train_arrays: list[dict[str, np.ndarray]]
    test_train_tasks: DeviceDataset
    contexts: dict[str, DeviceDataset]
    test_all_tasks: DeviceDataset
    collection_seed: int | None = None


def make_train_data(task_set: TaskSet, train: Mapping[str, dict], test: Mapping[str, dict],
                    collection_seed: int | None = None) -> TrainData:
    """train: {train task name: arrays}; test: {task name: arrays} for every task;
    collection_seed: the data's collection seed (recorded in results.json)."""
    names = [t.name for t in task_set.train_tasks]
    missing = [n for n in names if n not in train] + [t.name for t in task_set.all_tasks
                                                      if t.name not in test]
    if missing:
        raise ValueError(f"datasets missing for tasks {missing}")
    arrays = [train[n] for n in names]
    return TrainData(task_set=task_set, train=stack_datasets(arrays), train_arrays=arrays,
                     test_train_tasks=stack_datasets([test[n] for n in names]),
                     contexts={name: make_device_dataset(a) for name, a in test.items()},
                     test_all_tasks=stack_datasets([test[t.name] for t in task_set.all_tasks]),
                     collection_seed=collection_seed)
