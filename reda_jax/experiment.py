"""Run-level helpers shared by the apps and tests: config building (the ablations are
`reda_jax.method_names`'), finding or generating a task set's datasets."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from reda_jax import configs, presets
from reda_jax.envs.tasks import get_task_set
from reda_jax.method_names import ABLATIONS
from reda_jax.validate import InputError, writable_dir


def build_config(task_set: str, preset: str, num_checkpoints: int, ablation: str = "none",
                 num_seeds: int | None = None, seed: int = 0, num_models: int | None = None,
                 lambda1: float | None = None, lambda2: float | None = None,
                 algo: str = "reda") -> configs.TrainConfig:
    if algo not in configs.METHOD_BUILDERS:
        raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(configs.METHOD_BUILDERS)}")
    if algo != "reda" and (ablation != "none" or num_models is not None or lambda1 is not None
                           or lambda2 is not None):
        raise ValueError(f"--ablation, --num_models, --lambda1 and --lambda2 are ReDA's; "
                         f"algo {algo!r} has none of them")
    config = presets.train_preset(preset, task_set, num_checkpoints=num_checkpoints, seed=seed,
                                  algo=algo)
    rep = dataclasses.replace(config.representation, **ABLATIONS[ablation])
    if lambda1 is not None:
        rep = dataclasses.replace(rep, lambda1=lambda1)
    if lambda2 is not None:
        rep = dataclasses.replace(rep, lambda2=lambda2)
    dyn = config.dynamics
    if num_models is not None:
        dyn = dataclasses.replace(dyn, num_models=num_models)
    config = dataclasses.replace(config, representation=rep, dynamics=dyn)
    if num_seeds is not None:
        config = dataclasses.replace(config, num_seeds=num_seeds)
    return config


def collection_dir(base: str, seed: int, preset: str, task_set: str) -> tuple[str, str]:
    """A task set's collection of this seed: (its name, its dataset directory): ('data',
    base) for the preset's collection seed, else ('data-seed<s>', base + '-seed<s>')."""
    if seed == presets.collect_preset(preset, task_set).seed:
        return "data", base
    return f"data-seed{seed}", f"{base}-seed{seed}"


def check_collection_seed(data_dir: str, seed: int) -> None:
    """Raises InputError unless data_dir holds a collection (its config.json) of this seed."""
    path = Path(data_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"--data_dir: no collection at {data_dir} (missing {path}); collect it "
                         "with python -m experiments.collect")
    recorded = json.loads(path.read_text())["collect"]["seed"]
    if recorded != seed:
        raise InputError(f"--data_dir: {data_dir} was collected with seed {recorded}, not the "
                         f"requested collection seed {seed} (--collect_seed)")


def load_or_collect(task_set_name: str, preset: str, num_checkpoints: int, data_dir: str,
                    seed: int | None = None):
    """({train task: arrays}, {task: test arrays}); collects the data first if missing.
    seed: the collection seed (default: the preset's); datasets that record another
    collection seed are refused (DatasetError naming both), so a run's collection seed is
    always the one its data was collected with."""
    import dataclasses

    from reda_jax.behavior.collect import run_collection
    from reda_jax.data.datasets import load_datasets
    from reda_jax.data.store import DatasetError, DatasetNotFound
    task_set = get_task_set(task_set_name)
    collect_config = presets.collect_preset(preset, task_set_name)
    if seed is not None:
        collect_config = dataclasses.replace(collect_config, seed=seed)
    seed = collect_config.seed
    root = Path(data_dir) / "datasets"

    def load():
        train = load_datasets(root, task_set, num_checkpoints, "train", collect_config,
                              tasks=task_set.train_tasks)
        test = load_datasets(root, task_set, num_checkpoints, "test", collect_config)
        for name, (_, meta) in [*train.items(), *test.items()]:
            recorded = meta.get("collection_seed", seed)
            if recorded != seed:
                raise DatasetError(f"{root}: {name}'s dataset was collected with seed "
                                   f"{recorded}, not the requested {seed} (the collection "
                                   "seed is --collect_seed; the preset's is "
                                   f"{presets.collect_preset(preset, task_set_name).seed})")
        return ({k: v[0] for k, v in train.items()}, {k: v[0] for k, v in test.items()})

    try:
        return load()
    except DatasetNotFound as e:
        cause = e
    # Only a missing dataset is collected; one that exists but is invalid is an error
    # (DatasetError naming the file), never silently replaced.
    if not _can_write(Path(data_dir)):
        raise InputError(f"--data_dir: datasets missing ({cause}) and {data_dir} is not "
                         "writable, so they cannot be collected there")
    print(f"datasets not found in {root} ({cause}); collecting them first")
    run_collection(task_set_name, preset, data_dir, seed)
    return load()


def _can_write(path: Path) -> bool:
    try:
        writable_dir("data_dir", path)
    except InputError:
        return False
    return True
