"""The paper's Tables 1-5 from finished run directories, next to the paper's numbers.

  python -m experiments.tables --runs=runs                       # print; write runs/tables.md + CSVs
  python -m experiments.tables --runs=runs --out=reports --format=csv
  python -m experiments.tables --runs=runs/hopper-gravity --out=docs/x --archive  # + the inputs

Walks --runs recursively for results.json (written by experiments.train) and groups the runs
by (task_set, num_checkpoints, method, num_models). Runs of one group with different base
seeds are pooled: their per-seed values are concatenated (a base seed seen twice in a group is
counted once). A cell is mean ± std over the pooled seeds (population std, ddof=0, as in
reda_jax.eval.protocols.summarize) of each seed's average return over all tasks of the task
set (train and unseen multipliers: protocols[p]["all_tasks"]["per_seed"]), shown as
"ours (number of seeds) / paper".

* Table 1 / Table 2: OM-BC, OM-SAC, CORRO, FOCAL, PromptDT, ReDA; on- / off-policy protocol.
* Table 3 (w/o model, w/o adv., ReDA) and Table 4 (w/o UP, w/o TC, ReDA): off-policy
  protocol, as in the paper (its ReDA column repeats Table 2's means).
* Table 5: ReDA with 1 / 3 / 5 dynamics models, one row per protocol.

Tables 1-4 use the runs with the default number of dynamics models. Rows appear only for the
task sets (and checkpoint counts) that have runs; the Average row averages our row means over
the rows a column has, and the paper's numbers over the same rows. Writes tables.md,
table1.csv ... table5.csv (and per_task.md / per_task.csv, the return per task) to --out
(default: --runs).
"""
from __future__ import annotations

from absl import flags

from reda_jax.report.tables import make_report
from reda_jax.validate import InputError, run_app, writable_dir


def define_flags() -> None:
    """Defined on demand (not at import) so that tests can import several apps at once."""
    flags.DEFINE_string("runs", "runs", "Directory searched recursively for results.json.")
    flags.DEFINE_string("out", None, "Where to write tables.md and the CSVs; default --runs.")
    flags.DEFINE_enum("format", "both", ["markdown", "csv", "both"], "Files to write.")
    flags.DEFINE_bool("per_task", True, "Also write per_task.md / per_task.csv.")
    flags.DEFINE_bool("archive", False, "Also copy every run's results.json and config.json "
                      "to <out>/runs (no checkpoints or data: small enough to commit), so that "
                      "--runs=<out>/runs prints the same tables where the runs are gone.")


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    f = flags.FLAGS
    writable_dir("out", f.out)
    make_report(f.runs, f.out, f["format"].value, f.per_task, archive=f.archive)


if __name__ == "__main__":
    define_flags()
    run_app(main)
