"""Stage 1 against its training length, data size and model choices: do the task dynamics
models carry the task? Trains ReDA's stage-1 task models alone (every training task's
ensemble, vmapped over tasks and seeds; the reward model is not trained: no read-out uses
it) for a fixed budget of updates, and reads them out against the real simulator at
several points of that one run.

  python -m experiments.probe_stage1 --task_set=hopper-gravity --preset=mini \
      --variant=default --readout_at=880,2500,5000,10000,20000
  python -m experiments.probe_stage1 --task_set=hopper-gravity --preset=mini \
      --variant=elites --set=dynamics.num_models=7 --set=dynamics.num_elites=5
  python -m experiments.probe_stage1 --task_set=hopper-gravity --preset=mini \
      --variant=n200k --train_transitions=200000     # after experiments.collect --train_transitions
  python -m experiments.probe_stage1 --plot --out=docs/figures/stage1_scaling.png
  python -m experiments.probe_stage1 --table --workdir=docs/runs/hopper-gravity1-mini-stage1

At each `--readout_at` update count (the first epoch end at or past it) every seed's best
snapshot so far (what stage 2 would get if stage 1 stopped there) is read out:
`physics.physics_readout` (the models' one-step error in the task's own observation
dimension / the true gap between the tasks' physics there, on training and on
unseen-checkpoint states, 500 rows per task) and `readout.model_readout` (the models' own
likelihood task accuracy). Early stopping is tracked beside the budget: each (seed, task)
ensemble's state is frozen at the first epoch where no member improved for
`dynamics.patience` epochs (the preset's 5; `--set=dynamics.patience=10` is the reference
code's), and read out once at the end with the epoch it stopped at.

The run directory <workdir>/<task set>/<collection>/<variant> holds config.json,
metrics.csv (stage 'dynamics', one row per epoch, metric and seed: holdout_mse (raw units,
mean over members and tasks), best_holdout_mse, holdout_nll, train_nll, updates),
checkpoints at every read-out (a killed run resumes with the same command) and
readout.json (one record per read-out point). `--plot` draws every variant's
error / true gap against updates and, for runs that share their --set but differ in N
(`--train_transitions`), against N at the read-out nearest the largest budget they all
reached.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from absl import flags

from reda_jax import configs, presets
from reda_jax.envs.tasks import TASK_SETS
from reda_jax.run_info import prepare_run_dir, quiet_logs, write_json_atomic
from reda_jax.validate import InputError, at_least, ints, run_app, writable_dir

_TASK_SET = flags.DEFINE_enum("task_set", "hopper-gravity", sorted(TASK_SETS), "Task set.")
_PRESET = flags.DEFINE_enum("preset", "mini", list(presets.PRESETS), "Size preset (data and "
                            "the stage-1 config before --set).")
_VARIANT = flags.DEFINE_string("variant", "default", "Name of this setting (the run "
                               "directory); give one with --set or --train_transitions.")
_SET = flags.DEFINE_multi_string("set", [], "Override a config field, dotted as in "
                                 "config.json, e.g. --set=dynamics.batch_size=256.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 3, "Model seeds (vmapped).")
_COLLECT_SEEDS = flags.DEFINE_list("collect_seeds", ["0"], "Data collections to use.")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "1", ["1", "3", "5"],
                                 "Behavior checkpoints per task.")
_TRAIN_TRANSITIONS = flags.DEFINE_integer(
    "train_transitions", None, "Use the datasets of N transitions per task made by "
    "`experiments.collect --train_transitions=N` (default: the preset's N).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The preset seed's collection directory "
                                "(default runs/data/<preset>/<task_set>; seed s: -seed<s>).")
_READOUT_AT = flags.DEFINE_list("readout_at", ["880", "2500", "5000", "10000", "20000"],
                                "Model updates at which to read out; the run trains to the "
                                "largest.")
_NUM_ROWS = flags.DEFINE_integer("num_rows", 500, "Rows per task of the physics read-out.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/probe_stage1", "Root of the runs.")
_PLOT = flags.DEFINE_bool("plot", False, "Only draw the figure from the runs under --workdir.")
_TABLE = flags.DEFINE_bool("table", False, "Only print one table of every run's read-outs "
                           "under --workdir (e.g. an archive of readout.json files).")
_OUT = flags.DEFINE_string("out", "docs/figures/stage1_scaling.png", "With --plot: the PNG.")

STAGE = "dynamics"
KEYS = ("signal_dim_model_error", "train_signal_dim_model_error", "model_physics_error",
        "train_model_physics_error", "model_error_own_states", "model_error_other_states",
        "model_gap_cosine", "signal_dim_true_gap", "signal_dim",
        "model_train_accuracy", "model_unseen_checkpoint_accuracy")


def check_flags(argv) -> tuple[list[int], list[int]]:
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    if _PLOT.value or _TABLE.value:
        return [], []
    at_least("num_seeds", _NUM_SEEDS.value, 1)
    at_least("train_transitions", _TRAIN_TRANSITIONS.value, 2)
    at_least("num_rows", _NUM_ROWS.value, 2)
    if (_SET.value or _TRAIN_TRANSITIONS.value) and _VARIANT.value == "default":
        raise InputError("--set / --train_transitions change the setting: name it with --variant")
    writable_dir("workdir", _WORKDIR.value)
    return (ints("collect_seeds", _COLLECT_SEEDS.value, 0),
            sorted(set(ints("readout_at", _READOUT_AT.value, 1))))


def load_data(task_set_name: str, preset: str, collect_seed: int, num_checkpoints: int,
              train_transitions: int | None, data_dir: str | None):
    """(collection name, TrainData): the preset's datasets, or the extended ones of N."""
    import dataclasses

    from reda_jax.behavior.collect import extended_config, extended_dataset_root
    from reda_jax.data.datasets import load_datasets
    from reda_jax.data.train_data import make_train_data
    from reda_jax.envs.tasks import get_task_set
    from reda_jax.experiment import collection_dir, load_or_collect
    task_set = get_task_set(task_set_name)
    name, where = collection_dir(data_dir or f"runs/data/{preset}/{task_set_name}",
                                 collect_seed, preset, task_set_name)
    train, test = load_or_collect(task_set_name, preset, num_checkpoints, where, collect_seed)
    if train_transitions is not None:
        config = dataclasses.replace(presets.collect_preset(preset, task_set_name),
                                     seed=collect_seed)
        ext = extended_config(config, train_transitions, num_checkpoints)
        root = extended_dataset_root(where, train_transitions)
        if not root.is_dir():
            raise InputError(f"--train_transitions={train_transitions}: no datasets at {root}; "
                             f"make them with python -m experiments.collect "
                             f"--task_set={task_set_name} --preset={preset} --workdir={where} "
                             f"--seed={collect_seed} --train_transitions={train_transitions} "
                             f"--checkpoints={num_checkpoints}")
        train = {k: a for k, (a, _) in load_datasets(root, task_set, num_checkpoints, "train",
                                                    ext, tasks=task_set.train_tasks).items()}
    return name, make_train_data(task_set, train, test, collect_seed)


