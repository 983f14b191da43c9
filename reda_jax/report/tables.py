"""The paper's Tables 1-5 from grouped runs (`runs.group_runs`), next to the paper's
numbers: layouts, markdown, CSV, the return per task and `make_report` (what
`python -m experiments.tables` runs; the cells are described there).

Length: the table layouts and their two output formats (markdown, CSV) read the same
`Table` records; apart, each half would import the other's private helpers."""
from __future__ import annotations

import csv
import dataclasses
import io
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from reda_jax.configs import DEFAULT_NUM_MODELS, PROTOCOLS
from reda_jax.report import paper_results as paper
from reda_jax.report.runs import Group, GroupKey, archive_runs, find_runs, group_runs
from reda_jax.validate import InputError

@dataclasses.dataclass(frozen=True)
class Stat:
    """A cell: mean and population std (the paper's ±) over the pooled seeds, n of them, and
    the 95% t-interval of the mean [lo, hi] (nan with one seed)."""

    mean: float
    std: float
    n: int
    lo: float = float("nan")
    hi: float = float("nan")

    @staticmethod
    def of(values: Sequence[float]) -> "Stat | None":
        from reda_jax.report.plots import mean_interval
        v = np.asarray(values, np.float64)
        if v.size == 0:
            return None
        _, lo, hi = mean_interval(v)
        return Stat(float(v.mean()), float(v.std()), int(v.size), float(lo), float(hi))


@dataclasses.dataclass
class Row:
    label: str
    task_set: str
    num_checkpoints: int
    protocol: str
    ours: dict[str, Stat | None]
    paper: dict[str, paper.PaperCell | None]


@dataclasses.dataclass
class Table:
    name: str              # "table1"
    title: str
    caption: str
    columns: tuple[str, ...]
    column_labels: dict[str, str]
    rows: list[Row]

    @property
    def protocols(self) -> list[str]:
        out: list[str] = []
        for r in self.rows:
            if r.protocol not in out:
                out.append(r.protocol)
        return out

    def averages(self, protocol: str | None = None
                 ) -> dict[str, tuple[float | None, float | None, int]]:
        """Per column: (our mean of row means, the paper's mean over the same rows or None
        if the paper lacks one of them, number of rows), over the rows of `protocol`
        (default: the table's only protocol)."""
        if protocol is None:
            if len(self.protocols) > 1:
                raise ValueError(f"{self.name} has rows of several protocols: pass protocol=")
            protocol = self.protocols[0] if self.protocols else None
        out = {}
        for c in self.columns:
            rows = [r for r in self.rows if r.ours.get(c) is not None and r.protocol == protocol]
            if not rows:
                out[c] = (None, None, 0)
                continue
            ours = float(np.mean([r.ours[c].mean for r in rows]))
            papers = [r.paper.get(c) for r in rows]
            theirs = (float(np.mean([p.mean for p in papers]))
                      if all(p is not None for p in papers) else None)
            out[c] = (ours, theirs, len(rows))
        return out


