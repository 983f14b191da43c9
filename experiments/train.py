"""Train and evaluate ReDA (or an ablation, or a baseline) on a task set.

  python -m experiments.train --task_set=hopper-gravity --checkpoints=1 --preset=mini
  python -m experiments.train --task_set=hopper-gravity --checkpoints=1 --preset=mini --ablation=wo_model
  python -m experiments.train --task_set=hopper-gravity --checkpoints=1 --preset=mini --algo=focal

Finds the offline datasets in --data_dir (default runs/data/<preset>/<task_set>) or
generates them there first (experiments.collect). Runs the method's stages (ReDA: dynamics,
adversarial augmentation + encoder, meta-policy; see reda_jax.methods) with all seeds
vmapped, then evaluates both protocols in the simulator; prints the table and writes results.json.
Start the same command again after a kill: it resumes from the last checkpoint.
`--from_stage=representation --from_workdir=DIR` reuses DIR's finished dynamics models.
`--set=meta.q_weight=0 --workdir=DIR` overrides any config field (dotted as in config.json).
`--collect_seed=1` trains on an independent behavior data collection (runs/data/<preset>/
<task_set>-seed1, collected first if missing); experiments.tables pools the runs of every
collection (results.json records the collection seed).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from absl import flags

from reda_jax import configs, presets
from reda_jax.envs.tasks import TASK_SETS, get_task_set
from reda_jax.experiment import build_config, collection_dir, load_or_collect
from reda_jax.method_names import ABLATIONS, run_method
from reda_jax.metrics_log import STAGES
from reda_jax.run_info import prepare_run_dir, quiet_logs
from reda_jax.validate import InputError, at_least, finite_nonneg, run_app, writable_dir

_TASK_SET = flags.DEFINE_enum("task_set", "inverted-pendulum-gravity", sorted(TASK_SETS),
                              "Task set.")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "1", ["1", "3", "5"],
                                 "Behavior checkpoints in the training data.")
_ALGO = flags.DEFINE_enum("algo", "reda", list(configs.ALGOS),
                          "Method: reda, or a baseline (om_sac, om_bc, focal, corro, prompt_dt).")
_ABLATION = flags.DEFINE_enum("ablation", "none", list(ABLATIONS),
                              "ReDA ablation: wo_model (no model augmentation), wo_adv (uniform "
                              "random rollout policy), wo_up (lambda1=0), wo_tc (lambda2=0).")
_PRESET = flags.DEFINE_enum("preset", "mini", list(presets.PRESETS), "Size preset.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", None, "Seeds (vmapped); default: the preset's.")
_SEED = flags.DEFINE_integer("seed", 0, "Base seed.")
_NUM_MODELS = flags.DEFINE_integer("num_models", None, "Dynamics models per task.")
_LAMBDA1 = flags.DEFINE_float("lambda1", None, "Uncertainty penalty weight (Eq. 6).")
_LAMBDA2 = flags.DEFINE_float("lambda2", None, "Task reward weight (Eq. 6).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default "
                               "runs/<task_set>/<method>/<preset>-ckpt<k>-seed<seed>.")
_COLLECT_SEED = flags.DEFINE_integer(
    "collect_seed", None, "Seed of the behavior data collection; default: the preset's. "
    "Another seed's default --data_dir is runs/data/<preset>/<task_set>-seed<s> and its "
    "default --workdir ends in -collect<s>.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Collection directory; default runs/data/<preset>/<task_set> "
                                "(the preset's collection seed).")
_FROM_STAGE = flags.DEFINE_enum("from_stage", None, list(STAGES),
                                "Start at this stage, reusing --from_workdir's earlier stages.")
_FROM_WORKDIR = flags.DEFINE_string("from_workdir", None, "Run directory to reuse stages from.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_SET = flags.DEFINE_multi_string(
    "set", [], "Override one config field, dotted as in config.json, e.g. "
    "--set=meta.q_weight=0.05 (repeatable; values are Python literals). Needs --workdir, so "
    "that a probe never lands in the default tree that experiments.tables reads.")


def run_training(config: configs.TrainConfig, workdir: str, data_dir: str,
                 from_stage: str | None = None, from_workdir: str | None = None,
                 show_progress: bool = True, collect_seed: int | None = None) -> dict:
    """collect_seed: the data's collection seed (default: the data preset's)."""
    from reda_jax.data.train_data import make_train_data
    from reda_jax.stage_checkpoints import check_run_checkpoints, reuse_stages
    from reda_jax.train import Trainer, results_table
    check_run_checkpoints(Path(workdir), config)
    if collect_seed is None:
        collect_seed = presets.collect_preset(config.data_preset, config.task_set).seed
    train, test = load_or_collect(config.task_set, config.data_preset, config.num_checkpoints,
                                  data_dir, collect_seed)
    run_dir = prepare_run_dir(workdir, {"train": configs.to_dict(config), "data_dir": data_dir})
    if from_stage is not None:
        if from_workdir is None:
            raise InputError("--from_stage needs --from_workdir")
        reuse_stages(run_dir, Path(from_workdir), from_stage)
    data = make_train_data(get_task_set(config.task_set), train, test, collect_seed)
    results = Trainer(config, data, run_dir, show_progress=show_progress).run()
    print(f"\n{results['method']} on {config.task_set}, {config.num_checkpoints} checkpoint(s), "
          f"{config.num_seeds} seeds, epoch {results['epoch']}: return per task "
          f"(mean ± std over seeds)")
    print(results_table(results))
    acc = results["encoder_accuracy"]
    if acc:
        print("encoder task-id accuracy: train windows "
              f"{acc['train_task_id_accuracy']['mean']:.3f}, unseen-checkpoint windows "
              f"{acc['test_task_id_accuracy']['mean']:.3f}")
    print(f"results: {run_dir / 'results.json'}")
    return results


def check_flags(argv: list[str], f=flags.FLAGS) -> None:
    """Every flag range-checked before any work (InputError naming the flag)."""
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    at_least("num_seeds", f.num_seeds)
    at_least("num_models", f.num_models)
    at_least("seed", f.seed, 0)
    at_least("collect_seed", f.collect_seed, 0)
    finite_nonneg("lambda1", f.lambda1)
    finite_nonneg("lambda2", f.lambda2)
    if (f.from_stage is None) != (f.from_workdir is None):
        raise InputError("--from_stage and --from_workdir go together: give both "
                         f"(--from_stage one of {', '.join(STAGES[1:])}) or neither")
    if f.from_stage == STAGES[0]:
        raise InputError(f"--from_stage: {STAGES[0]!r} reuses nothing; use one of "
                         f"{', '.join(STAGES[1:])}")
    writable_dir("workdir", f.workdir)
    if f.data_dir is not None and Path(f.data_dir).exists() and not Path(f.data_dir).is_dir():
        raise InputError(f"--data_dir: {f.data_dir} exists and is not a directory")
    if f.set and f.workdir is None:
        raise InputError("--set needs --workdir: an overridden run must not land in the "
                         "default runs/<task_set>/<method>/ tree that experiments.tables pools")
    if f.from_workdir is not None:
        src = Path(f.from_workdir)
        if not (src / "config.json").is_file():
            raise InputError(f"--from_workdir: {src} is not a run directory (no config.json)")
        if f.workdir is not None and src.resolve() == Path(f.workdir).resolve():
            raise InputError("--from_workdir: must differ from --workdir")


def main(argv):
    check_flags(argv)
    quiet_logs()
    k = int(_CHECKPOINTS.value)
    try:
        config = build_config(_TASK_SET.value, _PRESET.value, k, _ABLATION.value,
                              _NUM_SEEDS.value, _SEED.value, _NUM_MODELS.value, _LAMBDA1.value,
                              _LAMBDA2.value, _ALGO.value)
        for assignment in _SET.value:
            config = configs.override(config, assignment)
        # Named once, from the final config: the run directory, results.json and the
        # tables agree (e.g. --lambda1=0 alone is w/o UP).
        method = run_method(config.algo, _ABLATION.value,
                            dataclasses.asdict(config.representation))
    except ValueError as e:
        raise InputError(str(e))
    base = f"runs/data/{config.data_preset}/{config.task_set}"
    collect_seed = _COLLECT_SEED.value
    if collect_seed is None:
        collect_seed = presets.collect_preset(config.data_preset, config.task_set).seed
    collection, default_data_dir = collection_dir(base, collect_seed, config.data_preset,
                                                  config.task_set)
    suffix = "" if collection == "data" else f"-collect{collect_seed}"
    workdir = _WORKDIR.value or (f"runs/{config.task_set}/{method}/"
                                 f"{_PRESET.value}-ckpt{k}-seed{config.seed}{suffix}")
    data_dir = _DATA_DIR.value or default_data_dir
    writable_dir("workdir", workdir)
    run_training(config, workdir, data_dir, _FROM_STAGE.value, _FROM_WORKDIR.value,
                 _PROGRESS.value, collect_seed)


if __name__ == "__main__":
    run_app(main)