def train_and_read_out(config: configs.TrainConfig, data, run_dir: Path,
                       readout_at: list[int], num_rows: int) -> list[dict]:
    """Trains the task models to max(readout_at) updates, reading out at each point (and
    the early-stopped state at the end); resumes from run_dir's checkpoints."""
    import jax
    import jax.numpy as jnp

    from reda_jax.algos.reda import ModelState
    from reda_jax.checkpoint import Checkpointer
    from reda_jax.eval import encoders
    from reda_jax.metrics_log import MetricsLog
    ts, S = data.task_set, config.num_seeds
    T = len(ts.train_tasks)
    from experiments.harness import task_model_epochs
    fns, init, seed_epochs, steps = task_model_epochs(config, data.train_arrays, ts.obs_dim,
                                                      ts.act_dim)
    init = jax.jit(init)
    num_epochs = math.ceil(max(readout_at) / steps)

    def epoch(state, stopped, stopped_state, keys):
        state, m = seed_epochs(state, keys)                           # (S, T, ...)
        keep = lambda new, old: jnp.where(
            stopped.reshape(stopped.shape + (1,) * (new.ndim - 2)), old, new)
        stopped_state = jax.tree.map(keep, state, stopped_state)
        stopped = stopped | jax.vmap(jax.vmap(fns.should_stop))(state)
        per_seed = {"holdout_mse": m["holdout_mse"].mean((1, 2)),
                    "best_holdout_mse": state.best_holdout.mean((1, 2)),
                    "holdout_nll": m["holdout_nll"].mean((1, 2)),
                    "train_nll": m["train_nll"].mean((1, 2)),
                    "stopped_tasks": stopped.sum(1).astype(jnp.float32)}
        return state, stopped, stopped_state, per_seed

    epoch = jax.jit(epoch, donate_argnums=(0, 2))
    base = jax.random.key(config.seed)
    seeds = jax.random.split(jax.random.fold_in(base, 1), S)
    state = init(seeds)
    stopped = jnp.zeros((S, T), bool)
    stop_epoch = np.zeros((S, T), np.int64)
    ckpt = Checkpointer(run_dir / "checkpoints", max_to_keep=1)
    log = MetricsLog(run_dir, tensorboard=False)
    records: list[dict] = []
    start = 0
    if ckpt.latest_step() is not None:
        like = dict(state=state, stopped=stopped, stopped_state=state)
        tree, meta = ckpt.restore(ckpt.latest_step(), like)
        state, stopped = jax.tree.map(jnp.asarray, tree["state"]), jnp.asarray(tree["stopped"])
        stopped_state = jax.tree.map(jnp.asarray, tree["stopped_state"])
        start, records = int(meta["epoch"]), list(meta["records"])
        stop_epoch = np.asarray(meta["stop_epoch"], np.int64)
        log.truncate(STAGE, start, later=False)
        print(f"{run_dir}: resumed at epoch {start}", flush=True)
    else:
        stopped_state = jax.tree.map(jnp.copy, state)

    def read_out(st, label: str, updates: int) -> dict:
        ms = ModelState(dynamics=st, reward=None)
        out = encoders.physics_readout(config, data, ms, num_rows)
        out.update(encoders.dynamics_readout(config, data, ms, 1000))
        rec = {"label": label, "updates": updates}
        rec.update({k: np.asarray(out[k]).tolist() for k in KEYS if k in out})
        return rec

    pending = [u for u in readout_at if u > start * steps]
    t0 = time.time()
    for e in range(start + 1, num_epochs + 1):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, e))(seeds)
        was = np.asarray(stopped)
        state, stopped, stopped_state, per_seed = epoch(state, stopped, stopped_state, keys)
        now = np.asarray(stopped)
        stop_epoch[now & ~was] = e
        per_seed = {k: np.asarray(v) for k, v in per_seed.items()}
        per_seed["updates"] = np.full(S, e * steps, np.float64)
        log.write(STAGE, e, per_seed)
        if pending and e * steps >= pending[0]:
            while pending and e * steps >= pending[0]:
                pending.pop(0)
            rec = read_out(state, "budget", e * steps)
            rec["epoch"], rec["wall_s"] = e, round(time.time() - t0, 1)
            records.append(rec)
            print(f"{run_dir.name}: {e * steps} updates (epoch {e}): error/gap in the task's "
                  f"dimension {np.mean(rec['signal_dim_model_error']):.2f} (training states "
                  f"{np.mean(rec['train_signal_dim_model_error']):.2f}), model task accuracy "
                  f"{np.mean(rec['model_unseen_checkpoint_accuracy']):.2f}, "
                  f"{time.time() - t0:.0f} s", flush=True)
            ckpt.save(e, dict(state=state, stopped=stopped, stopped_state=stopped_state),
                      dict(epoch=e, records=records, stop_epoch=stop_epoch.tolist()))
    rec = read_out(stopped_state, "early_stopped",
                   int(np.mean(np.where(stop_epoch > 0, stop_epoch, num_epochs))) * steps)
    rec["stop_epoch"] = stop_epoch.tolist()
    rec["steps_per_epoch"] = steps
    records.append(rec)
    log.close()
    return records


