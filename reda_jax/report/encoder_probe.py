"""The encoder read-out's experiment side (the app is `experiments.probe_encoder`): method
names to configs, the collections a read-out runs on, and its tables (pooled over seeds x
collections, and paired against a base run)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reda_jax import configs, presets
from reda_jax.envs.tasks import get_task_set
from reda_jax.experiment import build_config, collection_dir, load_or_collect
from reda_jax.method_names import ABLATIONS
from reda_jax.report import didactic
from reda_jax.validate import InputError

DIDACTIC = "didactic"
ENCODER_ALGOS = tuple(didactic.CONTEXT_METHODS)
METHODS = ENCODER_ALGOS + tuple(f"reda_{a}" for a in ABLATIONS if a != "none")
LABELS = {"train_accuracy": "training windows", "unseen_checkpoint_accuracy":
          "unseen-checkpoint windows", "task1_unseen_checkpoint_accuracy":
          "task 1's unseen-ckpt windows", "linear_probe_accuracy": "linear probe (unseen ckpt)",
          "unseen_task_accuracy": "unseen-task windows", "d_phi": "d(phi) (Eq. 8)",
          "d_phi_centroid": "d(phi), centroids", "d_phi_median": "d(phi), window median",
          "model_train_accuracy": "models: training data",
          "model_unseen_checkpoint_accuracy": "models: unseen ckpt",
          "model_error": "model error", "model_gap": "model gap",
          "model_gap_to_error": "gap / error", "true_gap": "true gap",
          "model_gap_cosine": "cos(model gap, true gap)",
          "model_gap_error": "model gap error / true gap",
          "model_physics_error": "model error / true gap",
          "recorded_vs_simulated": "recorded vs simulated s'",
          "train_model_gap_cosine": "cos(model gap, true gap), training data",
          "train_model_physics_error": "model error / true gap, training data",
          "model_error_own_states": "model error / true gap, own task's states",
          "model_error_other_states": "model error / true gap, other tasks' states",
          "signal_dim": "task's largest dim", "signal_dim_true_gap": "true gap in it",
          "signal_dim_model_error": "model error / true gap in it",
          "train_signal_dim_model_error": "the same, training data"}

MODEL_PREFIXES = ("model_", "true_gap", "recorded_", "train_model_", "signal_dim",
                  "train_signal_dim")
"""Keys of stage 1's task models' read-out (the second table)."""
POLICY_LABELS = {
    "return_task1_test_context": "task 1, D1_test contexts", "return_task1_train_context":
    "task 1, D1_train contexts", "return_task1_on_policy": "task 1, on-policy",
    "return_off_policy_train": "off-policy, training tasks",
    "return_off_policy_unseen": "off-policy, unseen tasks",
    "return_on_policy_train": "on-policy, training tasks",
    "return_on_policy_unseen": "on-policy, unseen tasks", "max_mean_q": "max mean Q"}
"""Keys of `--policies` (the third table: the policy trained on the read-out encoder)."""
LABELS.update(POLICY_LABELS)


def method_config(method: str, task_set: str, preset: str, num_seeds: int, checkpoints: int,
                  overrides: tuple[str, ...]) -> configs.TrainConfig:
    """The TrainConfig of a method name (algo or reda_<ablation>) with `overrides` applied."""
    algo, ablation = ("reda", method[len("reda_"):]) if method.startswith("reda_") else (
        method, "none")
    if algo not in ENCODER_ALGOS or ablation not in ABLATIONS:
        raise InputError(f"--methods: {method!r} is not one of {', '.join(METHODS)} (methods "
                         "without a learned task representation have nothing to read out)")
    ablate = tuple(f"representation.{k}={v!r}" for k, v in ABLATIONS[ablation].items())
    try:
        if task_set == DIDACTIC:
            return presets.didactic_train_config(algo, preset, num_seeds, ablate + overrides)
        config = build_config(task_set, preset, checkpoints, ablation, num_seeds, algo=algo)
        for assignment in overrides:
            config = configs.override(config, assignment)
        return config
    except ValueError as e:
        raise InputError(f"--set: {e}") from e


def collections(task_set: str, preset: str, collect_seeds: list[int], checkpoints: int,
                data_dir: str | None):
    """[(name, seed, TaskSet, train {task: arrays}, test {task: arrays}, info)] per
    collection seed (collected first where missing): the didactic's under
    <data_dir>/collect<s>, a task set's at `collection_dir`."""
    if task_set == DIDACTIC:
        out = []
        for cs in collect_seeds:
            root = Path(data_dir or "runs/didactic") / f"collect{cs}"
            train, test, info = didactic.didactic_data(root, preset, cs)
            out.append((f"collect{cs}", cs, get_task_set(didactic.TASK_SET), train, test, info))
        return out
    base = data_dir or f"runs/data/{preset}/{task_set}"
    out = []
    for cs in collect_seeds:
        name, where = collection_dir(base, cs, preset, task_set)
        train, test = load_or_collect(task_set, preset, checkpoints, where, cs)
        out.append((name, cs, get_task_set(task_set), train, test,
                    {"data_dir": where, "collection_seed": cs}))
    return out


