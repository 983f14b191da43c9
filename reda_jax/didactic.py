"""The didactic example (paper Section 5.1, Appendix B.3, Figure 2) as library functions;
the app is `experiments.didactic`.

InvertedPendulum at gravity x1.0 (task 1) and x2.0 (task 2). One SAC per task is trained
briefly; checkpoints are chosen by their deterministic return: D1_train (task 1, return
closest to 100), D2_train (task 2, closest to 50) and D1_test (task 1, closest to 50, another
checkpoint). Context-based methods train on D1_train and D2_train; each is then run on task
1 with context windows from D1_test (the off-policy protocol), and the relative
representation metric d(phi) of Eq. 8 compares the encoder's view of D1_test with D1_train
and D2_train.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from reda_jax import configs
from reda_jax.data.collect import BehaviorCollector, read_returns
from reda_jax.data.context import stack_datasets
from reda_jax.data.datasets import prefix
from reda_jax.envs.tasks import get_task_set
from reda_jax.eval.metrics import relative_representation_metric
from reda_jax.run_info import prepare_run_dir

TASK_SET = "inverted-pendulum-gravity"
TARGETS = {"train1": 100.0, "train2": 50.0, "test1": 50.0, "test2": 100.0}
METHOD_LABELS = {"reda": "ReDA", "om_sac": "OM-SAC", "focal": "FOCAL", "om_bc": "OM-BC",
                 "corro": "CORRO"}
METHODS = tuple(METHOD_LABELS)


def collect_config(preset: str) -> configs.CollectConfig:
    """Only the first few thousand steps matter: returns ~50-100 occur there (docs/results.md)."""
    if preset == "smoke":
        return configs.CollectConfig(
            sac=configs.SACConfig(hidden_dims=(64, 64), batch_size=64), total_steps=800,
            random_steps=200, update_after=100, update_every=10, num_checkpoints=4,
            checkpoint_groups=((1,),), train_transitions=400, test_transitions_per_checkpoint=400)
    return configs.CollectConfig(
        sac=configs.SACConfig(), total_steps=6_000, random_steps=1_000, update_after=500,
        num_checkpoints=12, checkpoint_groups=((1,),), train_transitions=10_000,
        test_transitions_per_checkpoint=10_000)


def train_config(method: str, preset: str, num_seeds: int | None) -> configs.TrainConfig:
    """mini-sized learners, shortened so that three methods fit in ~20 min on 2 cores."""
    if preset == "smoke":
        config = configs.train_preset("smoke", TASK_SET, algo=method)
    else:
        base = configs.train_preset("mini", TASK_SET, algo=method)
        config = dataclasses.replace(
            base, dynamics=dataclasses.replace(base.dynamics, max_epochs=20),
            representation=dataclasses.replace(base.representation, num_epochs=10),
            meta=dataclasses.replace(base.meta, num_epochs=10, eval_every=10),
            focal=dataclasses.replace(base.focal, num_epochs=10),
            corro=dataclasses.replace(base.corro, cvae_epochs=5, num_epochs=10),
            eval=dataclasses.replace(base.eval, num_episodes=5))
    if num_seeds is not None:
        config = dataclasses.replace(config, num_seeds=num_seeds)
    return dataclasses.replace(config, data_preset="didactic")


def choose_checkpoints(returns_csv: str) -> dict[str, int]:
    """{'train1', 'train2', 'test1', 'test2': checkpoint} by closeness of the checkpoint's
    mean deterministic return to TARGETS; a test checkpoint differs from its task's train one."""
    rows = read_returns(returns_csv)
    by_task: dict[str, dict[int, float]] = {}
    for r in rows:
        by_task.setdefault(r["task"], {})[int(r["checkpoint"])] = float(r["return_mean"])
    names = [t.name for t in get_task_set(TASK_SET).all_tasks]
    chosen = {}
    for role in ("train1", "train2", "test1", "test2"):
        task = by_task[names[int(role[-1]) - 1]]
        taken = chosen.get("train" + role[-1])
        options = [k for k in task if k != taken]
        chosen[role] = min(options, key=lambda k: (abs(task[k] - TARGETS[role]), k))
    return chosen


