"""The figures of README.md and docs/results.md, from archived inputs in git (no training):

  python -m experiments.report_figures                      # both, into docs/figures
  python -m experiments.report_figures --didactic=runs/didactic/didactic.json   # a new run's

* hopper_gravity1_tables12.png: Tables 1-2 on hopper-gravity-1 (`mini`), each method's
  average return over all 5 tasks under both protocols, mean and 95% t-interval over the
  pooled seeds x collections, from the runs `experiments.tables --archive` kept
  (--tables_runs): the numbers of the tables printed from the same runs.
* didactic_figure2.png: the didactic example's Figure 2, (a) task-1 return with D1_test
  contexts and (b) d(phi), from --didactic: a run's didactic.json (per-seed values, as
  `experiments.didactic` writes it) or an archived table (cells {"mean", "lo", "hi"}).

Needs the `viz` extra (matplotlib).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags

from reda_jax.report import paper_results as paper
from reda_jax.report import plots
from reda_jax.validate import InputError, run_app, writable_dir

TABLES12_METHODS = ("bc",) + paper.MAIN_METHODS + ("oracle",)


def define_flags() -> None:
    """Defined on demand (not at import) so that tests can import several apps at once."""
    flags.DEFINE_string("tables_runs", "docs/runs/hopper-gravity1-mini-tables/runs",
                        "Archived runs of hopper-gravity-1 (experiments.tables --archive); "
                        "'' skips the figure.")
    flags.DEFINE_string("didactic", "docs/runs/didactic-figure2/table.json",
                        "A didactic.json of experiments.didactic, or an archived table; "
                        "'' skips the figure.")
    flags.DEFINE_string("out", "docs/figures", "Output directory.")


def tables12_summary(runs_dir: str | Path) -> tuple[dict, str]:
    """({method label: {protocol: (mean, lo, hi)}}, the row's name) of the Tables 1-2
    methods found under runs_dir (one task set and checkpoint count; default models)."""
    from reda_jax.configs import DEFAULT_NUM_MODELS
    from reda_jax.report.runs import find_runs, group_runs
    runs = find_runs(runs_dir)
    if not runs:
        raise InputError(f"--tables_runs: no results.json under {runs_dir}")
    groups = group_runs(runs)
    settings = sorted({(ts, k) for (ts, k, _, _) in groups})
    if len(settings) != 1:
        raise InputError(f"--tables_runs: runs of one task set and checkpoint count "
                         f"expected, found {settings}")
    ts, k = settings[0]
    out = {}
    for m in TABLES12_METHODS:
        g = groups.get((ts, k, m, DEFAULT_NUM_MODELS))
        if g is not None:
            out[paper.METHOD_LABELS[m]] = {p: plots.cell(g.per_seed(p).tolist())
                                           for p in paper.PROTOCOL_LABELS}
    try:
        name = paper.row_name(ts, k)
    except ValueError:
        name = f"{ts}-{k}"
    return out, name


def didactic_rows(path: str | Path) -> tuple[list[dict], str]:
    """(rows, caption) of a didactic.json or an archived didactic table."""
    record = json.loads(Path(path).read_text())
    if "rows" not in record:
        raise InputError(f"--didactic: {path} has no 'rows'")
    return record["rows"], record.get("caption", "")


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    f = flags.FLAGS
    writable_dir("out", f.out)
    out = Path(f.out)
    try:
        if f.tables_runs:
            summary, row = tables12_summary(f.tables_runs)
            path = plots.plot_protocol_bars(
                summary, paper.PROTOCOL_LABELS, out / "hopper_gravity1_tables12.png",
                title=f"Tables 1-2, {row}, mini preset: mean and 95% interval over seeds x "
                      "collections\n(the paper's ReDA: 2069.6 on-policy, 1674.5 off-policy)")
            print(f"wrote {path} ({', '.join(summary)})")
        if f.didactic:
            if not Path(f.didactic).exists():
                raise InputError(f"--didactic: no such file {f.didactic}")
            from reda_jax.report.didactic import METHOD_LABELS
            rows, caption = didactic_rows(f.didactic)
            path = plots.plot_figure2(rows, METHOD_LABELS, out / "didactic_figure2.png",
                                      title=caption)
            print(f"wrote {path}")
    except ImportError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    define_flags()
    run_app(main)
