"""The paper's figures from finished run directories: t-SNE of task representations
(Figures 3 and 6) and per-task learning curves (Figures 7 and 8).

  python -m experiments.plots --runs=runs                      # everything, into runs/plots
  python -m experiments.plots --runs=runs --task_sets=walker2d-damping \\
      --methods=reda,reda_wo_model --notsne                     # Figures 7-8

Walks --runs for results.json and groups the runs like experiments.tables (runs of one
method with different base seeds are pooled). For every (task set, checkpoints) it writes to
<out>/<task_set>-ckpt<k>/:

* tsne.png: one panel per method that wrote embeddings.npz, the task representations of
  seed --tsne_seed_index coloured by task (triangles: unseen tasks); tsne.npz: the 2-D
  coordinates of every seed, `coords_<method>` (S, T, n, 2), with `methods`, `task_names`,
  `train_task`. One t-SNE per seed (every seed's encoder has its own space).
* curves_<protocol>_train.png / curves_<protocol>_unseen.png: return vs epoch per task from
  eval_history.jsonl, every method overlaid, mean over seeds with a 95% t-interval (no band
  with one seed).

Needs the `viz` extra (matplotlib, scikit-learn).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from absl import flags

from reda_jax.report.runs import Group, find_runs, group_runs
from reda_jax.configs import DEFAULT_NUM_MODELS, PROTOCOLS
from reda_jax.report import paper_results as paper
from reda_jax.report import plots
from reda_jax.validate import InputError, at_least, run_app, writable_dir


def method_id(method: str, num_models: int) -> str:
    return method if num_models == DEFAULT_NUM_MODELS else f"{method}_models{num_models}"


def method_label(mid: str) -> str:
    base, _, n = mid.partition("_models")
    label = paper.METHOD_LABELS.get(base, base)
    if base.startswith("reda_"):
        label = f"ReDA {label}"
    return f"{label} ({n} model{'s' if n != '1' else ''})" if n else label


def _setting_label(task_set: str, k: int) -> str:
    try:
        return paper.row_name(task_set, k)
    except ValueError:
        return f"{task_set}-{k}"


def by_setting(groups: Mapping[tuple, Group], methods: Sequence[str] | None = None,
               task_sets: Sequence[str] | None = None) -> dict[tuple[str, int], dict[str, Group]]:
    """{(task_set, k): {method id: group}}, filtered by method ids / task sets."""
    order = list(paper.METHOD_LABELS)
    out: dict[tuple[str, int], dict[str, Group]] = {}
    for (ts, k, m, n), g in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1], order.index(kv[0][2]) if kv[0][2] in order else len(order),
            kv[0][2], kv[0][3])):
        mid = method_id(m, n)
        if (methods and mid not in methods) or (task_sets and ts not in task_sets):
            continue
        out.setdefault((ts, k), {})[mid] = g
    return out


def load_embeddings(group: Group):
    """The pooled embeddings of a group's runs: (z (S, T, n, Z), task_names, train_task),
    or None if no run wrote embeddings.npz. Runs are concatenated along seeds (windows cut
    to the smallest n)."""
    zs, names, train = [], None, None
    for run in group.runs:
        path = run.path / "embeddings.npz"
        if not path.exists():
            continue
        with np.load(path) as f:
            z = np.asarray(f["z"], np.float32)
            tn = [str(t) for t in f["task_names"]]
            tt = np.asarray(f["train_task"], bool)
        if names is None:
            names, train = tn, tt
        elif tn != names:
            print(f"warning: {path} has tasks {tn}, expected {names}; skipped", file=sys.stderr)
            continue
        zs.append(z)
    if not zs:
        return None
    n = min(z.shape[2] for z in zs)
    return np.concatenate([z[:, :, :n] for z in zs], axis=0), names, train


def group_curves(group: Group, protocol: str, tasks: Sequence[str]):
    """{task: (epochs, per-seed (E, S))} of a group, pooled over its runs."""
    histories = [plots.load_history(r.path / "eval_history.jsonl") for r in group.runs
                 if (r.path / "eval_history.jsonl").exists()]
    out = {}
    for task in tasks:
        epochs, values = plots.pool_curves([plots.curve(h, protocol, task) for h in histories])
        if len(epochs):
            out[task] = (epochs, values)
    return out


def _task_split(task_set: str, gs: Mapping[str, Group]):
    """(train task names, unseen task names) of the tasks the runs evaluated, split by the
    task set's train multipliers (all "train" if the task set is unknown)."""
    from reda_jax.envs.tasks import TASK_SETS
    names: list[str] = []
    for g in gs.values():
        names += [t for t in g.tasks if t not in names]
    ts = TASK_SETS.get(task_set)
    if ts is None:
        return names, []
    train = {t.name for t in ts.train_tasks}
    if not train & set(names):
        print(f"warning: the runs of {task_set} evaluated tasks {names}, none of them a "
              f"training task of the task set; all plotted as training tasks", file=sys.stderr)
        return names, []
    return [t for t in names if t in train], [t for t in names if t not in train]


