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

--task_set=didactic: the didactic data (`reda_jax.didactic`), one collection per
--collect_seeds, collected (or reused) under <data_dir>/collect<k>/data, by default the
tree `experiments.didactic` uses. Any other task set: its datasets at --data_dir (collected
there first if missing), one collection. Methods
are algos (reda, focal, ...) or ReDA ablations (reda_wo_model, reda_wo_adv, reda_wo_up,
reda_wo_tc). Runs land in <workdir>/<task set>/<collection>/<method>-<variant> and
resume; --stage1_from=default reuses the default's dynamics models for a stage-2 variant.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import flags

from reda_jax import configs, didactic
from reda_jax.envs.tasks import TASK_SETS, get_task_set
from reda_jax.experiment import ABLATIONS, build_config, load_or_collect
from reda_jax.run_info import prepare_run_dir, quiet_logs, write_json_atomic
from reda_jax.validate import InputError, at_least, ints, run_app, writable_dir

DIDACTIC = "didactic"
ENCODER_ALGOS = tuple(didactic.CONTEXT_METHODS)
METHODS = ENCODER_ALGOS + tuple(f"reda_{a}" for a in ABLATIONS if a != "none")
LABELS = {"train_accuracy": "training windows", "unseen_checkpoint_accuracy":
          "unseen-checkpoint windows", "task1_unseen_checkpoint_accuracy":
          "task 1's unseen-ckpt windows", "linear_probe_accuracy": "linear probe (unseen ckpt)",
          "unseen_task_accuracy": "unseen-task windows", "d_phi": "d(phi) (Eq. 8)",
          "d_phi_centroid": "d(phi), centroids", "d_phi_median": "d(phi), window median",
          "model_train_accuracy": "models: training data",
          "model_unseen_checkpoint_accuracy": "models: unseen ckpt",
          "model_error": "model error", "model_gap": "model gap",
          "model_gap_to_error": "gap / error", "true_gap": "true gap",
          "model_gap_cosine": "cos(model gap, true gap)",
          "model_gap_error": "model gap error / true gap",
          "model_physics_error": "model error / true gap",
          "recorded_vs_simulated": "recorded vs simulated s'",
          "train_model_gap_cosine": "cos(model gap, true gap), training data",
          "train_model_physics_error": "model error / true gap, training data"}

MODEL_PREFIXES = ("model_", "true_gap", "recorded_", "train_model_")
"""Keys of stage 1's task models' read-out (the second table)."""

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
                                   "Didactic: independent data collections.")
_PRESET = flags.DEFINE_enum("preset", None, ["default", *configs.PRESETS],
                            "Didactic: default | smoke (default: default); task sets: a "
                            "configs preset (default: mini).")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "1", ["1", "3", "5"],
                                 "Task sets: behavior checkpoints per task.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Didactic: the collections' root "
                                "(default runs/didactic, experiments.didactic's); task sets: "
                                "dataset directory (default runs/data/<preset>/<task_set>).")
_STAGE1_FROM = flags.DEFINE_string(
    "stage1_from", None, "Variant whose finished stage 1 (dynamics models, CVAE) each method "
    "reuses in the same collection (its own run of that variant, else its algo's: reda for "
    "the ablations) when the configs agree on what stage 1 depends on (a stage-2 variant "
    "need not retrain the models).")
_NUM_WINDOWS = flags.DEFINE_integer("num_windows", 1000, "Windows per task and sample.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/probe_encoder", "Output directory.")
_PROGRESS = flags.DEFINE_bool("progress", False, "Show the stages' progress bars.")


def method_config(method: str, task_set: str, preset: str, num_seeds: int, checkpoints: int,
                  overrides: tuple[str, ...]) -> configs.TrainConfig:
    """The TrainConfig of a method name (algo or reda_<ablation>) with `overrides` applied."""
    algo, ablation = ("reda", method[len("reda_"):]) if method.startswith("reda_") else (
        method, "none")
    if algo not in ENCODER_ALGOS or ablation not in ABLATIONS:
        raise InputError(f"--methods: {method!r} is not one of {', '.join(METHODS)} (methods "
                         "without a learned task representation have nothing to read out)")
    ablate = tuple(f"representation.{k}={v!r}" for k, v in ABLATIONS[ablation].items())
    try:
        if task_set == DIDACTIC:
            return didactic.train_config(algo, preset, num_seeds, ablate + overrides)
        config = build_config(task_set, preset, checkpoints, ablation, num_seeds, algo=algo)
        for assignment in overrides:
            config = configs.override(config, assignment)
        return config
    except ValueError as e:
        raise InputError(f"--set: {e}") from e


