"""Behavior policies and offline datasets of a task set (paper Appendix B.2).

  python -m experiments.collect --task_set=hopper-gravity --preset=mini --workdir=runs/data/mini/hopper-gravity

Trains one SAC per task (train and unseen multipliers) as one vmapped program, takes
`num_checkpoints` evenly spaced checkpoints, collects each checkpoint's data with the
deterministic policy, and writes the train/test datasets of every checkpoint group to
<workdir>/datasets (Minari format). Per-checkpoint returns go to <workdir>/returns.csv.
Run the same command again after a kill: it resumes from the last checkpoint.

More training data from the same behavior policies (simulation only):

  python -m experiments.collect --task_set=hopper-gravity --preset=mini --train_transitions=200000

collects (or finds) the preset's collection, rolls the stored policies of the
--checkpoints group out again until they hold N = --train_transitions per task, and writes
that group's datasets to <workdir>/datasets-n<N> (the preset's datasets stay as they are;
the first rows of a larger dataset are the smaller one's).
"""
from __future__ import annotations

import collections

from absl import flags

from reda_jax import presets
from reda_jax.behavior.collect import extend_collection, read_returns, run_collection
from reda_jax.envs.tasks import TASK_SETS
from reda_jax.run_info import quiet_logs
from reda_jax.validate import InputError, at_least, run_app, writable_dir

_TASK_SET = flags.DEFINE_enum("task_set", "inverted-pendulum-gravity", sorted(TASK_SETS),
                              "Task set to collect.")
_PRESET = flags.DEFINE_enum("preset", "mini", list(presets.PRESETS), "Size preset.")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Output directory; default runs/data/<preset>/<task_set>.")
_SEED = flags.DEFINE_integer("seed", None, "Overrides the preset's collection seed.")
_TRAIN_TRANSITIONS = flags.DEFINE_integer(
    "train_transitions", None, "Then extend the training data to this N per task by rolling "
    "the stored policies out again (datasets in <workdir>/datasets-n<N>).")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "1", ["1", "3", "5"],
                                 "With --train_transitions: the checkpoint group to extend.")


def default_workdir(task_set: str, preset: str) -> str:
    return f"runs/data/{preset}/{task_set}"


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


def check_flags(argv: list[str], f=flags.FLAGS) -> None:
    """Every flag range-checked before any work (InputError naming the flag)."""
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    at_least("seed", f.seed, 0)
    at_least("train_transitions", f.train_transitions, 2)
    writable_dir("workdir", f.workdir or default_workdir(f.task_set, f.preset))


def main(argv):
    check_flags(argv)
    quiet_logs()
    workdir = _WORKDIR.value or default_workdir(_TASK_SET.value, _PRESET.value)
    run_collection(_TASK_SET.value, _PRESET.value, workdir, _SEED.value)
    print(returns_table(workdir))
    if _TRAIN_TRANSITIONS.value is not None:
        extend_collection(_TASK_SET.value, _PRESET.value, workdir, _TRAIN_TRANSITIONS.value,
                          int(_CHECKPOINTS.value), _SEED.value)


if __name__ == "__main__":
    run_app(main)