def _row_order(keys: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    order = {t: i for i, t in enumerate(paper.PAPER_TASK_SETS)}
    return sorted(set(keys), key=lambda k: (order.get(k[0], len(order)), k[0], k[1]))


def _label(task_set: str, k: int) -> str:
    try:
        return paper.row_name(task_set, k)
    except ValueError:
        return f"{task_set}-{k}"


_STD_NOTE = ("Cells: ours = mean ± std over seeds (population std) of each seed's average "
             "return over all tasks of the task set (train and unseen), [95% t-interval of "
             "the mean], (n) = seeds pooled over runs and data collections (the Runs table "
             "names them); paper = the paper's number for the row ('–': none).")


def method_table(name: str, groups: Mapping[GroupKey, Group]) -> Table:
    """Tables 1-4: rows = the (task set, checkpoints) present for any of the table's
    methods (default number of models), columns = the paper's methods."""
    spec = paper.TABLES[name]
    protocol = spec.protocol
    columns = (paper.SANITY_METHODS[0],) + tuple(spec.columns) + paper.SANITY_METHODS[1:]
    # Tables 3-4 show a row only where an ablation ran (not for every ReDA run).
    defining = [m for m in spec.columns if m != "reda"] if name in ("table3", "table4") \
        else spec.columns
    present = [(ts, k) for (ts, k, m, n) in groups if m in defining
               and n == DEFAULT_NUM_MODELS]
    rows = []
    for ts, k in _row_order(present):
        label = _label(ts, k)
        ours = {}
        for m in columns:
            g = groups.get((ts, k, m, DEFAULT_NUM_MODELS))
            ours[m] = Stat.of(g.per_seed(protocol)) if g else None
        rows.append(Row(label, ts, k, protocol,
                        ours, {m: paper.lookup(name, label, m) for m in columns}))
    plabel = paper.PROTOCOL_LABELS[protocol]
    caption = f"{spec.caption}. Protocol: {plabel}."
    if name in ("table3", "table4"):
        caption += (" (The paper prints these ablations without a protocol; they are "
                    "off-policy numbers: its ReDA column equals Table 2's.)")
    if spec.average:
        caption += (" Paper's printed Average over its 21 rows: " + ", ".join(
            f"{paper.METHOD_LABELS[m]} {v:.1f}" for m, v in spec.average.items()) + ".")
    caption += (" BC (no context) and Oracle (SAC+BC given the true task's multiplier) are "
                "our sanity floor and ceiling; the paper has no such columns.")
    return Table(name, f"Table {spec.number}", caption + " " + _STD_NOTE, columns,
                 {m: paper.METHOD_LABELS[m] for m in columns}, rows)


def models_table(groups: Mapping[GroupKey, Group]) -> Table:
    """Table 5: ReDA with different numbers of dynamics models; one row per (task set,
    checkpoints) that has a non-default number of models, and per protocol."""
    spec = paper.TABLES["table5"]
    counts = sorted({int(c) for c in spec.columns} | {n for (_, _, m, n) in groups if m == "reda"})
    present = [(ts, k) for (ts, k, m, n) in groups if m == "reda" and n != DEFAULT_NUM_MODELS]
    columns = tuple(str(n) for n in counts)
    rows = []
    for ts, k in _row_order(present):
        label = _label(ts, k)
        for protocol in PROTOCOLS:
            ours = {}
            for c in columns:
                g = groups.get((ts, k, "reda", int(c)))
                ours[c] = Stat.of(g.per_seed(protocol)) if g else None
            rows.append(Row(f"{label} ({paper.PROTOCOL_LABELS[protocol]})", ts, k, protocol,
                            ours, {c: paper.lookup("table5", label, c, protocol)
                                   for c in columns}))
    caption = (f"{spec.caption} (ReDA; {DEFAULT_NUM_MODELS} models is the default, the ReDA "
               "column of Tables 1-2). Protocol: per row. " + _STD_NOTE)
    return Table("table5", "Table 5", caption, columns,
                 {c: f"{c} model{'s' if c != '1' else ''}" for c in columns}, rows)


def build_tables(groups: Mapping[GroupKey, Group]) -> list[Table]:
    return [method_table(n, groups) for n in ("table1", "table2", "table3", "table4")] + [
        models_table(groups)]


def _fmt_ours(s: Stat | None, precision: int = 1) -> str:
    if s is None:
        return "–"
    ci = f" [{s.lo:.{precision}f}, {s.hi:.{precision}f}]" if s.n > 1 else ""
    return f"{s.mean:.{precision}f} ± {s.std:.{precision}f}{ci} ({s.n})"


def _fmt_paper(c: paper.PaperCell | None, precision: int = 1) -> str:
    return "–" if c is None else c.format(precision)


def format_markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", table.caption, ""]
    if not table.rows:
        return "\n".join(lines + ["(no runs for this table)", ""])
    lines.append("| Task Type | " + " | ".join(
        f"{table.column_labels[c]} (ours / paper)" for c in table.columns) + " |")
    lines.append("|---|" + "---|" * len(table.columns))
    for r in table.rows:
        lines.append(f"| {r.label} | " + " | ".join(
            f"{_fmt_ours(r.ours[c])} / {_fmt_paper(r.paper[c])}" for c in table.columns) + " |")
    def avg_cell(ours, theirs, n):
        if ours is None:
            return "–"
        return (f"{ours:.1f} [{n} row{'s' if n != 1 else ''}] / "
                f"{'–' if theirs is None else f'{theirs:.1f}'}")

    for p in table.protocols:
        avg = table.averages(p)
        label = ("Average" if len(table.protocols) == 1
                 else f"Average ({paper.PROTOCOL_LABELS[p]})")
        lines.append(f"| {label} | " + " | ".join(avg_cell(*avg[c]) for c in table.columns)
                     + " |")
    return "\n".join(lines + [""])


CSV_FIELDS = ("table", "row", "task_set", "num_checkpoints", "protocol", "column", "label",
              "ours_mean", "ours_std", "ours_ci_lo", "ours_ci_hi", "num_seeds", "num_rows",
              "paper_mean", "paper_std")


def _ci(s: Stat | None, bound: str):
    return "" if s is None or s.n < 2 else getattr(s, bound)


def _num(x):
    return "" if x is None else x


def csv_rows(table: Table) -> list[dict]:
    out = []
    for r in table.rows:
        for c in table.columns:
            s, p = r.ours[c], r.paper[c]
            out.append({"table": table.name, "row": r.label, "task_set": r.task_set,
                        "num_checkpoints": r.num_checkpoints, "protocol": r.protocol,
                        "column": c, "label": table.column_labels[c],
                        "ours_mean": _num(s and s.mean), "ours_std": _num(s and s.std),
                        "ours_ci_lo": _ci(s, "lo"), "ours_ci_hi": _ci(s, "hi"),
                        "num_seeds": _num(s and s.n), "num_rows": "",
                        "paper_mean": _num(p and p.mean), "paper_std": _num(p and p.std)})
    for p in table.protocols:
        for c, (ours, theirs, n) in table.averages(p).items():
            out.append({"table": table.name, "row": "Average", "task_set": "",
                        "num_checkpoints": "", "protocol": p,
                        "column": c, "label": table.column_labels[c],
                        "ours_mean": _num(ours), "ours_std": "", "ours_ci_lo": "",
                        "ours_ci_hi": "", "num_seeds": "",
                        "num_rows": n, "paper_mean": _num(theirs), "paper_std": ""})
    return out


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_rows(table))
    return buf.getvalue()