def cell(values) -> str:
    from reda_jax.report.didactic import format_cell
    return format_cell(values)


def summary_table(records: list[dict], lead: tuple[str, ...] = ()) -> str:
    """Markdown, a row per record; `lead`: the names of leading columns each record carries
    under '_lead' (e.g. the variant)."""
    lines = ["| " + "".join(f"{c} | " for c in lead) + "read-out | updates | best holdout "
             "MSE | error / gap, task's dim (unseen ckpt) | same, training states | error / "
             "gap, all dims | model task accuracy (unseen ckpt) |",
             "|---" * (len(lead) + 7) + "|"]
    for r in records:
        mse = f"{np.mean(r['_holdout']):.4f}" if r.get("_holdout") else "–"
        lines.append("| " + "".join(f"{v} | " for v in r.get("_lead", ())) +
                     f"{r['label']} | {r['updates']} | {mse} | "
                     f"{cell(r['signal_dim_model_error'])} | "
                     f"{cell(r['train_signal_dim_model_error'])} | "
                     f"{cell(r['model_physics_error'])} | "
                     f"{cell(r['model_unseen_checkpoint_accuracy'])} |")
    return "\n".join(lines)


def all_runs_table(workdir: Path) -> str:
    """Every readout.json under workdir (<task set>/<collection>/<variant>/) in one table."""
    from reda_jax.metrics_log import read_complete_rows
    rows = []
    for path in sorted(workdir.glob("*/*/*/readout.json")):
        rec = json.loads(path.read_text())
        holdout = {}   # epoch -> per-seed best holdout MSE (mean over tasks and members)
        if (path.parent / "metrics.csv").exists():
            for m in read_complete_rows(path.parent / "metrics.csv"):
                if m["metric"] == "best_holdout_mse":
                    holdout.setdefault(int(m["epoch"]), []).append(float(m["value"]))
        for r in rec["records"]:
            r = {**r, "_holdout": holdout.get(r.get("epoch"))}
            stop = ""
            if r["label"] == "early_stopped":
                ends = [e for row in r["stop_epoch"] for e in row]
                done = [e for e in ends if e > 0]
                stop = (f" ({len(done)}/{len(ends)} stopped, epochs {min(done)}-{max(done)})"
                        if done else " (none stopped: the budget's end)")
            rows.append({**r, "label": r["label"] + stop,
                         "_lead": (rec["variant"], rec["collection"], rec["train_transitions"],
                                   " ".join(rec["set"]) or "preset", rec["num_seeds"])})
    if not rows:
        raise InputError(f"--table: no readout.json under {workdir}")
    return summary_table(rows, ("variant", "data", "N", "settings", "seeds"))