def didactic_data(workdir: Path, preset: str) -> tuple[dict, dict, dict]:
    """Collects (or reuses) the behavior checkpoints; returns (train {task: arrays},
    test {task: arrays}, info {role: {'checkpoint', 'return'}})."""
    task_set = get_task_set(TASK_SET)
    config = collect_config(preset)
    data_dir = workdir / "data"
    prepare_run_dir(data_dir, {"task_set": TASK_SET, "collect": configs.to_dict(config)})
    tasks = task_set.all_tasks
    collector = BehaviorCollector(config, tasks, [1000 * config.seed + i for i in range(len(tasks))],
                                  data_dir)
    collector.run()
    chosen = choose_checkpoints(str(data_dir / "returns.csv"))
    returns = {(r["task"], int(r["checkpoint"])): float(r["return_mean"])
               for r in read_returns(data_dir / "returns.csv")}
    n = config.transitions_per_checkpoint()

    def arrays(role):
        task = tasks[int(role[-1]) - 1].name
        with np.load(data_dir / "rollouts" / task / f"ckpt_{chosen[role]:03d}.npz") as z:
            return prefix({f: z[f] for f in z.files}, n[chosen[role]])

    train = {tasks[0].name: arrays("train1"), tasks[1].name: arrays("train2")}
    test = {tasks[0].name: arrays("test1"), tasks[1].name: arrays("test2")}
    info = {role: {"checkpoint": chosen[role],
                   "return": returns[(tasks[int(role[-1]) - 1].name, chosen[role])]}
            for role in chosen}
    return train, test, info


def run_method(method: str, preset: str, num_seeds: int | None, workdir: Path, train: dict,
               test: dict, show_progress: bool) -> dict:
    """Trains one method; returns its per-seed task-1 off-policy return and d(phi)."""
    from reda_jax.train import Trainer, make_train_data
    config = train_config(method, preset, num_seeds)
    run_dir = prepare_run_dir(workdir / method, {"train": configs.to_dict(config),
                                                 "data_dir": str(workdir / "data")})
    task_set = get_task_set(TASK_SET)
    trainer = Trainer(config, make_train_data(task_set, train, test), run_dir,
                      show_progress=show_progress)
    results = trainer.run()
    t1, t2 = (t.name for t in task_set.all_tasks)
    z = trainer.embed(stack_datasets([train[t1], train[t2], test[t1]]))   # (S, 3, n, Z)
    d_phi = [float(relative_representation_metric(zs[0], zs[1], zs[2])) for zs in z]
    off = results["protocols"]["off_policy"]["tasks"][t1]["per_seed"]
    on = results["protocols"]["on_policy"]["tasks"][t1]["per_seed"]
    return {"method": method, "task1_return_test_context": off, "task1_return_on_policy": on,
            "d_phi": d_phi}


def _cell(values) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def format_table(rows: list[dict], info: dict) -> str:
    lines = ["| method | return on task 1, D1_test contexts | return on task 1, on-policy "
             "| d(phi) (Eq. 8) | seeds |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {METHOD_LABELS.get(r['method'], r['method'])} | "
                     f"{_cell(r['task1_return_test_context'])} | "
                     f"{_cell(r['task1_return_on_policy'])} | {_cell(r['d_phi'])} | "
                     f"{len(r['d_phi'])} |")
    roles = ", ".join(f"{k}: checkpoint {v['checkpoint']} (return {v['return']:.1f})"
                      for k, v in info.items())
    return "\n".join(lines) + f"\n\nData: {roles}."


def draw_figure(rows: list[dict], path: Path) -> bool:
    """Figure 2: (a) return on task 1 with D1_test contexts, (b) d(phi); bars = mean over
    seeds, error bars = std. Returns False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [METHOD_LABELS.get(r["method"], r["method"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, title in ((axes[0], "task1_return_test_context", "(a) return on task 1"),
                           (axes[1], "d_phi", "(b) relative representation metric d(φ)")):
        vals = [r[key] for r in rows]
        ax.bar(labels, [np.mean(v) for v in vals], yerr=[np.std(v) for v in vals], capsize=4,
               color=["C3" if lab == "ReDA" else "C0" for lab in labels])
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