def collections(task_set: str, preset: str, collect_seeds: list[int], checkpoints: int,
                data_dir: str | None):
    """[(name, TaskSet, train {task: arrays}, test {task: arrays}, info)] per collection."""
    if task_set == DIDACTIC:
        out = []
        for cs in collect_seeds:
            root = Path(data_dir or "runs/didactic") / f"collect{cs}"
            train, test, info = didactic.didactic_data(root, preset, cs)
            out.append((f"collect{cs}", get_task_set(didactic.TASK_SET), train, test, info))
        return out
    data_dir = data_dir or f"runs/data/{preset}/{task_set}"
    train, test = load_or_collect(task_set, preset, checkpoints, data_dir)
    return [("data", get_task_set(task_set), train, test, {"data_dir": data_dir})]


def readout_rows(per_collection: dict[str, dict[str, dict]]) -> dict[str, dict[str, list]]:
    """{collection: {method: {key: per-seed list}}} -> {method: {key: pooled list}}."""
    rows: dict[str, dict[str, list]] = {}
    for by_method in per_collection.values():
        for method, values in by_method.items():
            row = rows.setdefault(method, {})
            for key, v in values.items():
                row.setdefault(key, []).extend(v)
    return rows


def paired_rows(ours: dict, base: dict) -> dict[str, dict[str, list]]:
    """Per-collection results of a variant and of a base run (`per_collection` of their
    JSON) -> {method: {key: per-seed differences ours - base}}, pooled over the
    collections and keys both have: the same data and seeds, one change."""
    rows: dict[str, dict[str, list]] = {}
    for name, by_method in ours.items():
        for method, values in by_method.items():
            other = base.get(name, {}).get(method)
            if other is None:
                continue
            row = rows.setdefault(method, {})
            for key, v in values.items():
                if key in other and len(other[key]) == len(v):
                    row.setdefault(key, []).extend(np.subtract(v, other[key]).tolist())
    return {m: r for m, r in rows.items() if r}


def format_readout(rows: dict[str, dict[str, list]]) -> str:
    """Markdown: a row per method, a column per read-out key any method has; the
    encoder's keys in one table, stage 1's models' (methods that have them) in a second."""
    tables = []
    for part in ([k for k in LABELS if not k.startswith(MODEL_PREFIXES)],
                 [k for k in LABELS if k.startswith(MODEL_PREFIXES)]):
        keys = [k for k in part if any(k in r for r in rows.values())]
        body = [(m, r) for m, r in rows.items() if any(k in r for k in keys)]
        if not keys or not body:
            continue
        lines = ["| method | " + " | ".join(LABELS[k] for k in keys) + " | n |",
                 "|---|" + "---|" * (len(keys) + 1)]
        for method, row in body:
            n = len(next(iter(row.values())))
            lines.append(f"| {method} | " + " | ".join(didactic.format_cell(row.get(k))
                                                        for k in keys) + f" | {n} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


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
    allowed = ("default", "smoke") if didactic_set else configs.PRESETS
    if preset not in allowed:
        raise InputError(f"--preset: {preset!r} does not apply to --task_set={f.task_set}; "
                         f"use one of {', '.join(allowed)}")
    if not didactic_set and f["collect_seeds"].present:
        raise InputError("--collect_seeds: only the didactic data has independent "
                         "collections here; a task set reads the one at --data_dir")
    if f.set and f.variant == "default":
        raise InputError("--set: name the configuration with --variant, so that its runs "
                         "stay apart from the default ones")
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


def main(argv):
    preset, seeds = check_flags(argv)
    quiet_logs()
    from reda_jax.train import STAGES, Trainer, make_train_data, reuse_stages
    workdir = Path(_WORKDIR.value)
    work = workdir / (DIDACTIC if _TASK_SET.value == DIDACTIC else _TASK_SET.value)
    results, infos = {}, {}
    for name, task_set, train, test, info in collections(
            _TASK_SET.value, preset, seeds, int(_CHECKPOINTS.value), _DATA_DIR.value):
        infos[name] = info
        data = make_train_data(task_set, train, test)
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
            trainer = Trainer(config, data, run_dir, show_progress=_PROGRESS.value)
            out = trainer.encoder_readout(*trainer.train_encoder(),
                                          num_windows=_NUM_WINDOWS.value)
            if trainer.method.stage1 == "dynamics":   # finished: restored, not retrained
                models = trainer.train_stage1()
                out.update(trainer.dynamics_readout(models, _NUM_WINDOWS.value))
                out.update(trainer.physics_readout(models))
            results.setdefault(name, {})[method] = {k: v.tolist() for k, v in out.items()}
            print(f"{name} {method}: " + ", ".join(f"{k} {np.mean(v):.3f}"
                                                   for k, v in out.items()), flush=True)
    rows = readout_rows(results)
    table = format_readout(rows)
    record = {"task_set": _TASK_SET.value, "preset": preset, "variant": _VARIANT.value,
              "set": list(_SET.value), "num_seeds": _NUM_SEEDS.value, "data": infos,
              "per_collection": results}
    out_path = work / f"readout-{_VARIANT.value}.json"
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