def readout_rows(per_collection: dict[str, dict[str, dict]]) -> dict[str, dict[str, list]]:
    """{collection: {method: {key: per-seed list}}} -> {method: {key: pooled list}}."""
    rows: dict[str, dict[str, list]] = {}
    for by_method in per_collection.values():
        for method, values in by_method.items():
            row = rows.setdefault(method, {})
            for key, v in values.items():
                row.setdefault(key, []).extend(v)
    return rows


def paired_rows(ours: dict, base: dict) -> dict[str, dict[str, list]]:
    """Per-collection results of a variant and of a base run (`per_collection` of their
    JSON) -> {method: {key: per-seed differences ours - base}}, pooled over the
    collections and keys both have: the same data and seeds, one change."""
    rows: dict[str, dict[str, list]] = {}
    for name, by_method in ours.items():
        for method, values in by_method.items():
            other = base.get(name, {}).get(method)
            if other is None:
                continue
            row = rows.setdefault(method, {})
            for key, v in values.items():
                if key in other and len(other[key]) == len(v):
                    row.setdefault(key, []).extend(np.subtract(v, other[key]).tolist())
    return {m: r for m, r in rows.items() if r}


def format_readout(rows: dict[str, dict[str, list]]) -> str:
    """Markdown: a row per method, a column per read-out key any method has; the
    encoder's keys in one table, stage 1's models' (methods that have them) in a second."""
    tables = []
    for part in ([k for k in LABELS if not k.startswith(MODEL_PREFIXES)
                  and k not in POLICY_LABELS],
                 [k for k in LABELS if k.startswith(MODEL_PREFIXES)], list(POLICY_LABELS)):
        keys = [k for k in part if any(k in r for r in rows.values())]
        body = [(m, r) for m, r in rows.items() if any(k in r for k in keys)]
        if not keys or not body:
            continue
        lines = ["| method | " + " | ".join(LABELS[k] for k in keys) + " | n |",
                 "|---|" + "---|" * (len(keys) + 1)]
        for method, row in body:
            n = len(next(iter(row.values())))
            lines.append(f"| {method} | " + " | ".join(didactic.format_cell(row.get(k))
                                                        for k in keys) + f" | {n} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def with_simulator_branches(task_set, train: dict, num_branches: int, horizon: int,
                            seed: int = 0) -> dict:
    """train {task: arrays} with, appended to each training task's data, num_branches
    branch rollouts of `horizon` random-action steps in that task's real physics
    (`physics.simulated_branches`), started from states drawn uniformly from the joint
    training data of all tasks (as ReDA's rollouts): oracle-dynamics augmentation."""
    from reda_jax.eval.physics import simulated_branches
    rng = np.random.default_rng(seed)
    joint = np.concatenate([a["observations"] for a in train.values()])
    out = {}
    for i, task in enumerate(task_set.train_tasks):
        starts = joint[rng.integers(0, len(joint), num_branches)]
        extra = simulated_branches(task_set, task.multiplier, starts, horizon,
                                   task_set.act_dim, seed + i)
        real = train[task.name]
        if set(real) != set(extra):
            raise InputError(f"{task.name}: dataset fields {sorted(real)} cannot take "
                             f"simulated branches ({sorted(extra)})")
        out[task.name] = {k: np.concatenate([real[k], extra[k]]) for k in real}
    return out


def policy_readout(trainer, results: dict, train: dict, test: dict, didactic_set: bool
                   ) -> dict[str, list]:
    """Per-seed returns of the policy a finished `Trainer.run()` (`results`) trained on its
    encoder: on the didactic data Figure 2(a)'s task-1 returns (D1_test contexts, D1_train
    contexts, on-policy) and the critics' largest mean Q; on a task set each protocol's
    mean return over the training tasks and over the unseen tasks."""
    if didactic_set:
        row = didactic.figure2_row(trainer, results, train, test)
        out = {"return_task1_" + k[len("task1_return_"):]: v for k, v in row.items()
               if k.startswith("task1_return_")}
        if row["max_mean_q"] is not None:
            out["max_mean_q"] = row["max_mean_q"]
        return out
    out = {}
    for protocol, summary in results["protocols"].items():
        for group, short in (("train_tasks", "train"), ("unseen_tasks", "unseen")):
            if group in summary:
                out[f"return_{protocol}_{short}"] = summary[group]["per_seed"]
    return out
