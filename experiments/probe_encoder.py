"""The encoder read-out (`reda_jax.eval.readout`) without a policy: trains each method only
as far as its encoder is final (stages 1-2; the whole run for om_sac, om_bc and corro, whose
encoders train in stage 3) and reports, per method, accuracy on training windows, on the
training tasks' unseen-checkpoint windows and on unseen tasks' windows (nearest prototype),
a linear probe's accuracy, d(phi) of Eq. 8 and its centroid form: mean [95% t-interval]
over seeds x collections.

  python -m experiments.probe_encoder --task_set=didactic --methods=reda,reda_wo_model,focal
  python -m experiments.probe_encoder --task_set=didactic --methods=reda --variant=h5 \
      --set=representation.horizon=5 --stage1_from=default
  python -m experiments.probe_encoder --task_set=hopper-gravity --preset=mini \
      --methods=reda,reda_wo_model,focal --num_seeds=5
  python -m experiments.probe_encoder --task_set=didactic --methods=reda_wo_model \
      --variant=sim30k --simulator_branches=10000 --policies

--task_set=didactic: the didactic data (`reda_jax.report.didactic`), one collection per
--collect_seeds, collected (or reused) under <data_dir>/collect<k>/data, by default the
tree `experiments.didactic` uses. Any other task set: one collection per --collect_seeds
(default: the preset's collection seed only), the preset's at --data_dir (default
runs/data/<preset>/<task_set>) and seed s at <data_dir>-seed<s> (each collected there
first if missing, `python -m experiments.collect --seed=s` makes the same). Methods
are algos (reda, focal, ...) or ReDA ablations (reda_wo_model, reda_wo_adv, reda_wo_up,
reda_wo_tc). Runs land in <workdir>/<task set>/<collection>/<method>-<variant> and
resume; --stage1_from=default reuses the default's dynamics models for a stage-2 variant.
--policies continues each run through stage 3 (the policy on the real data, the encoder
fixed) and adds its returns to the read-out.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import flags

from reda_jax import configs, presets
from reda_jax.envs.tasks import TASK_SETS
from reda_jax.report.encoder_probe import DIDACTIC, METHODS, collections, format_readout, \
    method_config, paired_rows, policy_readout, readout_rows, with_simulator_branches
from reda_jax.run_info import prepare_run_dir, quiet_logs, write_json_atomic
from reda_jax.validate import InputError, at_least, ints, run_app, writable_dir

_TASK_SET = flags.DEFINE_enum("task_set", DIDACTIC, [DIDACTIC] + sorted(TASK_SETS),
                              "The didactic data, or a task set.")
_METHODS = flags.DEFINE_list("methods", ["reda", "reda_wo_model", "focal"],
                             f"Methods, any of {', '.join(METHODS)}.")
_VARIANT = flags.DEFINE_string("variant", "default",
                               "Name of this configuration (the run directories' suffix); "
                               "give one with --set.")
_SET = flags.DEFINE_multi_string(
    "set", [], "Override one config field of every method, dotted as in config.json, e.g. "
    "--set=representation.horizon=5 (repeatable; values are Python literals).")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 5, "Learner seeds per collection (vmapped).")
_COLLECT_SEEDS = flags.DEFINE_list("collect_seeds", ["0", "1"],
                                   "Seeds of independent data collections (task sets: "
                                   "default the preset's collection seed only).")
_PRESET = flags.DEFINE_enum("preset", None, ["default", *presets.PRESETS],
                            "Didactic: default | smoke (default: default); task sets: a "
                            "configs preset (default: mini).")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "1", ["1", "3", "5"],
                                 "Task sets: behavior checkpoints per task.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Didactic: the collections' root "
                                "(default runs/didactic, experiments.didactic's); task sets: "
                                "the preset seed's dataset directory (default "
                                "runs/data/<preset>/<task_set>; seed s: <data_dir>-seed<s>).")
_STAGE1_FROM = flags.DEFINE_string(
    "stage1_from", None, "Variant whose finished stage 1 (dynamics models, CVAE) each method "
    "reuses in the same collection (its own run of that variant, else its algo's: reda for "
    "the ablations) when the configs agree on what stage 1 depends on (a stage-2 variant "
    "need not retrain the models).")
_SIM_BRANCHES = flags.DEFINE_integer(
    "simulator_branches", 0, "Oracle-dynamics augmentation: append this many branch "
    "rollouts (representation.horizon random-action steps in the task's real physics, from "
    "joint-data states) to each training task's data before training; the read-out still "
    "scores the original data. Use with reda_wo_model (real windows only) against "
    "reda_wo_adv (the same rollouts in learned models). Needs --variant.")
_POLICIES = flags.DEFINE_bool(
    "policies", False, "Then train each method's policy (stage 3) on the real data with the "
    "encoder read out, and report its returns (didactic: Figure 2(a)'s task-1 returns; task "
    "sets: each protocol's mean over training and unseen tasks). With --simulator_branches "
    "the branches reach the encoder only.")
_NUM_WINDOWS = flags.DEFINE_integer("num_windows", 1000, "Windows per task and sample.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/probe_encoder", "Output directory.")
_PROGRESS = flags.DEFINE_bool("progress", False, "Show the stages' progress bars.")


def check_flags(argv: list[str], f=flags.FLAGS) -> tuple[str, list[int]]:
    """Every flag checked before any work; returns (preset, collection seeds)."""
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    at_least("num_seeds", f.num_seeds)
    at_least("num_windows", f.num_windows, 2)
    seeds = ints("collect_seeds", f.collect_seeds, low=0)
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--collect_seeds: must be distinct integers >= 0, got {seeds}")
    didactic_set = f.task_set == DIDACTIC
    preset = f.preset or ("default" if didactic_set else "mini")
    allowed = ("default", "smoke") if didactic_set else presets.PRESETS
    if preset not in allowed:
        raise InputError(f"--preset: {preset!r} does not apply to --task_set={f.task_set}; "
                         f"use one of {', '.join(allowed)}")
    if not didactic_set and not f["collect_seeds"].present:
        seeds = [presets.collect_preset(preset, f.task_set).seed]
    at_least("simulator_branches", f.simulator_branches, 0)
    if (f.set or f.simulator_branches) and f.variant == "default":
        raise InputError(f"--{'set' if f.set else 'simulator_branches'}: name the "
                         "configuration with --variant, so that its runs stay apart from the "
                         "default ones")
    for flag in ("variant", "stage1_from"):
        name = f[flag].value
        if (flag == "variant" or name is not None) and not (
                name and all(c.isalnum() or c in "_.=" for c in name)):
            raise InputError(f"--{flag}: letters, digits, '_', '.', '=' only, got {name!r}")
    writable_dir("workdir", f.workdir)
    for method in f.methods:
        method_config(method, f.task_set, preset, f.num_seeds, int(f.checkpoints),
                      tuple(f.set))
    return preset, seeds


def merge_earlier_readout(record: dict, path: Path) -> list[str]:
    """Adds to `record` (in place) the methods of an earlier read-out at `path` that this
    call did not run, when that read-out is of the same configuration (task set, preset,
    --set, seeds) and collections, so that reading out one more method keeps the others;
    returns their names."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    same = all(old.get(k) == record[k] for k in ("task_set", "preset", "set", "num_seeds"))
    per_old, per_new = old.get("per_collection", {}), record["per_collection"]
    if not same or set(per_old) != set(per_new):
        return []
    kept = [m for m in next(iter(per_old.values()), {}) if m not in next(iter(per_new.values()))]
    for name, by_method in per_new.items():
        by_method.update({m: per_old[name][m] for m in kept if m in per_old[name]})
    return kept


