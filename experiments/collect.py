"""Behavior policies and offline datasets of a task set (paper Appendix B.2).

  python -m experiments.collect --task_set=hopper-gravity --preset=mini --workdir=runs/data/mini/hopper-gravity

Trains one SAC per task (train and unseen multipliers) as one vmapped program, takes
`num_checkpoints` evenly spaced checkpoints, collects each checkpoint's data with the
deterministic policy, and writes the train/test datasets of every checkpoint group to
<workdir>/datasets (Minari format). Per-checkpoint returns go to <workdir>/returns.csv.
Run the same command again after a kill: it resumes from the last checkpoint.
"""
from __future__ import annotations

import collections
import dataclasses
import time

from absl import app, flags
from tqdm import tqdm

from reda_jax import configs
from reda_jax.data.collect import BehaviorCollector, read_returns
from reda_jax.data.datasets import build_datasets
from reda_jax.envs.tasks import TASK_SETS, get_task_set
from reda_jax.run_info import prepare_run_dir, quiet_logs

_TASK_SET = flags.DEFINE_enum("task_set", "inverted-pendulum-gravity", sorted(TASK_SETS),
                              "Task set to collect.")
_PRESET = flags.DEFINE_enum("preset", "mini", list(configs.PRESETS), "Size preset.")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Output directory; default runs/data/<preset>/<task_set>.")
_SEED = flags.DEFINE_integer("seed", None, "Overrides the preset's collection seed.")


def default_workdir(task_set: str, preset: str) -> str:
    return f"runs/data/{preset}/{task_set}"


def run_collection(task_set_name: str, preset: str, workdir: str, seed: int | None = None,
                   show_progress: bool = True) -> list[str]:
    """Trains the behavior policies, collects and writes the datasets; returns their ids."""
    task_set = get_task_set(task_set_name)
    config = configs.collect_preset(preset, task_set_name)
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    prepare_run_dir(workdir, dict(task_set=task_set_name, preset=preset,
                                  collect=configs.to_dict(config)))
    tasks = task_set.all_tasks
    seeds = [1000 * config.seed + i for i in range(len(tasks))]
    collector = BehaviorCollector(config, tasks, seeds, workdir)
    done = (collector.train_ckpt.latest_step() or 0) * collector.steps_per_ckpt
    bar = tqdm(total=config.total_steps, initial=done, unit="step", disable=not show_progress, mininterval=5,
               desc=f"{task_set_name} ({len(tasks)} tasks)")
    t0 = time.time()
    collector.run(lambda n, info: (bar.update(n), bar.set_postfix(
        ret=f"{info['train_return']:.0f}", refresh=False)))
    bar.close()
    ids = build_datasets(f"{workdir}/rollouts", f"{workdir}/datasets", task_set, config)
    print(f"collection of {task_set_name} ({preset}) took {time.time() - t0:.0f} s; "
          f"{len(ids)} datasets in {workdir}/datasets")
    return ids


def returns_table(workdir: str) -> str:
    """Markdown table: deterministic return of every checkpoint (rows) and task (columns)."""
    rows = read_returns(f"{workdir}/returns.csv")
    by_ckpt = collections.defaultdict(dict)
    tasks = []
    for r in rows:
        by_ckpt[int(r["checkpoint"])][r["task"]] = float(r["return_mean"])
        if r["task"] not in tasks:
            tasks.append(r["task"])
    lines = ["| checkpoint | env steps | " + " | ".join(tasks) + " |",
             "|---" * (len(tasks) + 2) + "|"]
    steps = {int(r["checkpoint"]): r["env_steps"] for r in rows}
    for k in sorted(by_ckpt):
        lines.append(f"| {k} | {steps[k]} | " + " | ".join(
            f"{by_ckpt[k].get(t, float('nan')):.1f}" for t in tasks) + " |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quiet_logs()
    workdir = _WORKDIR.value or default_workdir(_TASK_SET.value, _PRESET.value)
    run_collection(_TASK_SET.value, _PRESET.value, workdir, _SEED.value)
    print(returns_table(workdir))


if __name__ == "__main__":
    app.run(main)
