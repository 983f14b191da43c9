"""The didactic example (paper Section 5.1, Appendix B.3, Figure 2): `reda_jax.didactic`.

  python -m experiments.didactic                         # ~20 min on a 2-core CPU
  python -m experiments.didactic --preset=smoke --workdir=/tmp/didactic   # ~2 min

Trains behavior SAC on InvertedPendulum at gravity x1.0 and x2.0, picks checkpoints by
return, trains ReDA, OM-SAC and FOCAL (--methods) on D1_train and D2_train, and prints the
return on task 1 with contexts from D1_test and d(phi) of Eq. 8 (mean ± std over seeds);
draws Figure 2 with the `viz` extra. Everything lands in --workdir; rerunning resumes.
"""
from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

from reda_jax.didactic import METHODS, didactic_data, draw_figure, format_table, run_method
from reda_jax.run_info import quiet_logs

_PRESET = flags.DEFINE_enum("preset", "default", ["default", "smoke"],
                            "default: the sizes below (~20 min on 2 cores); smoke: seconds.")
_METHODS = flags.DEFINE_list("methods", ["reda", "om_sac", "focal"],
                             "Methods to compare (any context-based algo).")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", None, "Seeds (vmapped); default: the preset's.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/didactic", "Output directory.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [m for m in _METHODS.value if m not in METHODS]
    if bad:
        raise app.UsageError(f"--methods: {bad} not context-based methods; valid: {METHODS}")
    quiet_logs()
    workdir = Path(_WORKDIR.value)
    train, test, info = didactic_data(workdir, _PRESET.value)
    rows = [run_method(m, _PRESET.value, _NUM_SEEDS.value, workdir, train, test,
                       _PROGRESS.value) for m in _METHODS.value]
    table = format_table(rows, info)
    (workdir / "didactic.md").write_text(table + "\n")
    (workdir / "didactic.json").write_text(json.dumps({"rows": rows, "data": info}, indent=1))
    print("\nDidactic example (InvertedPendulum, gravity x1.0 = task 1, x2.0 = task 2), "
          "mean ± std over seeds:\n" + table)
    if draw_figure(rows, workdir / "figure2.png"):
        print(f"figure: {workdir / 'figure2.png'}")


if __name__ == "__main__":
    app.run(main)
