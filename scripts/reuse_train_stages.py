"""Reads out the encoders of finished `experiments.train` runs instead of training new ones:
copies each train run's finished stages 1-2 into the run directory `experiments.probe_encoder`
uses for that method, collection and variant, so that the probe restores them.

  python scripts/reuse_train_stages.py --task_set=hopper-gravity --preset=mini --num_seeds=5 \
      --collect_seeds=0,1 --methods=reda_wo_model,reda,reda_wo_adv,focal,reda_wo_up,reda_wo_tc
  python -m experiments.probe_encoder --task_set=hopper-gravity --preset=mini --num_seeds=5 \
      --collect_seeds=0,1 --methods=reda_wo_model,reda,reda_wo_adv,focal,reda_wo_up,reda_wo_tc

The probe's config of each method must equal the train run's on every field stages 1-2
depend on (`stage_checkpoints.config_diff`); otherwise nothing is copied and the reason is
printed. The train runs are found where `experiments.train` puts them by default:
<train_root>/<method>/<preset>-ckpt<k>-seed<seed>[-collect<s>]. This is how the read-out of
the Tables 1-5 runs (docs/results.md) was made."""
from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from reda_jax import configs
    from reda_jax.experiment import collection_dir
    from reda_jax.metrics_log import STAGES
    from reda_jax.report.encoder_probe import method_config
    from reda_jax.run_info import prepare_run_dir
    from reda_jax.stage_checkpoints import reuse_stages
    from reda_jax.validate import InputError
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task_set", required=True)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--checkpoints", type=int, default=1)
    parser.add_argument("--num_seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the train runs' base seed")
    parser.add_argument("--collect_seeds", default="0")
    parser.add_argument("--methods", required=True, help="comma-separated probe methods")
    parser.add_argument("--variant", default="default", help="the probe's --variant")
    parser.add_argument("--train_root", default=None, help="default runs/<task_set>")
    parser.add_argument("--probe_workdir", default="runs/probe_encoder")
    args = parser.parse_args()
    train_root = Path(args.train_root or f"runs/{args.task_set}")
    base = f"runs/data/{args.preset}/{args.task_set}"
    failed = 0
    for cs in (int(s) for s in args.collect_seeds.split(",")):
        name, _ = collection_dir(base, cs, args.preset, args.task_set)
        suffix = "" if name == "data" else f"-collect{cs}"
        for method in args.methods.split(","):
            config = method_config(method, args.task_set, args.preset, args.num_seeds,
                                   args.checkpoints, ())
            if config.seed != args.seed:
                config = configs.override(config, f"seed={args.seed}")
            run = f"{args.preset}-ckpt{args.checkpoints}-seed{args.seed}{suffix}"
            train_dir = train_root / method / run
            probe_dir = Path(args.probe_workdir) / args.task_set / name / f"{method}-{args.variant}"
            if not (train_dir / "config.json").exists():
                print(f"{name} {method}: no train run at {train_dir}")
                failed += 1
                continue
            prepare_run_dir(probe_dir, {"train": configs.to_dict(config)})
            try:
                reuse_stages(probe_dir, train_dir, STAGES[2])   # stages 1-2: before meta_policy
            except InputError as e:
                print(f"{name} {method}: not reused ({e})")
                failed += 1
                continue
            print(f"{name} {method}: stages 1-2 of {train_dir} -> {probe_dir}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
