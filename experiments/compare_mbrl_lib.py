"""Stage 1's task dynamics models against a named reference implementation: Facebook's
mbrl-lib (`mbrl` 0.2.0, PyTorch) trains, for each training task, the same kind of
probabilistic ensemble on IDENTICAL data, split and update budget as ours, and is read out
exactly as ours is (`experiments.probe_stage1`, `reda_jax.eval.encoders.physics_readout`
and `dynamics_readout`): is the models' one-step error in the task's own dimension, against
the true gap between the tasks' physics there, a property of our code or of the method?

mbrl-lib and torch are development-only tools, never dependencies of reda_jax: they live in
their own virtualenv beside the project's (mbrl 0.2.0 pins gymnasium==0.26.3 and
hydra-core==1.0.3, which conflict with ours or do not import on Python 3.11; `mbrl.models`
only needs torch, hydra-core's `instantiate`, omegaconf and termcolor):

  python3.11 -m venv .venv-mbrl && . .venv-mbrl/bin/activate
  pip install torch==2.13.0          # the CPU wheel on this machine's disk
  pip install -e .
  pip install --no-deps mbrl && pip install "hydra-core>=1.3" termcolor

Then (data as every read-out loads it; a missing collection is an error, not collected):

  python -m experiments.compare_mbrl_lib --task_set=hopper-gravity --preset=mini \\
      --updates=880 --batch_size=2048 --num_seeds=3      # the mini preset's stage-1 budget
  python -m experiments.compare_mbrl_lib --updates=5000
  python -m experiments.compare_mbrl_lib --preset=smoke --data_dir=/tmp/smoke-data \\
      --updates=50 --batch_size=64                         # an end-to-end check

What is the same as ours: the datasets (`encoder_probe.collections`, `make_train_data`),
each task's train/holdout rows (`make_dynamics_data(train_arrays, dcfg, config.seed)`,
checked row for row), inputs [s, a] and targets s' - s, members (the preset's
`dynamics.num_models`), hidden layers (the preset's `dynamics.hidden_dims`, SiLU = swish;
mbrl-lib's `num_layers` counts hidden layers: num_layers=3 is in -> 200 -> 200 -> 200 ->
out), the learning rate, the initial log-variance bounds (mbrl-lib's -10 / 0.5 = our
log-std -5 / 0.25), the bound penalty's weight 0.01, the NLL (mean over rows and dims,
summed over members), the truncated-normal initialisation (std 1 / (2 sqrt(fan_in))), input
standardisation from the training rows, `--updates` gradient steps of `--batch_size` rows
per member (an epoch is ceil(train rows / batch) steps, the last epoch may be cut short),
and the read-out (500 evenly spaced rows per task of the training and of the
unseen-checkpoint data for `physics.physics_readout`; `readout.model_readout` on 1000
transitions per task drawn with the keys our run's seed i uses).

What is mbrl-lib's own (its defaults, kept on purpose; see also the JSON's "differences"):
targets are NOT standardised (the NLL and the log-variance bounds are in raw units of
s' - s); the bounds are shared by the members (ours: per member) and the penalty is on
log-variance (0.01 x (max - min) log-var = 0.02 x in log-std units); the optimiser is
torch Adam with one coupled L2 `weight_decay` on every parameter, biases and bounds
included (`--weight_decay`, default 5e-5; ours: decoupled AdamW decay 2.5e-5, 5e-5,
7.5e-5, 1e-4 on the kernels only); batches come from one bootstrap resample per member
(with replacement, drawn once) walked in a new order each epoch (ours: a fresh uniform
draw with replacement every step); with --keep_best (default, mbrl-lib's `evaluate=True`)
the holdout MSE of each member's mean (raw units) is scored after every epoch and the WHOLE
ensemble's weights of the last epoch in which ANY member improved by > 1% (relative to its
best, starting from the untrained score) are restored at the end (ours: each member's own
best snapshot); --patience=N stops after N epochs without such an improvement (0: train
the whole budget, mbrl-lib's patience=None).

Output: <workdir>/<task_set>/collect<s>/mbrl_lib-u<updates>-b<batch>[-p<N>][-last].json
(config, data, per-seed read-outs, per-task holdout MSE and training curves, wall times;
rewritten after every seed, "complete" false until the last), a one-line summary and a
markdown table (mean [95% t-interval] over seeds).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
from absl import flags

from reda_jax import presets
from reda_jax.envs.tasks import TASK_SETS
from reda_jax.validate import InputError, at_least, run_app, writable_dir

_TASK_SET = flags.DEFINE_enum("task_set", "hopper-gravity", sorted(TASK_SETS), "Task set.")
_PRESET = flags.DEFINE_enum("preset", "mini", list(presets.PRESETS),
                            "Size preset: the data and our stage-1 config (members, layers, "
                            "learning rate, holdout split).")
_COLLECT_SEED = flags.DEFINE_integer("collect_seed", 0, "The data collection's seed.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The preset seed's collection directory "
                                "(default runs/data/<preset>/<task_set>; collection seed s "
                                "other than the preset's: <data_dir>-seed<s>).")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "1", ["1", "3", "5"],
                                 "Behavior checkpoints per task.")
_UPDATES = flags.DEFINE_integer("updates", 880, "Gradient steps per ensemble (mini's stage 1: "
                                "40 epochs x 22 steps).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 2048, "Rows per step and member.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 3, "Model seeds, run one after another.")
_PATIENCE = flags.DEFINE_integer("patience", 0, "Epochs without a > 1% holdout improvement "
                                 "of any member before stopping (0: train the whole budget).")
_KEEP_BEST = flags.DEFINE_bool("keep_best", True, "mbrl-lib's evaluate=True: restore the "
                               "best-holdout snapshot at the end (else the last weights).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 5e-5, "mbrl-lib's single (coupled L2) "
                                   "weight decay of torch Adam.")
_NUM_ROWS = flags.DEFINE_integer("num_rows", 500, "Rows per task of the physics read-out.")
_NUM_TRANSITIONS = flags.DEFINE_integer("num_transitions", 1000, "Transitions per task of "
                                        "the likelihood read-out (probe_stage1's 1000).")
_THREADS = flags.DEFINE_integer("threads", 1, "torch CPU threads.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/compare_mbrl_lib", "Output root.")

SUMMARY = (("signal_dim_model_error", "error / gap, task's dim (unseen ckpt)"),
           ("train_signal_dim_model_error", "same, training rows"),
           ("model_physics_error", "error / gap, all dims (unseen ckpt)"),
           ("train_model_physics_error", "same, training rows"),
           ("model_error_own_states", "error / gap, own task's states"),
           ("model_error_other_states", "error / gap, other tasks' states"),
           ("model_gap_cosine", "cos(model gap, true gap)"),
           ("true_gap", "true gap (unseen ckpt)"), ("signal_dim", "task's dim"),
           ("model_unseen_checkpoint_accuracy", "likelihood task accuracy (unseen ckpt)"),
           ("model_train_accuracy", "likelihood task accuracy (training)"),
           ("holdout_mse", "holdout MSE, raw units (mean over tasks, members)"),
           ("train_wall_s", "training wall time per seed (s)"))

DIFFERENCES = {
    "targets": "mbrl-lib: raw s' - s (only inputs standardised); ours: inputs and targets "
               "standardised, NLL and bounds in standardised units",
    "log_variance_bounds": "mbrl-lib: learned min/max log-var (-10 / 0.5) shared by the "
                           "members, soft-clamped by softplus as ours; penalty 0.01 x (sum max "
                           "- sum min) log-var; ours: per-member log-std bounds (-5 / 0.25), "
                           "penalty 0.01 in log-std units",
    "weight_decay": "mbrl-lib: torch Adam weight_decay (coupled L2 added to the gradient) on "
                    "every parameter incl. biases and bounds; ours: decoupled AdamW decay "
                    "per layer (2.5e-5, 5e-5, 7.5e-5, 1e-4) on kernels only",
    "batches": "mbrl-lib: one bootstrap resample (with replacement) per member, fixed for the "
               "run, shuffled each epoch, last batch of an epoch partial; ours: a fresh "
               "uniform draw with replacement per member and step",
    "snapshot": "mbrl-lib (evaluate=True): holdout MSE per member after each epoch, the whole "
                "ensemble's state restored from the last epoch where any member improved "
                "by > 1% over its best (the best starts at the untrained score); ours: each "
                "member's own best snapshot (best starts at +inf)",
    "normaliser": "mbrl-lib: torch std (ddof=1), eps 1e-5; ours: ddof=0, MIN_STD 1e-6",
}


def check_flags(argv) -> None:
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    for name, value, low in (("updates", _UPDATES.value, 1), ("batch_size", _BATCH_SIZE.value, 1),
                             ("num_seeds", _NUM_SEEDS.value, 1), ("patience", _PATIENCE.value, 0),
                             ("num_rows", _NUM_ROWS.value, 2), ("collect_seed", _COLLECT_SEED.value, 0),
                             ("num_transitions", _NUM_TRANSITIONS.value, 1),
                             ("threads", _THREADS.value, 1)):
        at_least(name, value, low)
    if not (math.isfinite(_WEIGHT_DECAY.value) and _WEIGHT_DECAY.value >= 0):
        raise InputError(f"--weight_decay: must be a finite number >= 0, got {_WEIGHT_DECAY.value}")
    if _PATIENCE.value and not _KEEP_BEST.value:
        raise InputError("--patience needs --keep_best: mbrl-lib's early stopping is scored "
                         "by its holdout evaluation (evaluate=True)")
    writable_dir("workdir", _WORKDIR.value)


# ----------------------------------------------------------------------------- data
def load(task_set_name: str, preset: str, collect_seed: int, checkpoints: int,
         data_dir: str | None):
    """(TaskSet, TrainData, info) as `encoder_probe.collections` loads them; a collection that
    is not there is an error (a comparison never starts a collection)."""
    from reda_jax.data.train_data import make_train_data
    from reda_jax.experiment import collection_dir
    from reda_jax.report.encoder_probe import collections
    base = data_dir or f"runs/data/{preset}/{task_set_name}"
    _, where = collection_dir(base, collect_seed, preset, task_set_name)
    if not (Path(where) / "datasets").is_dir():
        raise InputError(f"no datasets at {where}/datasets; collect them first with python -m "
                         f"experiments.collect --task_set={task_set_name} --preset={preset} "
                         f"--workdir={where} --seed={collect_seed}")
    [(_, cs, task_set, train, test, info)] = collections(task_set_name, preset, [collect_seed],
                                                         checkpoints, data_dir)
    return task_set, make_train_data(task_set, train, test, cs), info


def task_splits(arrays: list[dict], dcfg, seed: int) -> list[dict]:
    """Each training task's train and holdout rows, as `make_dynamics_data(arrays, dcfg,
    seed)` splits them (the same rng sequence of `dynamics.split_holdout`), checked against
    its arrays: [{'train': {field: (N_k, ...)}, 'holdout': {...}}] per task."""
    from reda_jax.algos import dynamics
    from reda_jax.algos.dynamics_data import make_dynamics_data
    rng = np.random.default_rng(seed)
    num_rows = max(len(a["rewards"]) for a in arrays)
    ours = make_dynamics_data(arrays, dcfg, seed)
    out = []
    for k, a in enumerate(arrays):
        train_idx, hold_idx, n_train, n_hold = dynamics.split_holdout(
            rng, len(a["rewards"]), num_rows, dcfg)
        parts = {}
        for part, idx, n, x_ours, y_ours in (
                ("train", train_idx[:n_train], n_train, ours.inputs, ours.targets),
                ("holdout", hold_idx[:n_hold], n_hold, ours.holdout_inputs, ours.holdout_targets)):
            rows = {f: np.asarray(a[f])[idx] for f in ("observations", "actions",
                                                      "next_observations", "rewards")}
            x, y = dynamics.dynamics_arrays(rows)
            if not (np.array_equal(x, np.asarray(x_ours[k])[:n])
                    and np.array_equal(y, np.asarray(y_ours[k])[:n])):
                raise AssertionError(f"task {k}: {part} rows differ from make_dynamics_data's")
            parts[part] = rows
        out.append(parts)
    return out


# ----------------------------------------------------------------------------- mbrl-lib
def transition_batch(rows: dict):
    from mbrl.types import TransitionBatch
    n = len(rows["rewards"])
    return TransitionBatch(rows["observations"], rows["actions"], rows["next_observations"],
                           np.asarray(rows["rewards"], np.float32), np.zeros(n, bool),
                           np.zeros(n, bool))


def budget_iterator(batch, batch_size: int, ensemble_size: int, budget: int, rng):
    """mbrl-lib's training iterator (`util.common.get_basic_buffer_iterators`' defaults: a
    BootstrapIterator with replacement, shuffled each epoch) that stops for good after
    `budget` batches in all."""
    from mbrl.util.replay_buffer import BootstrapIterator

    class BudgetIterator(BootstrapIterator):
        remaining = budget

        def __next__(self):
            if self.remaining <= 0:
                raise StopIteration
            out = super().__next__()
            self.remaining -= 1
            return out

    return BudgetIterator(batch, batch_size, ensemble_size, shuffle_each_epoch=True,
                          permute_indices=False, rng=rng)


def train_task_model(parts: dict, dcfg, obs_dim: int, act_dim: int, seed: int):
    """One task's mbrl-lib ensemble trained on its rows -> (OneDTransitionRewardModel,
    record of the training)."""
    import torch
    from mbrl.models import GaussianMLP, ModelTrainer, OneDTransitionRewardModel
    from mbrl.util.replay_buffer import TransitionIterator
    widths = set(dcfg.hidden_dims)
    if len(widths) != 1:
        raise InputError(f"mbrl-lib's GaussianMLP has one hidden width; the preset has "
                         f"{dcfg.hidden_dims}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = GaussianMLP(obs_dim + act_dim, obs_dim, "cpu", num_layers=len(dcfg.hidden_dims),
                      ensemble_size=dcfg.num_models, hid_size=widths.pop(),
                      deterministic=False, learn_logvar_bounds=True,
                      activation_fn_cfg={"_target_": "torch.nn.SiLU"})
    model = OneDTransitionRewardModel(net, target_is_delta=True, normalize=True,
                                      learned_rewards=False)
    train, holdout = transition_batch(parts["train"]), transition_batch(parts["holdout"])
    model.update_normalizer(train)            # the training rows' statistics, as ours
    it = budget_iterator(train, _BATCH_SIZE.value, dcfg.num_models, _UPDATES.value, rng)
    steps_per_epoch = len(it)
    num_epochs = math.ceil(_UPDATES.value / steps_per_epoch)
    val = TransitionIterator(holdout, _BATCH_SIZE.value, shuffle_each_epoch=False, rng=rng)
    trainer = ModelTrainer(model, optim_lr=dcfg.learning_rate, weight_decay=_WEIGHT_DECAY.value)
    epochs_run, best_epoch = [0], [0]
    choose = trainer.maybe_get_best_weights

    def counted(*args, **kwargs):      # called once per epoch with evaluate=True
        epochs_run[0] += 1
        weights = choose(*args, **kwargs)
        if weights is not None:
            best_epoch[0] = epochs_run[0]
        return weights

    trainer.maybe_get_best_weights = counted
    callback = lambda _m, _it, epoch, *_: epochs_run.__setitem__(0, epoch + 1)

    t0 = time.time()
    losses, val_scores = trainer.train(it, dataset_val=val, num_epochs=num_epochs,
                                       patience=_PATIENCE.value or None,
                                       evaluate=_KEEP_BEST.value, callback=callback,
                                       silent=True)
    record = {"steps_per_epoch": steps_per_epoch, "epochs": epochs_run[0],
              "updates": _UPDATES.value - it.remaining, "train_loss": losses,
              "holdout_mse_curve": val_scores, "wall_s": round(time.time() - t0, 1),
              "train_rows": len(train), "holdout_rows": len(holdout)}
    if _KEEP_BEST.value:
        record["best_epoch"] = best_epoch[0]
    return model, record


def predictor(model):
    """predict(obs (n, ds), act (n, da)) -> mean next observation s + E[delta] (E, n, ds),
    std (E, n, ds), raw units, every member (NumPy)."""
    import torch

    def predict(obs, act):
        obs, act = np.array(obs, np.float32), np.array(act, np.float32)
        with torch.no_grad():
            model.eval()
            mean, logvar = model.model.forward(model._get_model_input(obs, act),
                                               use_propagation=False)
        return obs + mean.numpy(), np.exp(0.5 * logvar.numpy())
    return predict


def holdout_mse(predict, rows: dict) -> list[float]:
    """Per member: MSE of its mean next observation against the recorded one over the
    holdout rows and dims, raw units (our `holdout_mse` metric)."""
    mean, _ = predict(rows["observations"], rows["actions"])
    return ((mean - rows["next_observations"][None]) ** 2).mean((1, 2)).tolist()


# ----------------------------------------------------------------------------- read-out
def physics_inputs(data, num_rows: int) -> dict:
    """`encoders.physics_readout`'s rows and simulator, once for every seed: per split
    (prefix '' the unseen-checkpoint data, 'train_' the training data) obs, act, recorded
    next obs (T, n, ...) and true_next (T_phys, T, n, ds)."""
    import jax

    from reda_jax.eval import physics
    ts = data.task_set
    T = len(ts.train_tasks)
    out = {}
    for prefix, split in (("", data.test_train_tasks), ("train_", data.train)):
        host = jax.device_get(split)
        rows = [np.linspace(0, int(host.size[k]) - 1, num_rows).astype(int) for k in range(T)]
        take = lambda x: np.stack([np.asarray(x[k])[rows[k]] for k in range(T)])
        obs, act = take(host.transitions.observations), take(host.transitions.actions)
        true_next = np.stack([np.stack([physics.simulated_next_observations(
            ts, task.multiplier, obs[k], act[k]) for k in range(T)]) for task in ts.train_tasks])
        out[prefix] = dict(obs=obs, act=act, next=take(host.transitions.next_observations),
                           true_next=true_next)
    return out


def physics_readout(inputs: dict, predicts: list) -> dict[str, float]:
    """`physics.physics_readout` of task models predict_j (see `predictor`) at the rows of
    `physics_inputs`, as `encoders.physics_readout` reads ours."""
    from reda_jax.eval import physics
    result = {}
    for prefix, x in inputs.items():
        T = x["obs"].shape[0]
        model_mean = np.stack([np.stack([p(x["obs"][k], x["act"][k])[0].mean(0)
                                         for k in range(T)]) for p in predicts])
        out = physics.physics_readout(x["true_next"], model_mean, x["next"])
        result.update({prefix + k: float(v) for k, v in out.items()})
    return result


def likelihood_readout(data, predicts: list, key, num_transitions: int) -> dict[str, float]:
    """`readout.model_readout` (the models' own likelihood task accuracy, model error and
    gap) of task models predict_j, with one seed's key of our `dynamics_readout`."""
    import jax.numpy as jnp

    from reda_jax.eval import readout

    def predict(obs, act):          # (T, n, ...) -> (T_model, E, T, n, ds)
        obs, act = np.asarray(obs), np.asarray(act)
        per = [[p(obs[k], act[k]) for k in range(obs.shape[0])] for p in predicts]
        return (jnp.asarray(np.stack([np.stack([m for m, _ in row], 1) for row in per])),
                jnp.asarray(np.stack([np.stack([s for _, s in row], 1) for row in per])))

    out = readout.model_readout(predict, data.train, data.test_train_tasks, key,
                                num_transitions)
    return {k: float(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- report
def cell(values) -> str:
    from reda_jax.report.plots import mean_interval
    values = np.asarray(values, np.float64)
    mean, lo, hi = mean_interval(values)
    return f"{mean:.3g} [{lo:.3g}, {hi:.3g}]" if len(values) > 1 else f"{mean:.3g}"


def table(per_seed: dict[str, list]) -> str:
    lines = ["| mbrl-lib | mean [95% t-interval] | per seed |", "|---|---|---|"]
    for key, label in SUMMARY:
        if key in per_seed:
            lines.append(f"| {label} | {cell(per_seed[key])} | "
                         + ", ".join(f"{v:.3g}" for v in per_seed[key]) + " |")
    return "\n".join(lines)


def output_path() -> Path:
    name = f"mbrl_lib-u{_UPDATES.value}-b{_BATCH_SIZE.value}"
    name += f"-p{_PATIENCE.value}" if _PATIENCE.value else ""
    name += "" if _KEEP_BEST.value else "-last"
    return (Path(_WORKDIR.value) / _TASK_SET.value / f"collect{_COLLECT_SEED.value}"
            / f"{name}.json")


def main(argv):
    check_flags(argv)
    try:
        import mbrl
        import mbrl.models
        import torch
    except ImportError as e:
        raise InputError(f"{e}: mbrl-lib and torch are development tools, installed in "
                         ".venv-mbrl (see this module's doc), not in the project's "
                         "environment") from None
    torch.set_num_threads(_THREADS.value)

    from reda_jax.eval.encoders import MODEL_KEYS
    from reda_jax.run_info import git_commit, quiet_logs, write_json_atomic
    from reda_jax.stage_loop import epoch_keys, seed_keys
    quiet_logs()
    t_start = time.time()
    config = presets.train_preset(_PRESET.value, _TASK_SET.value,
                                  num_checkpoints=int(_CHECKPOINTS.value),
                                  num_seeds=_NUM_SEEDS.value)
    dcfg = config.dynamics
    task_set, data, info = load(_TASK_SET.value, _PRESET.value, _COLLECT_SEED.value,
                                int(_CHECKPOINTS.value), _DATA_DIR.value)
    ds, da, T = task_set.obs_dim, task_set.act_dim, len(task_set.train_tasks)
    splits = task_splits(data.train_arrays, dcfg, config.seed)
    t_sim = time.time()
    inputs = physics_inputs(data, _NUM_ROWS.value)
    sim_s = time.time() - t_sim
    keys = epoch_keys(seed_keys(config.seed, config.num_seeds, MODEL_KEYS), 0)
    path = output_path()
    record = {
        "task_set": _TASK_SET.value, "preset": _PRESET.value, "implementation": "mbrl-lib",
        "versions": {"mbrl": getattr(mbrl, "__version__", "?"), "torch": torch.__version__},
        "git_commit": git_commit(), "data": info,
        "config": {"updates": _UPDATES.value, "batch_size": _BATCH_SIZE.value,
                   "num_seeds": _NUM_SEEDS.value, "patience": _PATIENCE.value,
                   "keep_best": _KEEP_BEST.value, "weight_decay": _WEIGHT_DECAY.value,
                   "learning_rate": dcfg.learning_rate, "ensemble_size": dcfg.num_models,
                   "hidden_dims": list(dcfg.hidden_dims), "activation": "SiLU",
                   "learn_logvar_bounds": True, "target_is_delta": True, "normalize": True,
                   "split_seed": config.seed, "holdout_fraction": dcfg.holdout_fraction,
                   "max_holdout": dcfg.max_holdout, "num_rows": _NUM_ROWS.value,
                   "num_transitions": _NUM_TRANSITIONS.value, "threads": _THREADS.value,
                   "checkpoints": int(_CHECKPOINTS.value)},
        "differences": DIFFERENCES, "rows": {"train": [len(s["train"]["rewards"]) for s in splits],
                                             "holdout": [len(s["holdout"]["rewards"]) for s in splits]},
        "per_seed": {}, "training": [], "complete": False, "simulator_s": round(sim_s, 1)}
    per_seed: dict[str, list] = {}
    for i in range(_NUM_SEEDS.value):
        t_seed = time.time()
        models, runs = [], []
        for k in range(T):
            model, run = train_task_model(splits[k], dcfg, ds, da, seed=1000 * i + k)
            models.append(model)
            runs.append(run)
        train_s = time.time() - t_seed
        predicts = [predictor(m) for m in models]
        out = physics_readout(inputs, predicts)
        out.update(likelihood_readout(data, predicts, keys[i], _NUM_TRANSITIONS.value))
        mse = [holdout_mse(p, s["holdout"]) for p, s in zip(predicts, splits)]
        for run, m in zip(runs, mse):
            run["holdout_mse_members"] = m
        out["holdout_mse"] = float(np.mean(mse))
        out["holdout_mse_per_task"] = [float(np.mean(m)) for m in mse]
        out["train_wall_s"] = round(train_s, 1)
        out["seed_wall_s"] = round(time.time() - t_seed, 1)
        for key, v in out.items():
            per_seed.setdefault(key, []).append(v)
        record["training"].append(runs)
        record["per_seed"] = per_seed
        record["wall_s"] = round(time.time() - t_start, 1)
        record["complete"] = i + 1 == _NUM_SEEDS.value
        write_json_atomic(path, record)
        print(f"seed {i}: error/gap in the task's dim {out['signal_dim_model_error']:.3f} "
              f"(training rows {out['train_signal_dim_model_error']:.3f}), all dims "
              f"{out['model_physics_error']:.3f}, task accuracy "
              f"{out['model_unseen_checkpoint_accuracy']:.3f}, holdout MSE "
              f"{out['holdout_mse']:.4g} (per task "
              + ", ".join(f"{v:.4g}" for v in out["holdout_mse_per_task"])
              + "), updates / epochs / best epoch per task "
              + ", ".join(f"{r['updates']}/{r['epochs']}/{r.get('best_epoch', '-')}"
                          for r in runs) + f", {train_s:.0f} s", flush=True)
    m = {k: float(np.mean(v)) for k, v in per_seed.items() if k in dict(SUMMARY)}
    print(f"\nmbrl-lib {_TASK_SET.value} {_PRESET.value} collect{_COLLECT_SEED.value} "
          f"u{_UPDATES.value} b{_BATCH_SIZE.value}: error/gap in the task's dim "
          f"{m['signal_dim_model_error']:.3f} (training rows "
          f"{m['train_signal_dim_model_error']:.3f}), all dims {m['model_physics_error']:.3f}, "
          f"likelihood task accuracy {m['model_unseen_checkpoint_accuracy']:.3f}, holdout MSE "
          f"{m['holdout_mse']:.4g}, {_NUM_SEEDS.value} seeds, {time.time() - t_start:.0f} s\n")
    print(table(per_seed))
    print(f"\n{path}")


if __name__ == "__main__":
    run_app(main)
