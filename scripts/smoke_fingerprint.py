"""Refactoring aid: a smoke run of every registered method on hopper-gravity
smoke data, written as JSON (per-seed returns of both protocols, every metric of every
epoch, encoder accuracies), and compared exactly with an earlier fingerprint.

  python scripts/smoke_fingerprint.py --out /tmp/before.json          # on the old code
  python scripts/smoke_fingerprint.py --out /tmp/after.json --compare /tmp/before.json
  python scripts/smoke_fingerprint.py --out /tmp/t.json --compare /tmp/after.json \
      --set=token=transition      # one config change: which methods does it move?

The smoke data are tiny and smoke's stage 2 is two epochs of ten updates, so a change that
moves ReDA's stage 2 can pass unseen (w/o UP and ReDA differ in the fifth digit there). A
`mini`-shaped fingerprint runs the real `mini` networks and batches on existing `mini`
data, with short stages (~2 min on 2 cores; this is how the code of 2026-12-03 and
2026-12-04 was compared, docs/notebook.md):

  python scripts/smoke_fingerprint.py --out /tmp/mini.json --preset=mini --algos=reda \
      --data_dir=runs/data/mini/hopper-gravity --set=num_seeds=5 \
      --set=dynamics.max_epochs=2 --set=representation.num_epochs=2 \
      --set=meta.num_epochs=1 --set=meta.updates_per_epoch=20 --set=eval.num_episodes=1

Bit-identical results are expected on the same machine (a refactor changes no numerics);
another CPU may differ in the last digits. ~1 min per method cold, seconds with a warm
JAX_COMPILATION_CACHE_DIR."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def fingerprint(data_dir: str, work_dir: str, overrides: tuple[str, ...] = (),
                preset: str = "smoke", algos: tuple[str, ...] | None = None) -> dict:
    """{algo: its returns, metrics and accuracies} of one run per algo (default: every
    registered one) on hopper-gravity data of `preset` at data_dir."""
    from reda_jax import configs
    from reda_jax.envs.tasks import get_task_set
    from reda_jax.experiment import build_config, load_or_collect
    from reda_jax.metrics_log import read_metrics
    from reda_jax.run_info import prepare_run_dir
    from reda_jax.data.train_data import make_train_data
    from reda_jax.train import Trainer

    data = load_or_collect("hopper-gravity", preset, 1, data_dir)
    out = {}
    for algo in algos or configs.ALGOS:
        config = build_config("hopper-gravity", preset, 1, algo=algo)
        for assignment in overrides:
            config = configs.override(config, assignment)
        run = Path(work_dir) / algo
        prepare_run_dir(run, {"train": configs.to_dict(config)})
        results = Trainer(config, make_train_data(get_task_set("hopper-gravity"), *data), run,
                          show_progress=False, log=lambda _: None).run()
        out[algo] = {
            "method": results["method"],
            "returns": {p: {t: v["per_seed"] for t, v in s["tasks"].items()}
                        for p, s in results["protocols"].items()},
            "metrics": {f"{r['stage']}/{r['epoch']}/{r['metric']}/{r['seed']}": float(r["value"])
                        for r in read_metrics(run)},
            "encoder_accuracy": results["encoder_accuracy"]}
        print(f"{algo}: done", flush=True)
    return out


def differences(old: dict, new: dict) -> list[str]:
    """One line per method and part that differs (empty: bit-identical)."""
    lines = []
    for algo in sorted(set(old) | set(new)):
        if algo not in old or algo not in new:
            lines.append(f"{algo}: only in {'the new' if algo in new else 'the old'} run")
            continue
        for part in ("method", "returns", "encoder_accuracy"):
            if old[algo][part] != new[algo][part]:
                lines.append(f"{algo}: {part} differ")
        a, b = old[algo]["metrics"], new[algo]["metrics"]
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if changed:
            lines.append(f"{algo}: {len(changed)} metric rows differ, e.g. {changed[:3]}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--compare", help="an earlier fingerprint to compare with")
    parser.add_argument("--data_dir", help="the preset's hopper-gravity data (smoke: "
                        "collected there if missing; default: a temporary directory)")
    parser.add_argument("--preset", default="smoke", choices=("smoke", "mini", "paper"),
                        help="size preset of the data and the runs (not smoke: --data_dir "
                        "must hold that preset's collected datasets)")
    parser.add_argument("--algos", help="comma-separated algos (default: every one)")
    parser.add_argument("--set", action="append", default=[], help="override a config field "
                        "of every method, dotted as in config.json (repeatable)")
    args = parser.parse_args()
    from reda_jax import configs
    algos = tuple(args.algos.split(",")) if args.algos else None
    unknown = [a for a in algos or () if a not in configs.ALGOS]
    if unknown:
        parser.error(f"--algos: unknown {', '.join(unknown)}; valid: {', '.join(configs.ALGOS)}")
    if args.preset != "smoke" and not (args.data_dir and (Path(args.data_dir) / "datasets")
                                       .is_dir()):
        parser.error(f"--preset={args.preset} needs --data_dir with that preset's collected "
                     "datasets (python -m experiments.collect); a fingerprint does not "
                     "collect them")
    with tempfile.TemporaryDirectory() as tmp:
        result = fingerprint(args.data_dir or str(Path(tmp) / "data"), str(Path(tmp) / "runs"),
                             tuple(args.set), args.preset, algos)
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.compare:
        diff = differences(json.loads(Path(args.compare).read_text()), result)
        print("\n".join(diff) if diff else "bit-identical: every return, metric and accuracy")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
