"""Figures of the paper from run outputs: t-SNE of task representations (Figures 3, 6) and
learning curves with 95% intervals over seeds (Figures 7, 8). Pure functions; the app is
experiments/plots.py.

matplotlib and scikit-learn are the optional `viz` extra (pip install -e '.[viz]'); they are
imported inside the functions that need them (Agg backend, no display).

Public API::

    t_critical(df, confidence=0.95) -> float                  two-sided Student-t quantile
    mean_interval(per_seed, confidence=0.95) -> (mean, lo, hi)  over the last axis
    load_history(path) -> list[dict];  curve(history, protocol, task) -> (epochs, (E, S))
    pool_curves([(epochs, per_seed), ...]) -> (common epochs, (E, sum S))
    plot_learning_curves({method: {task: (epochs, per_seed)}}, tasks, path, title=...)
    cell(per-seed list | {"mean", "lo", "hi"} | None) -> (mean, lo, hi) | None
    plot_figure2(rows, labels, path)       the didactic Figure 2 from table rows
    plot_protocol_bars({method: {protocol: (mean, lo, hi)}}, protocol labels, path)
    tsne_coords(z (S, T, n, Z), perplexity=30, seed=0) -> (S, T, n, 2)   (one t-SNE per seed)
    flatten_points(coords) -> (xy (N, 2), seed (N,), task (N,), window (N,))
    task_styles(task_names, train_task) -> [{"label", "color", "marker", "unseen"}]
    plot_tsne({method: coords}, task_names, train_task, path, seed_index=0, title=...)
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

VIZ_HINT = "pip install -e '.[viz]'  (matplotlib, scikit-learn)"

# Two-sided 95% critical values of Student's t (the 0.975 quantile) by degrees of freedom;
# used when scipy is missing. Between the tabulated df above 30 the quantile is interpolated
# linearly in 1/df (exact to ~1e-3).
_T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646,
         8: 2.3060, 9: 2.2622, 10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448,
         15: 2.1314, 16: 2.1199, 17: 2.1098, 18: 2.1009, 19: 2.0930, 20: 2.0860, 21: 2.0796,
         22: 2.0739, 23: 2.0687, 24: 2.0639, 25: 2.0595, 26: 2.0555, 27: 2.0518, 28: 2.0484,
         29: 2.0452, 30: 2.0423, 40: 2.0211, 60: 2.0003, 120: 1.9799, math.inf: 1.9600}


TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
         "#7f7f7f", "#bcbd22", "#17becf")
"""matplotlib's tab10 colours (kept here so that styles need no matplotlib)."""


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"plotting needs matplotlib: {VIZ_HINT}") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _t975_table(df: float) -> float:
    if df in _T975:
        return _T975[df]
    keys = sorted(_T975)
    hi = next(k for k in keys if k > df)
    lo = max(k for k in keys if k < df)
    x, x0, x1 = 1.0 / df, 1.0 / lo, (0.0 if hi == math.inf else 1.0 / hi)
    return _T975[lo] + (_T975[hi] - _T975[lo]) * (x0 - x) / (x0 - x1)


