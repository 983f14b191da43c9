"""Paired difference of two methods' returns (experiments.train run directories), seed by
seed on the same data collection: mean [95% t-interval] per protocol and task group.

  python scripts/paired_returns.py "runs/hopper-gravity/reda/*" \
      "runs/hopper-gravity/reda_wo_model/*"

Each argument is a glob of finished run directories (results.json); runs are matched by
(collection seed, base seed) and their seeds by index, so both sides must have run the
same seeds on the same collections. The tables (`experiments.tables`) are unpaired; this is
the comparison with the spread of the data and the evaluation episodes taken out."""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

GROUPS = ("all_tasks", "train_tasks", "unseen_tasks")


def per_run(pattern: str) -> dict:
    """{(collection, base seed): Run} of the finished runs matching `pattern`."""
    from reda_jax.report.runs import load_run
    runs = [load_run(Path(p) / "results.json") for p in sorted(glob.glob(pattern))
            if (Path(p) / "results.json").exists()]
    if not runs:
        raise SystemExit(f"{pattern}: no finished run (results.json)")
    return {(r.collection, r.base_seed): r for r in runs}


def values(run, protocol: str, group: str) -> list[float]:
    return run.per_seed[protocol] if group == "all_tasks" else run.groups[protocol][group]


def main() -> None:
    from reda_jax.configs import PROTOCOLS
    from reda_jax.report.plots import mean_interval
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="glob of run directories")
    parser.add_argument("b", help="glob of run directories")
    args = parser.parse_args()
    a, b = per_run(args.a), per_run(args.b)
    keys = sorted(set(a) & set(b), key=str)
    if not keys or set(a) != set(b):
        raise SystemExit(f"the runs do not pair: (collection, base seed) {sorted(a, key=str)} "
                         f"vs {sorted(b, key=str)}")
    print(f"a = {args.a}\nb = {args.b}\npaired over (collection, base seed) {keys}\n")
    print("| protocol | tasks | a | b | a - b | per collection (a - b) |")
    print("|---|---|---|---|---|---|")
    for protocol in PROTOCOLS:
        for group in GROUPS:
            va = [np.asarray(values(a[k], protocol, group)) for k in keys]
            vb = [np.asarray(values(b[k], protocol, group)) for k in keys]
            if any(x.shape != y.shape for x, y in zip(va, vb)):
                raise SystemExit("the runs have different numbers of seeds")
            d = np.concatenate(va) - np.concatenate(vb)
            mean, lo, hi = mean_interval(d)
            per = ", ".join(f"{k[0]}: {np.mean(x - y):+.1f}" for k, x, y in zip(keys, va, vb))
            print(f"| {protocol} | {group} | {np.mean(np.concatenate(va)):.1f} | "
                  f"{np.mean(np.concatenate(vb)):.1f} | {mean:+.1f} [{lo:+.1f}, {hi:+.1f}] "
                  f"| {per} |")


if __name__ == "__main__":
    main()