def make_plots(runs_dir: str | Path, out_dir: str | Path | None = None,
               methods: Sequence[str] | None = None, task_sets: Sequence[str] | None = None,
               tsne: bool = True, curves: bool = True, perplexity: float = 30.0,
               tsne_seed_index: int = 0, confidence: float = 0.95, tsne_max_iter: int = 1000,
               echo=print) -> list[Path]:
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir else runs_dir / "plots"
    runs = find_runs(runs_dir)
    if not runs:
        raise InputError(f"--runs: no results.json under {runs_dir}" + (
            "" if Path(runs_dir).is_dir() else " (no such directory)"))
    written: list[Path] = []
    for (ts, k), gs in by_setting(group_runs(runs), methods, task_sets).items():
        setting = _setting_label(ts, k)
        target = out / f"{ts}-ckpt{k}"
        labels = {m: method_label(m) for m in gs}
        if tsne:
            panels, names, train = {}, None, None
            for mid, g in gs.items():
                emb = load_embeddings(g)
                if emb is None:
                    continue
                z, tn, tt = emb
                if names is None:
                    names, train = tn, tt
                elif tn != names:
                    continue
                echo(f"t-SNE {setting} {mid}: {z.shape[0]} seeds x {z.shape[1]} tasks x "
                     f"{z.shape[2]} windows")
                panels[mid] = plots.tsne_coords(z, perplexity=perplexity,
                                                max_iter=tsne_max_iter)
            if panels:
                target.mkdir(parents=True, exist_ok=True)
                np.savez(target / "tsne.npz", methods=np.asarray(list(panels)),
                         labels=np.asarray([labels[m] for m in panels]),
                         task_names=np.asarray(names), train_task=np.asarray(train),
                         **{f"coords_{m}": c for m, c in panels.items()})
                written.append(target / "tsne.npz")
                written.append(plots.plot_tsne(
                    panels, names, train, target / "tsne.png", seed_index=tsne_seed_index,
                    labels=labels, title=f"Task representations (t-SNE), {setting}, "
                    f"seed {tsne_seed_index}"))
        if curves:
            train_tasks, unseen_tasks = _task_split(ts, gs)
            for protocol in PROTOCOLS:
                data = {mid: group_curves(g, protocol, train_tasks + unseen_tasks)
                        for mid, g in gs.items()}
                data = {m: c for m, c in data.items() if c}
                if not data:
                    continue
                for part, tasks in (("train", train_tasks), ("unseen", unseen_tasks)):
                    if not tasks:
                        continue
                    written.append(plots.plot_learning_curves(
                        data, tasks, target / f"curves_{protocol}_{part}.png",
                        title=f"{setting}, {'training' if part == 'train' else 'unseen'} "
                              f"tasks, {paper.PROTOCOL_LABELS[protocol]} protocol",
                        confidence=confidence, labels=labels,
                        task_labels={t: plots.task_label(t) for t in tasks}))
    for p in written:
        echo(f"wrote {p}")
    return written


def define_flags() -> None:
    """Defined on demand (not at import) so that tests can import several apps at once."""
    flags.DEFINE_string("runs", "runs", "Directory searched recursively for results.json.")
    flags.DEFINE_string("out", None, "Output directory; default <runs>/plots.")
    flags.DEFINE_list("methods", [], "Method ids to plot (e.g. reda,reda_wo_model; a "
                      "non-default number of models is reda_models<n>); default all.")
    flags.DEFINE_list("task_sets", [], "Task sets to plot; default all.")
    flags.DEFINE_bool("tsne", True, "t-SNE figures (Figures 3, 6).")
    flags.DEFINE_bool("curves", True, "Learning curves (Figures 7, 8).")
    flags.DEFINE_float("perplexity", 30.0, "t-SNE perplexity.")
    flags.DEFINE_integer("tsne_seed_index", 0, "Which seed's representations tsne.png shows.")
    flags.DEFINE_float("confidence", 0.95, "Confidence level of the learning-curve bands.")


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    f = flags.FLAGS
    if not 0 < f.confidence < 1:
        raise InputError(f"--confidence: must be in (0, 1), got {f.confidence}")
    if not (math.isfinite(f.perplexity) and f.perplexity > 0):
        raise InputError(f"--perplexity: must be a finite number > 0, got {f.perplexity}")
    at_least("tsne_seed_index", f.tsne_seed_index, 0)
    writable_dir("out", f.out)
    try:
        make_plots(f.runs, f.out, f.methods or None, f.task_sets or None, f.tsne, f.curves,
                   f.perplexity, f.tsne_seed_index, f.confidence)
    except ImportError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    define_flags()
    run_app(main)