def t_critical(df: float, confidence: float = 0.95, use_scipy: bool = True) -> float:
    """The two-sided critical value t_{(1+confidence)/2, df}: scipy when available, otherwise
    (95% only) a table."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if use_scipy:
        try:
            from scipy import stats
            return float(stats.t.ppf(0.5 + confidence / 2.0, df))
        except ImportError:
            pass
    if abs(confidence - 0.95) > 1e-12:
        raise ImportError(f"a {confidence:.0%} interval needs scipy (only 95% is tabulated)")
    return _t975_table(df)


def mean_interval(per_seed, confidence: float = 0.95):
    """Mean over the last axis (seeds) and the t-interval mean ± t * s / sqrt(n) with the
    sample std s (ddof=1); lo = hi = nan with a single seed."""
    x = np.asarray(per_seed, np.float64)
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan.copy()
    half = t_critical(n - 1, confidence) * x.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


# ----------------------------------------------------------------------------------------
# Learning curves.

def load_history(path: str | Path) -> list[dict]:
    """eval_history.jsonl: one {"epoch", "on_policy", "off_policy"} record per evaluation;
    for an epoch evaluated twice (a resumed run) the last record counts; a malformed line
    (e.g. one being written) is skipped."""
    by_epoch = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            try:
                rec = json.loads(line)
                by_epoch[int(rec["epoch"])] = rec
            except (ValueError, KeyError, TypeError):
                continue
    return [by_epoch[e] for e in sorted(by_epoch)]


def curve(history: Sequence[Mapping], protocol: str, task: str):
    """(epochs (E,), per-seed returns (E, S)) of one task; `task` may also be a group
    ("all_tasks", "train_tasks", "unseen_tasks"). Records lacking it are skipped."""
    epochs, values = [], []
    for rec in history:
        summary = rec.get(protocol)
        if not summary:
            continue
        entry = summary["tasks"].get(task) if task in summary.get("tasks", {}) else summary.get(task)
        if entry is None:
            continue
        epochs.append(int(rec["epoch"]))
        values.append([float(v) for v in entry["per_seed"]])
    if not values:
        return np.zeros(0, np.int64), np.zeros((0, 0))
    return np.asarray(epochs, np.int64), np.asarray(values, np.float64)


def pool_curves(curves: Sequence[tuple[np.ndarray, np.ndarray]]):
    """Curves of runs with different base seeds -> (the epochs all of them evaluated,
    per-seed values (E, S_1 + S_2 + ...))."""
    curves = [(e, v) for e, v in curves if len(e)]
    if not curves:
        return np.zeros(0, np.int64), np.zeros((0, 0))
    common = sorted(set.intersection(*(set(e.tolist()) for e, _ in curves)))
    cols = []
    for e, v in curves:
        index = {int(x): i for i, x in enumerate(e)}
        cols.append(v[[index[x] for x in common]])
    return np.asarray(common, np.int64), np.concatenate(cols, axis=1)


def plot_learning_curves(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                         tasks: Sequence[str], path: str | Path, title: str = "",
                         confidence: float = 0.95, labels: Mapping[str, str] | None = None,
                         task_labels: Mapping[str, str] | None = None) -> Path:
    """One panel per task: return vs epoch of every method (curves[method][task] =
    (epochs, per-seed (E, S))), the mean over seeds and its `confidence` t-interval as a
    band (none with 1 seed). Writes a PNG to `path`."""
    plt = _require_matplotlib()
    labels = labels or {}
    task_labels = task_labels or {}
    ncols = min(len(tasks), 3) or 1
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    colors = TAB10
    for i, task in enumerate(tasks):
        ax = axes[i // ncols][i % ncols]
        for j, (method, per_task) in enumerate(curves.items()):
            if task not in per_task:
                continue
            epochs, values = per_task[task]
            if not len(epochs):
                continue
            mean, lo, hi = mean_interval(values, confidence)
            c = colors[j % len(colors)]
            n = values.shape[1]
            ax.plot(epochs, mean, color=c, marker="." if len(epochs) < 30 else None,
                    label=f"{labels.get(method, method)} ({n} seed{'s' if n != 1 else ''})")
            if n > 1:
                ax.fill_between(epochs, lo, hi, color=c, alpha=0.2, linewidth=0)
        ax.set_title(task_labels.get(task, task))
        ax.set_xlabel("epoch")
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
    for i in range(len(tasks), nrows * ncols):
        axes[i // ncols][i % ncols].axis("off")
    handles, names = [], []
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4),
                   bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.suptitle(f"{title}\n(mean over seeds, {confidence:.0%} t-interval)" if title
                 else f"mean over seeds, {confidence:.0%} t-interval")
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------
# t-SNE of task representations.

def tsne_coords(z, perplexity: float = 30.0, seed: int = 0, max_iter: int = 1000,
                method: str = "auto") -> np.ndarray:
    """z (S, T, n, Z) -> 2-D coordinates (S, T, n, 2): one t-SNE per policy seed (each
    seed's encoder has its own representation space), over its T * n windows. The
    perplexity is capped at (T * n - 1) / 3 for small inputs; method "auto" is sklearn's
    "exact" up to 300 points per seed (faster there), else "barnes_hut"."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as e:
        raise ImportError(f"t-SNE needs scikit-learn: {VIZ_HINT}") from e
    z = np.asarray(z, np.float32)
    if z.ndim != 4:
        raise ValueError(f"z must be (seeds, tasks, windows, z_dim), got shape {z.shape}")
    S, T, n, _ = z.shape
    out = np.zeros((S, T, n, 2), np.float32)
    for s in range(S):
        x = z[s].reshape(T * n, -1)
        p = float(min(perplexity, max(1.0, (T * n - 1) / 3.0)))
        m = method if method != "auto" else ("exact" if T * n <= 300 else "barnes_hut")
        xy = TSNE(n_components=2, perplexity=p, init="pca", learning_rate="auto",
                  random_state=seed + s, max_iter=max_iter, method=m).fit_transform(x)
        out[s] = xy.reshape(T, n, 2)
    return out


def flatten_points(coords):
    """(S, T, n, 2) -> xy (N, 2) with N = S*T*n and, per point, its seed, task and window."""
    coords = np.asarray(coords)
    S, T, n, _ = coords.shape
    s, t, w = np.meshgrid(np.arange(S), np.arange(T), np.arange(n), indexing="ij")
    return coords.reshape(-1, 2), s.ravel(), t.ravel(), w.ravel()


def task_label(name: str) -> str:
    """"dof_damping_x1.5" -> "dof-damping ×1.5"."""
    m = re.fullmatch(r"(.+)_x([0-9.eE+-]+)", name)
    if not m:
        return name
    return f"{m.group(1).replace('_', '-')} ×{m.group(2)}"


def task_styles(task_names: Sequence[str], train_task: Sequence[bool]) -> list[dict]:
    """A colour per task (tab10, in task order), marker 'o' for training tasks and '^' for
    unseen ones, and a legend label with the multiplier."""
    colors = TAB10
    out = []
    for i, (name, train) in enumerate(zip(task_names, train_task)):
        out.append({"label": task_label(name) + ("" if train else " (unseen)"),
                    "color": colors[i % len(colors)], "marker": "o" if train else "^",
                    "unseen": not bool(train)})
    return out


def plot_tsne(panels: Mapping[str, np.ndarray], task_names: Sequence[str],
              train_task: Sequence[bool], path: str | Path, seed_index: int = 0,
              title: str = "", labels: Mapping[str, str] | None = None) -> Path:
    """One panel per method (panels[method] = coords (S, T, n, 2)): the windows of seed
    `seed_index`, coloured by task, triangles for unseen tasks. Writes a PNG."""
    plt = _require_matplotlib()
    labels = labels or {}
    styles = task_styles(task_names, train_task)
    k = len(panels)
    ncols = min(k, 4) or 1
    nrows = max(1, math.ceil(k / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.6 * nrows), squeeze=False)
    for i, (method, coords) in enumerate(panels.items()):
        ax = axes[i // ncols][i % ncols]
        c = np.asarray(coords)[min(seed_index, len(coords) - 1)]
        for t, st in enumerate(styles):
            ax.scatter(c[t, :, 0], c[t, :, 1], s=8, color=st["color"], marker=st["marker"],
                       alpha=0.7, label=st["label"], linewidths=0)
        ax.set_title(f"({chr(97 + i)}) {labels.get(method, method)}")
        ax.set_xticks([])
        ax.set_yticks([])
    for i in range(k, nrows * ncols):
        axes[i // ncols][i % ncols].axis("off")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), markerscale=2,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.suptitle(title or "t-SNE of task representations")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------
# Bar charts of a results table: mean and 95% interval per method.

Interval = tuple  # (mean, lo, hi); lo / hi may be None (no interval: one sample)


def cell(value) -> Interval | None:
    """A cell of a table to plot: None; per-seed values (list); or {"mean", "lo", "hi"}."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return (float(value["mean"]), value.get("lo"), value.get("hi"))
    mean, lo, hi = mean_interval(np.asarray(list(value), np.float64))
    ok = bool(np.isfinite(lo))
    return float(mean), float(lo) if ok else None, float(hi) if ok else None


def plot_interval_bars(ax, categories: Sequence[str], series: Mapping[str, Sequence],
                       colors: Sequence[str] | None = None, highlight: str | None = None) -> None:
    """Grouped bars on `ax`: one group per category, one bar per series; series[name][i]
    is category i's (mean, lo, hi) or None (no bar). Error bars span [lo, hi]; the
    highlighted category's label is bold."""
    names = list(series)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(categories))
    for j, name in enumerate(names):
        xs, means, err = [], [], [[], []]
        for i, c in enumerate(series[name]):
            if c is None:
                continue
            mean, lo, hi = c
            xs.append(x[i] + (j - (len(names) - 1) / 2) * width)
            means.append(mean)
            err[0].append(np.nan if lo is None else mean - lo)   # nan: no error bar
            err[1].append(np.nan if hi is None else hi - mean)
        ax.bar(xs, means, width, yerr=err, capsize=3, label=name,
               color=(colors[j % len(colors)] if colors else TAB10[j % len(TAB10)]))
    ax.set_xticks(x)
    ax.set_xticklabels(categories, rotation=30, ha="right")
    for label in ax.get_xticklabels():
        if label.get_text() == highlight:
            label.set_fontweight("bold")


def plot_figure2(rows: Sequence[Mapping], labels: Mapping[str, str], path: str | Path,
                 title: str = "") -> Path:
    """The didactic example's Figure 2 from table rows ({"method", "task1_return_test_context",
    "d_phi"}, each cell as `cell` reads it): (a) task-1 return with D1_test contexts,
    (b) d(phi) of Eq. 8; bars = mean, error bars = 95% t-interval."""
    plt = _require_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, panel in ((axes[0], "task1_return_test_context",
                            "(a) return on task 1, D1_test contexts"),
                           (axes[1], "d_phi", "(b) relative representation metric d(φ)")):
        shown = [("Behavior" if r["method"] == "behavior" else labels.get(r["method"], r["method"]),
                  cell(r.get(key))) for r in rows]
        shown = [(lab, c) for lab, c in shown if c is not None]
        cats = [lab for lab, _ in shown]
        plot_interval_bars(ax, cats, {"": [c for _, c in shown]}, highlight="ReDA")
        for bar, lab in zip(ax.patches, cats):
            bar.set_color("C3" if lab == "ReDA" else "C7" if lab in ("BC", "Oracle") or
                          lab.startswith("Behavior") else "C0")
        ax.set_title(panel, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lays the figure out, writes it to `path` (folders made) and closes it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_protocol_bars(summary: Mapping[str, Mapping[str, Interval | None]],
                       protocol_labels: Mapping[str, str], path: str | Path, title: str = "",
                       paper: Mapping[str, Mapping[str, float]] | None = None) -> Path:
    """Tables 1-2 as a bar chart: summary[method label][protocol] = (mean, lo, hi) or None,
    one bar per protocol; paper[method label][protocol], where given, is marked with a
    short black line (the paper's value, usually far above)."""
    plt = _require_matplotlib()
    cats = list(summary)
    protocols = list(protocol_labels)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    plot_interval_bars(ax, cats, {protocol_labels[p]: [summary[c].get(p) for c in cats]
                                  for p in protocols}, highlight="ReDA")
    if paper:
        width = 0.8 / len(protocols)
        for i, c in enumerate(cats):
            for j, p in enumerate(protocols):
                v = (paper.get(c) or {}).get(p)
                if v is not None:
                    xc = i + (j - (len(protocols) - 1) / 2) * width
                    ax.plot([xc - width / 2, xc + width / 2], [v, v], color="k", lw=1.5)
        ax.plot([], [], color="k", lw=1.5, label="paper")
    ax.set_ylabel("average return, all 5 tasks")
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