def plot(workdir: Path, out: Path) -> None:
    """error / gap in the task's dimension against updates (every variant) and, for the
    variants of N transitions (`--train_transitions`), against N at their last budget."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reda_jax.report.plots import mean_interval
    files = sorted(workdir.glob("*/*/*/readout.json"))
    if not files:
        raise InputError(f"--plot: no readout.json under {workdir}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    by_n = {}
    for path in files:
        rec = json.loads(path.read_text())
        budget = [r for r in rec["records"] if r["label"] == "budget"]
        label = f"{rec['variant']} ({rec['collection']})"
        xs = [r["updates"] for r in budget]
        for key, style in (("signal_dim_model_error", "-o"), ("train_signal_dim_model_error", ":")):
            m, lo, hi = (np.array(v) for v in zip(*[mean_interval(r[key]) for r in budget]))
            line, = ax1.plot(xs, m, style, label=label if style == "-o" else None,
                             color=None if style == "-o" else line.get_color())
            if style == "-o":
                ax1.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
        if budget:   # the N panel: runs with the same --set, one line per set
            by_n.setdefault(" ".join(rec["set"]) or "preset", []).append(
                (rec["train_transitions"], budget))
    ax1.axhline(1.0, color="k", lw=0.8)
    ax1.set(xscale="log", xlabel="model updates", ylabel="error / true gap (task's dimension)",
            title="solid: unseen-checkpoint states; dotted: training states")
    ax1.legend(fontsize=7)
    for setting, runs in by_n.items():
        if len({n for n, _ in runs}) < 2:
            continue
        common = min(b[-1]["updates"] for _, b in runs)   # the largest budget all reached
        points = sorted(((n, min(b, key=lambda r: abs(r["updates"] - common)))
                         for n, b in runs), key=lambda p: p[0])
        ns = [n for n, _ in points]
        m, lo, hi = (np.array(v) for v in zip(*[mean_interval(r["signal_dim_model_error"])
                                                for _, r in points]))
        ax2.errorbar(ns, m, yerr=[m - lo, hi - m], fmt="o-", capsize=3, label=setting)
        for n, r in points:
            ax2.annotate(f"{r['updates']} upd.", (n, np.mean(r["signal_dim_model_error"])),
                         fontsize=7)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set(xscale="log", xlabel="training transitions per task (N)",
            ylabel="error / true gap (task's dimension)", title="at a fixed budget")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(out)


def main(argv):
    collect_seeds, readout_at = check_flags(argv)
    quiet_logs()
    if _PLOT.value or _TABLE.value:
        if _TABLE.value:
            print(all_runs_table(Path(_WORKDIR.value)))
        if _PLOT.value:
            plot(Path(_WORKDIR.value), Path(_OUT.value))
        return
    config = presets.train_preset(_PRESET.value, _TASK_SET.value, num_seeds=_NUM_SEEDS.value)
    for assignment in _SET.value:
        try:
            config = configs.override(config, assignment)
        except ValueError as e:
            raise InputError(f"--set={assignment}: {e}") from e
    for cs in collect_seeds:
        name, data = load_data(_TASK_SET.value, _PRESET.value, cs, int(_CHECKPOINTS.value),
                               _TRAIN_TRANSITIONS.value, _DATA_DIR.value)
        run_dir = Path(_WORKDIR.value) / _TASK_SET.value / name / _VARIANT.value
        n = _TRAIN_TRANSITIONS.value or presets.collect_preset(_PRESET.value,
                                                               _TASK_SET.value).train_transitions
        prepare_run_dir(run_dir, {"train": configs.to_dict(config), "readout_at": readout_at,
                                  "train_transitions": n, "collection_seed": cs,
                                  "num_rows": _NUM_ROWS.value})
        records = train_and_read_out(config, data, run_dir, readout_at, _NUM_ROWS.value)
        write_json_atomic(run_dir / "readout.json", {
            "task_set": _TASK_SET.value, "preset": _PRESET.value, "variant": _VARIANT.value,
            "set": list(_SET.value), "collection": name, "train_transitions": n,
            "num_seeds": _NUM_SEEDS.value, "records": records})
        print(f"\nStage-1 read-out, {_TASK_SET.value} {_PRESET.value} {name}, variant "
              f"{_VARIANT.value} ({' '.join(_SET.value) or 'preset'}), N={n}: mean [95% "
              f"t-interval] over {_NUM_SEEDS.value} seeds\n")
        print(summary_table(records))
        print(f"\n{run_dir / 'readout.json'}")


if __name__ == "__main__":
    run_app(main)