def main(argv):
    preset, seeds = check_flags(argv)
    quiet_logs()
    from reda_jax.data.train_data import make_train_data
    from reda_jax.eval import encoders
    from reda_jax.metrics_log import STAGES
    from reda_jax.stage_checkpoints import reuse_stages
    from reda_jax.train import Trainer
    workdir = Path(_WORKDIR.value)
    work = workdir / (DIDACTIC if _TASK_SET.value == DIDACTIC else _TASK_SET.value)
    results, infos = {}, {}
    for name, collect_seed, task_set, train, test, info in collections(
            _TASK_SET.value, preset, seeds, int(_CHECKPOINTS.value), _DATA_DIR.value):
        infos[name] = info
        data = make_train_data(task_set, train, test, collect_seed)
        augmented = {}   # horizon -> TrainData with simulator branches (one per collection)
        for method in _METHODS.value:
            config = method_config(method, _TASK_SET.value, preset, _NUM_SEEDS.value,
                                   int(_CHECKPOINTS.value), tuple(_SET.value))
            run_dir = prepare_run_dir(work / name / f"{method}-{_VARIANT.value}",
                                      {"train": configs.to_dict(config)})
            for m in dict.fromkeys((method, config.algo)):   # its own run, else its algo's
                source = work / name / f"{m}-{_STAGE1_FROM.value}"
                if _STAGE1_FROM.value and source != run_dir and (source / "config.json").exists():
                    try:
                        reuse_stages(run_dir, source, STAGES[1])
                    except InputError as e:   # e.g. the variant changes the models
                        print(f"{name} {method}: stage 1 trained afresh ({e})", flush=True)
                    break
            train_data, h = data, config.representation.horizon
            if _SIM_BRANCHES.value:
                if h not in augmented:
                    augmented[h] = make_train_data(task_set, with_simulator_branches(
                        task_set, train, _SIM_BRANCHES.value, h), test, collect_seed)
                train_data = augmented[h]
            trainer = Trainer(config, train_data, run_dir, show_progress=_PROGRESS.value)
            out = encoders.encoder_readout(trainer.method, config, data,
                                           *trainer.train_encoder(), _NUM_WINDOWS.value)
            dynamics = trainer.method.stage("dynamics")
            if dynamics is not None and config.algo == "reda":   # finished: restored
                models = trainer.train_stage(dynamics)
                out.update(encoders.dynamics_readout(config, train_data, models,
                                                     _NUM_WINDOWS.value))
                out.update(encoders.physics_readout(config, train_data, models))
            out = {k: v.tolist() for k, v in out.items()}
            if _POLICIES.value:   # stages 1-2 restored from run_dir; stage 3 on `data`
                policy = Trainer(config, data, run_dir, show_progress=_PROGRESS.value)
                out.update(policy_readout(policy, policy.run(), train, test,
                                          _TASK_SET.value == DIDACTIC))
            results.setdefault(name, {})[method] = out
            print(f"{name} {method}: " + ", ".join(f"{k} {np.mean(v):.3f}"
                                                   for k, v in out.items()), flush=True)
    record = {"task_set": _TASK_SET.value, "preset": preset, "variant": _VARIANT.value,
              "set": list(_SET.value), "num_seeds": _NUM_SEEDS.value, "data": infos,
              "per_collection": results}
    out_path = work / f"readout-{_VARIANT.value}.json"
    kept = merge_earlier_readout(record, out_path)
    if kept:
        print(f"{out_path}: keeps the earlier read-out of {', '.join(kept)} (same variant, "
              "collections and seeds)")
    table = format_readout(readout_rows(results))
    write_json_atomic(out_path, record)
    print(f"\nEncoder read-out, {_TASK_SET.value}, preset {preset}, variant {_VARIANT.value}"
          f"{' (' + ' '.join(_SET.value) + ')' if _SET.value else ''}: mean [95% t-interval] "
          f"over {_NUM_SEEDS.value} seeds x {len(results)} collection(s); chance "
          f"{1 / len(task_set.train_tasks):.2f}\n")
    print(table)
    base_path = work / "readout-default.json"
    if _VARIANT.value != "default" and base_path.exists():
        paired = paired_rows(results, json.loads(base_path.read_text())["per_collection"])
        if paired:
            print(f"\nPaired difference, variant {_VARIANT.value} - default (same data and "
                  "seeds): mean [95% t-interval]\n")
            print(format_readout(paired))
    print(f"\n{out_path}")


if __name__ == "__main__":
    run_app(main)