# ----------------------------------------------------------------------------------------
# Per-task breakdown.

def _unseen_tasks(task_set: str) -> set[str]:
    from reda_jax.envs.tasks import TASK_SETS
    ts = TASK_SETS.get(task_set)
    return {t.name for t in ts.test_tasks} if ts else set()


def per_task_tables(groups: Mapping[GroupKey, Group]) -> tuple[str, list[dict]]:
    """Markdown and CSV rows: for every (task set, checkpoints), protocol and task, the
    return of every method (default number of models) as mean ± std (n) over seeds."""
    order = list(paper.METHOD_LABELS)
    lines, rows = [], []
    for ts, k in _row_order((ts, k) for (ts, k, _, _) in groups):
        gs = {m: g for (t, kk, m, n), g in groups.items()
              if t == ts and kk == k and n == DEFAULT_NUM_MODELS}
        if not gs:
            continue
        methods = sorted(gs, key=lambda m: (order.index(m) if m in order else len(order), m))
        tasks: list[str] = []
        for g in gs.values():
            tasks += [t for t in g.tasks if t not in tasks]
        unseen = _unseen_tasks(ts)
        for protocol in PROTOCOLS:
            lines += [f"### {_label(ts, k)}, {paper.PROTOCOL_LABELS[protocol]} protocol", "",
                      "| task | " + " | ".join(paper.METHOD_LABELS.get(m, m) for m in methods)
                      + " |", "|---|" + "---|" * len(methods)]
            entries = [(f"{t} (unseen)" if t in unseen else t,
                        lambda g, t=t: g.per_task(protocol, t)) for t in tasks] + [
                (f"{name} (avg)", lambda g, grp=grp: g.per_group(protocol, grp))
                for grp, name in (("train_tasks", "train tasks"),
                                  ("unseen_tasks", "unseen tasks"))] + [
                ("all tasks (avg)", lambda g: g.per_seed(protocol))]
            for label, get in entries:
                stats = {m: Stat.of(get(gs[m])) for m in methods}
                if all(s is None for s in stats.values()):
                    continue
                lines.append(f"| {label} | " + " | ".join(_fmt_ours(stats[m]) for m in methods)
                             + " |")
                for m in methods:
                    s = stats[m]
                    rows.append({"task_set": ts, "num_checkpoints": k, "protocol": protocol,
                                 "task": label, "method": m, "mean": _num(s and s.mean),
                                 "std": _num(s and s.std), "num_seeds": _num(s and s.n)})
            lines.append("")
    return "\n".join(lines), rows


