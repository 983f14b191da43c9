"""Finished run directories, read and grouped for the tables and plots: each results.json
with its config (`load_run`, `find_runs`), grouped by (task_set, num_checkpoints, method,
num_models) with the runs of one group pooled over base seeds and data collections
(`group_runs`)."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from reda_jax import method_names
from reda_jax.configs import DEFAULT_NUM_MODELS

# Config fields that may differ between runs that are pooled into one cell.
_POOLABLE_FIELDS = ("seed", "num_seeds", "checkpoint_interval_s")

GroupKey = tuple  # (task_set, num_checkpoints, method, num_models)


@dataclasses.dataclass
class Run:
    """One run directory's final results."""

    path: Path
    task_set: str
    num_checkpoints: int
    method: str
    num_models: int
    base_seed: int | None
    collection: int | None                    # the data's collection seed (None: unrecorded)
    per_seed: dict[str, list[float]]          # protocol -> all-task average return per seed
    per_task: dict[str, dict[str, list[float]]]  # protocol -> task -> per-seed return
    groups: dict[str, dict[str, list[float]]]  # protocol -> train_tasks/unseen_tasks -> per seed
    train_config: dict

    @property
    def key(self) -> GroupKey:
        return (self.task_set, self.num_checkpoints, self.method, self.num_models)


def method_of(results: Mapping[str, Any], train_config: Mapping[str, Any]) -> str:
    """results["method"], or (older results.json) derived from the algo and the ablation
    settings of the config."""
    if results.get("method"):
        return str(results["method"])
    algo = results.get("algo") or train_config.get("algo", "reda")
    rep = dict(train_config.get("representation", {}))
    if results.get("augmentation"):
        rep["augmentation"] = results["augmentation"]
    return method_names.method_of(algo, rep)


def load_run(results_path: str | Path) -> Run:
    results_path = Path(results_path)
    results = json.loads(results_path.read_text())
    cfg_path = results_path.parent / "config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    train = config.get("train", {})
    num_models = results.get("num_models")
    if num_models is None:
        num_models = train.get("dynamics", {}).get("num_models", DEFAULT_NUM_MODELS)
    per_seed, per_task, groups = {}, {}, {}
    for p, summary in results.get("protocols", {}).items():
        per_seed[p] = [float(v) for v in summary["all_tasks"]["per_seed"]]
        per_task[p] = {t: [float(v) for v in s["per_seed"]]
                       for t, s in summary.get("tasks", {}).items()}
        groups[p] = {g: [float(v) for v in summary[g]["per_seed"]]
                     for g in ("train_tasks", "unseen_tasks") if g in summary}
    return Run(path=results_path.parent,
               task_set=str(results.get("task_set") or train["task_set"]),
               num_checkpoints=int(results.get("num_checkpoints") or train["num_checkpoints"]),
               method=method_of(results, train), num_models=int(num_models),
               base_seed=train.get("seed", results.get("seed")),
               collection=results.get("collection_seed"),
               per_seed=per_seed, per_task=per_task, groups=groups, train_config=train)


def find_runs(root: str | Path, warn=None) -> list[Run]:
    """Every run under `root` (recursively) that has a readable results.json with finite
    returns, in path order; an unreadable one, or one with a NaN or inf return, is skipped
    with a warning naming it (`warn`, default stderr), so it never enters a pooled cell."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    runs = []
    for p in sorted(Path(root).rglob("results.json")):
        try:
            run = load_run(p)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            warn(f"skipped {p}: unreadable ({type(e).__name__}: {e})")
            continue
        bad = [f"{protocol} seed {i}" for protocol, values in run.per_seed.items()
               for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            warn(f"skipped {p}: non-finite returns ({', '.join(bad)}); left out of every "
                 "pooled cell")
            continue
        runs.append(run)
    return runs


ARCHIVED_FILES = ("results.json", "config.json")


def archive_runs(runs: Iterable[Run], root: str | Path, dst: str | Path) -> None:
    """Copies each run's ARCHIVED_FILES to dst / (its directory relative to root): what the
    tables and the paired comparisons read, without checkpoints or data, small enough to
    commit, so that find_runs(dst) reads the same runs where the run directories are gone."""
    root, dst = Path(root).resolve(), Path(dst).resolve()
    if dst == root or root in dst.parents:
        raise ValueError(f"archive {dst} lies inside the runs it archives ({root}): its copies "
                         "would be read back as runs")
    for run in runs:
        target = dst / Path(run.path).resolve().relative_to(root)
        target.mkdir(parents=True, exist_ok=True)
        for name in ARCHIVED_FILES:                  # config.json is optional (old runs)
            if (Path(run.path) / name).exists():
                shutil.copyfile(Path(run.path) / name, target / name)


# ----------------------------------------------------------------------------------------
# Pooling runs into groups.

@dataclasses.dataclass
class Group:
    key: GroupKey
    runs: list[Run]

    def _pool(self, get) -> np.ndarray:
        return np.asarray([v for r in self.runs for v in get(r)], np.float64)

    def per_seed(self, protocol: str) -> np.ndarray:
        """The pooled per-seed all-task average returns of `protocol`."""
        return self._pool(lambda r: r.per_seed.get(protocol, []))

    def per_task(self, protocol: str, task: str) -> np.ndarray:
        return self._pool(lambda r: r.per_task.get(protocol, {}).get(task, []))

    def per_group(self, protocol: str, group: str) -> np.ndarray:
        return self._pool(lambda r: r.groups.get(protocol, {}).get(group, []))

    @property
    def collections(self) -> list:
        """The data collections pooled (their seeds; None: a run that did not record it)."""
        return sorted({r.collection for r in self.runs}, key=lambda c: (c is None, c or 0))

    @property
    def tasks(self) -> list[str]:
        out: list[str] = []
        for r in self.runs:
            for p in r.per_task.values():
                out += [t for t in p if t not in out]
        return out


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _signature(run: Run) -> dict[str, Any]:
    return {k: v for k, v in _flatten(run.train_config).items() if k not in _POOLABLE_FIELDS}


def group_runs(runs: Iterable[Run], warn=None) -> dict[GroupKey, Group]:
    """Groups runs by key. Runs on different data collections are independent and pooled;
    of two runs of a group with the same base seed on the same collection only the first is
    kept; runs whose configs differ in more than the seeds are pooled with a warning."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    out: dict[GroupKey, Group] = {}
    for run in runs:
        group = out.setdefault(run.key, Group(run.key, []))
        dup = [r for r in group.runs if run.base_seed is not None
               and (r.base_seed, r.collection) == (run.base_seed, run.collection)]
        if dup:
            on = "" if run.collection is None else f" on collection {run.collection}"
            warn(f"{run.path} repeats base seed {run.base_seed}{on} of {dup[0].path}; ignored")
            continue
        if group.runs:
            a, b = _signature(group.runs[0]), _signature(run)
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if diff:
                warn(f"{run.path} and {group.runs[0].path} are pooled but their configs differ "
                     f"in {', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}")
        group.runs.append(run)
    return out
