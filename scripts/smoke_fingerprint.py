"""Refactoring aid (issue 12): a smoke run of every registered method on hopper-gravity
smoke data, written as JSON (per-seed returns of both protocols, every metric of every
epoch, encoder accuracies), and compared exactly with an earlier fingerprint.

  python scripts/smoke_fingerprint.py --out /tmp/before.json          # on the old code
  python scripts/smoke_fingerprint.py --out /tmp/after.json --compare /tmp/before.json
  python scripts/smoke_fingerprint.py --out /tmp/t.json --compare /tmp/after.json \
      --set=token=transition      # one config change: which methods does it move?

Bit-identical results are expected on the same machine (a refactor changes no numerics);
another CPU may differ in the last digits. ~1 min per method cold, seconds with a warm
JAX_COMPILATION_CACHE_DIR."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def fingerprint(data_dir: str, work_dir: str, overrides: tuple[str, ...] = ()) -> dict:
    from reda_jax import configs
    from reda_jax.envs.tasks import get_task_set
    from reda_jax.experiment import build_config, load_or_collect
    from reda_jax.metrics_log import read_metrics
    from reda_jax.run_info import prepare_run_dir
    from reda_jax.data.train_data import make_train_data
    from reda_jax.train import Trainer

    data = load_or_collect("hopper-gravity", "smoke", 1, data_dir)
    out = {}
    for algo in configs.ALGOS:
        config = build_config("hopper-gravity", "smoke", 1, algo=algo)
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
    parser.add_argument("--data_dir", help="smoke data (collected there if missing); "
                        "default: a temporary directory")
    parser.add_argument("--set", action="append", default=[], help="override a config field "
                        "of every method, dotted as in config.json (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = fingerprint(args.data_dir or str(Path(tmp) / "data"), str(Path(tmp) / "runs"),
                             tuple(args.set))
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.compare:
        diff = differences(json.loads(Path(args.compare).read_text()), result)
        print("\n".join(diff) if diff else "bit-identical: every return, metric and accuracy")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
