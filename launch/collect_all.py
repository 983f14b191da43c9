"""Collect the datasets of several task sets, one after another (or list the commands).

  python -m launch.collect_all --preset=mini --dry_run          # print the commands
  python -m launch.collect_all --preset=paper --task_sets=hopper-gravity,walker2d-gravity

Each task set is one `experiments.collect` process (its tasks already train as one vmapped
program); a killed sweep resumes task set by task set when started again.
"""
from __future__ import annotations

import shlex
import subprocess
import sys

from absl import flags

from reda_jax.presets import PRESETS
from reda_jax.envs.tasks import TASK_SETS
from reda_jax.validate import InputError, choices, run_app, writable_dir

_TASK_SETS = flags.DEFINE_list("task_sets", sorted(TASK_SETS), "Task sets to collect.")
_PRESET = flags.DEFINE_enum("preset", "mini", list(PRESETS), "Size preset.")
_ROOT = flags.DEFINE_string("root", "runs/data", "Workdirs are <root>/<preset>/<task_set>.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only print the commands.")


def commands(task_sets, preset: str, root: str) -> list[list[str]]:
    unknown = [t for t in task_sets if t not in TASK_SETS]
    if unknown:
        raise ValueError(f"unknown task sets {unknown}; valid: {', '.join(sorted(TASK_SETS))}")
    return [[sys.executable, "-m", "experiments.collect", f"--task_set={t}", f"--preset={preset}",
             f"--workdir={root}/{preset}/{t}"] for t in task_sets]


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    choices("task_sets", _TASK_SETS.value, sorted(TASK_SETS))
    if not _DRY_RUN.value:
        writable_dir("root", _ROOT.value)
    cmds = commands(_TASK_SETS.value, _PRESET.value, _ROOT.value)
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
        if not _DRY_RUN.value:
            subprocess.run(cmd, check=True)


if __name__ == "__main__":
    run_app(main)
