"""The didactic example (paper Section 5.1, Appendix B.3, Figure 2): `reda_jax.report.didactic`.

  python -m experiments.didactic                         # see README for the measured time
  python -m experiments.didactic --preset=smoke --workdir=/tmp/didactic   # ~2 min
  python -m experiments.didactic --workdir=runs/didactic_q0 --set=meta.q_weight=0   # a probe

For each collection seed (--collect_seeds): trains behavior SAC on InvertedPendulum at
gravity x1.0 and x2.0, picks checkpoints by return (`reda_jax.report.didactic.choose_checkpoints`),
trains every method (--methods; bc and oracle are the sanity floor and ceiling) on D1_train
and D2_train with --num_seeds vmapped seeds, and evaluates on task 1: with D1_test contexts
(the paper's Figure 2(a)), with D1_train contexts and on-policy. Prints one table pooled
over seeds x collections (mean and 95% t-interval), d(phi) of Eq. 8, the critics' largest
epoch mean Q, the checkpoints each collection used, and whether Figure 2 holds. Draws
Figure 2 with the `viz` extra. Everything lands in --workdir; rerunning resumes.
"""
from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from reda_jax.presets import didactic_train_config
from reda_jax.report.didactic import DEFAULT_METHODS, METHODS, behavior_return, behavior_row, \
    didactic_data, draw_figure, figure2_verdict, floor_verdict, format_roles, format_table, pool, \
    run_method
from reda_jax.run_info import quiet_logs
from reda_jax.validate import InputError, at_least, choices, ints, run_app, writable_dir

_PRESET = flags.DEFINE_enum("preset", "default", ["default", "smoke"],
                            "default: the sizes in reda_jax.report.didactic; smoke: seconds.")
_METHODS = flags.DEFINE_list("methods", list(DEFAULT_METHODS),
                             f"Methods to compare, any of {', '.join(METHODS)}.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 5, "Learner seeds per collection (vmapped).")
_COLLECT_SEEDS = flags.DEFINE_list("collect_seeds", ["0", "1"],
                                   "Independent data collections (behavior SAC seeds).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/didactic", "Output directory.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_SET = flags.DEFINE_multi_string(
    "set", [], "Override one config field of every method, dotted as in config.json, e.g. "
    "--set=meta.q_weight=0 (repeatable; values are Python literals). Needs --workdir, so that "
    "a probe never mixes into the default run.")


def check_flags(argv: list[str], f=flags.FLAGS) -> list[int]:
    """Every flag range-checked before any work; returns the collection seeds."""
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    choices("methods", f.methods, METHODS)
    at_least("num_seeds", f.num_seeds)
    seeds = ints("collect_seeds", f.collect_seeds, low=0)
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--collect_seeds: must be distinct integers >= 0, got {seeds}")
    if f.set and not f["workdir"].present:
        raise InputError("--set: give --workdir too, so that the overridden runs stay apart "
                         "from the default ones")
    for method in f.methods:
        try:
            didactic_train_config(method, f.preset, f.num_seeds, tuple(f.set))
        except ValueError as e:
            raise InputError(f"--set: {e}")
    writable_dir("workdir", f.workdir)
    return seeds


def main(argv):
    collect_seeds = check_flags(argv)
    quiet_logs()
    root = Path(_WORKDIR.value)
    per_method: dict[str, list[dict]] = {m: [] for m in _METHODS.value}
    infos, behavior = {}, []
    for cs in collect_seeds:
        workdir = root / f"collect{cs}"
        train, test, infos[cs] = didactic_data(workdir, _PRESET.value, cs)
        behavior.append(behavior_return(workdir, _PRESET.value, cs,
                                        infos[cs]["train1"]["checkpoint"]))
        infos[cs]["train1"]["eval_return"] = behavior[-1]
        print(f"collection {cs}: {format_roles(infos[cs])}", flush=True)
        for m in _METHODS.value:
            per_method[m].append(run_method(m, _PRESET.value, _NUM_SEEDS.value, workdir, train,
                                            test, _PROGRESS.value, tuple(_SET.value), cs))
    rows = [behavior_row(behavior)] + [pool(v) for v in per_method.values()]
    table = format_table(rows, infos)
    verdict = floor_verdict(rows) + "\n\n" + figure2_verdict(rows)
    (root / "didactic.md").write_text(table + "\n\n" + verdict + "\n")
    (root / "didactic.json").write_text(json.dumps(
        {"rows": rows, "per_collection": per_method, "data": infos}, indent=1))
    print("\nDidactic example (InvertedPendulum, gravity x1.0 = task 1, x2.0 = task 2):\n"
          + table + "\n\n" + verdict)
    if draw_figure(rows, root / "figure2.png"):
        print(f"figure: {root / 'figure2.png'}")


if __name__ == "__main__":
    run_app(main)