# ----------------------------------------------------------------------------------------
# The app.

def runs_summary(groups: Mapping[GroupKey, Group], root: Path) -> str:
    """Per group: its seeds, and each data collection's mean return (all tasks, on- / off-
    policy), so that a reader sees how far the collections pooled in a cell disagree."""
    lines = ["### Runs", "", "| task set | ckpt | method | models | seeds | mean per data "
             "collection (on- / off-policy) | run directories |", "|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3])):
        g = groups[key]
        n = max((len(v) for v in [g.per_seed(p) for p in PROTOCOLS]), default=0)
        dirs = ", ".join(str(_rel(r.path, root)) for r in g.runs)
        per = []
        for c in g.collections:
            sub = Group(key, [r for r in g.runs if r.collection == c])
            means = " / ".join(f"{np.mean(v):.1f}" if len(v) else "–"
                               for v in (sub.per_seed(p) for p in PROTOCOLS))
            per.append(f"{'unrecorded' if c is None else c}: {means}")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {n} | {'; '.join(per)} "
                     f"| {dirs} |")
    return "\n".join(lines + [""])


def _rel(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def make_report(runs_dir: str | Path, out_dir: str | Path | None = None,
                fmt: str = "both", per_task: bool = True, echo=print,
                archive: bool = False) -> list[Table]:
    """Reads the runs, prints the markdown tables and writes the files; returns the tables.
    archive: also copy every run's results.json and config.json to <out>/runs (paths as
    under runs_dir), so that make_report(<out>/runs) prints the same tables later."""
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir else runs_dir
    warnings: list[str] = []

    def warn(msg):
        warnings.append(msg)
        print(f"warning: {msg}", file=sys.stderr)

    runs = find_runs(runs_dir, warn)
    if not runs:
        raise InputError(f"--runs: no results.json under {runs_dir}" + (
            "" if Path(runs_dir).is_dir() else " (no such directory)"))
    if archive:
        try:
            archive_runs(runs, runs_dir, out / "runs")
        except ValueError as e:
            raise InputError(f"--archive: {e}; give an --out outside --runs") from None
    groups = group_runs(runs, warn)
    tables = build_tables(groups)
    md = "\n".join([f"## Results of {len(runs)} runs under {runs_dir} vs. the ReDA paper", ""]
                   + [format_markdown(t) for t in tables] + [runs_summary(groups, runs_dir)])
    if warnings:
        md += "\n### Warnings\n\n" + "\n".join(f"- {w}" for w in warnings) + "\n"
    echo(md)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    if fmt in ("markdown", "both"):
        files["tables.md"] = md
    if fmt in ("csv", "both"):
        files.update({f"{t.name}.csv": to_csv(t) for t in tables})
    if per_task:
        text, rows = per_task_tables(groups)
        if fmt in ("markdown", "both"):
            files["per_task.md"] = ("## Return per task (mean ± std [95% t-interval] "
                                    "(seeds))\n\n" + text)
        if fmt in ("csv", "both") and rows:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            files["per_task.csv"] = buf.getvalue()
    for name, text in files.items():
        (out / name).write_text(text)
    echo(f"wrote {', '.join(files)} to {out}")
    return tables
