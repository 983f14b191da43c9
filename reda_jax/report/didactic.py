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

from pathlib import Path
from typing import Callable

import numpy as np

from reda_jax import configs, presets
from reda_jax.behavior.collect import BehaviorCollector, read_returns
from reda_jax.data.context import stack_datasets
from reda_jax.data.datasets import prefix
from reda_jax.envs.tasks import get_task_set
from reda_jax.eval.metrics import relative_representation_metric
from reda_jax.run_info import prepare_run_dir

TASK_SET = presets.DIDACTIC_TASK_SET
TARGETS = {"train1": 100.0, "train2": 50.0, "test1": 50.0, "test2": 100.0}
METHOD_LABELS = {"behavior": "Behavior (D1_train checkpoint)", "bc": "BC", "oracle": "Oracle", "reda": "ReDA", "om_sac": "OM-SAC",
                 "focal": "FOCAL", "om_bc": "OM-BC", "corro": "CORRO"}
METHODS = tuple(m for m in METHOD_LABELS if m != "behavior")
DEFAULT_METHODS = ("bc", "oracle", "reda", "om_sac", "focal")
CONTEXT_METHODS = ("reda", "om_sac", "focal", "om_bc", "corro")
"""Methods with a learned task representation (d(phi) applies); bc and oracle have none."""


BAND = 0.2
"""A checkpoint fits a role when its mean return lies within BAND x the role's target."""
MIN_EPISODES = 20
"""A checkpoint's return must be the mean of at least this many complete episodes."""


def in_band(ret: float, role: str) -> bool:
    """Whether a mean return lies within BAND x TARGETS[role] of the role's target."""
    return bool(abs(ret - TARGETS[role]) <= BAND * TARGETS[role])


def choose_checkpoints(returns_csv: str, min_episodes: int = MIN_EPISODES) -> dict[str, int]:
    """{'train1', 'train2', 'test1', 'test2': checkpoint}. Each role takes, among its task's
    checkpoints with >= min_episodes complete episodes (and not its task's train checkpoint), the
    EARLIEST one whose mean deterministic return lies within BAND x TARGETS[role] of the
    target; if none does, the one closest to the target (earliest on ties). The earliest
    in-band rule does not hinge on small differences in return between machines."""
    rows = read_returns(returns_csv)
    by_task: dict[str, dict[int, float]] = {}
    for r in rows:
        if int(r["episodes"]) >= min_episodes:
            by_task.setdefault(r["task"], {})[int(r["checkpoint"])] = float(r["return_mean"])
    names = [t.name for t in get_task_set(TASK_SET).all_tasks]
    chosen = {}
    for role in ("train1", "train2", "test1", "test2"):
        task = by_task.get(names[int(role[-1]) - 1], {})
        taken = chosen.get("train" + role[-1])
        options = sorted(k for k in task if k != taken)
        if not options:
            raise ValueError(f"{returns_csv}: no checkpoint of {names[int(role[-1]) - 1]} with "
                             f">= {min_episodes} episodes for role {role}")
        target = TARGETS[role]
        fitting = [k for k in options if in_band(task[k], role)]
        chosen[role] = fitting[0] if fitting else min(
            options, key=lambda k: (abs(task[k] - target), k))
    return chosen


def didactic_data(workdir: Path, preset: str, collect_seed: int = 0,
                  num_checkpoints: int | None = None,
                  progress: Callable[[float, bool], None] | None = None
                  ) -> tuple[dict, dict, dict]:
    """Collects (or reuses) the behavior checkpoints; returns (train {task: arrays},
    test {task: arrays}, info {role: {'checkpoint', 'return', 'in_band'}}); 'in_band' is
    False where no checkpoint was within BAND of the role's target (the closest was taken).
    num_checkpoints: `presets.didactic_collect_config`'s. progress(fraction, restored): the
    fraction of the behavior training done (restored=True for what an earlier process
    did), as it goes."""
    task_set = get_task_set(TASK_SET)
    config = presets.didactic_collect_config(preset, collect_seed, num_checkpoints)
    data_dir = workdir / "data"
    prepare_run_dir(data_dir, {"task_set": TASK_SET, "collect": configs.to_dict(config)})
    tasks = task_set.all_tasks
    collector = BehaviorCollector(config, tasks, [1000 * config.seed + i for i in range(len(tasks))],
                                  data_dir)
    hook = None
    if progress is not None:
        latest = collector.train_ckpt.latest_step() or 0
        done = [latest * collector.steps_per_ckpt]
        progress(done[0] / config.total_steps, True)

        def hook(steps: int, _info: dict) -> None:
            done[0] += steps
            progress(min(done[0] / config.total_steps, 1.0), False)
    collector.run(hook)
    if progress is not None:
        progress(1.0, False)
    chosen = choose_checkpoints(str(data_dir / "returns.csv"),
                                min_episodes=1 if preset == "smoke" else MIN_EPISODES)
    returns = {(r["task"], int(r["checkpoint"])): float(r["return_mean"])
               for r in read_returns(data_dir / "returns.csv")}
    n = config.transitions_per_checkpoint()

    def arrays(role):
        task = tasks[int(role[-1]) - 1].name
        with np.load(data_dir / "rollouts" / task / f"ckpt_{chosen[role]:03d}.npz") as z:
            return prefix({f: z[f] for f in z.files}, n[chosen[role]])

    train = {tasks[0].name: arrays("train1"), tasks[1].name: arrays("train2")}
    test = {tasks[0].name: arrays("test1"), tasks[1].name: arrays("test2")}
    info = {}
    for role, k in chosen.items():
        ret = returns[(tasks[int(role[-1]) - 1].name, k)]
        info[role] = {"checkpoint": k, "return": ret, "in_band": in_band(ret, role)}
    return train, test, info


def behavior_return(workdir: Path, preset: str, collect_seed: int, checkpoint: int) -> float:
    """Task-1 return of the D1_train behavior checkpoint's deterministic policy under the
    methods' evaluation (the same episodes and reset seeds, the EvalConfig of
    `presets.didactic_train_config`): the reference the 0.9x bar compares with on the very initial states the methods meet."""
    from reda_jax.eval.behavior import behavior_returns
    returns = behavior_returns(workdir / "data",
                               presets.didactic_collect_config(preset, collect_seed),
                               get_task_set(TASK_SET).all_tasks, checkpoint,
                               presets.didactic_train_config("bc", preset, 1).eval, which=[0])
    return float(returns.mean())


EVALUATION_SHARE = 0.1
"""The share of a method's run that `run_method`'s progress gives its final evaluation."""


def run_method(method: str, preset: str, num_seeds: int | None, workdir: Path, train: dict,
               test: dict, show_progress: bool, overrides: tuple[str, ...] = (),
               collection_seed: int | None = None,
               progress: Callable[[float, bool], None] | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Trains one method on one collection; returns per-seed lists: the task-1 return with
    D1_test contexts (off-policy protocol), with D1_train contexts, on-policy; d(phi) (None
    for bc / oracle); the largest per-epoch mean Q of the critics (None for BC objectives).
    progress(fraction, restored): the fraction of the run done, after each epoch (stages
    weighted equally, the final evaluation EVALUATION_SHARE), restored=True for stages an
    earlier process finished."""
    from reda_jax.data.train_data import make_train_data
    from reda_jax.train import Trainer
    config = presets.didactic_train_config(method, preset, num_seeds, overrides)
    run_dir = prepare_run_dir(workdir / method, {"train": configs.to_dict(config),
                                                 "data_dir": str(workdir / "data")})
    data = make_train_data(get_task_set(TASK_SET), train, test, collection_seed)
    on_epoch = None
    if progress is not None:
        names: list[str] = []

        def on_epoch(stage: str, epoch: int, num_epochs: int, restored: bool) -> None:
            i = names.index(stage)
            progress((1 - EVALUATION_SHARE) * (i + epoch / max(num_epochs, 1)) / len(names),
                     restored)
    trainer = Trainer(config, data, run_dir, show_progress=show_progress, log=log,
                      on_epoch=on_epoch)
    if progress is not None:
        names += [st.name for st in trainer.method.stages]
    row = {"method": method, **figure2_row(trainer, trainer.run(), train, test)}
    if progress is not None:
        progress(1.0, False)
    return row


def figure2_row(trainer, results: dict, train: dict, test: dict) -> dict:
    """Figure 2's per-seed numbers of a finished `Trainer.run()` (`results`) on the didactic
    data: the task-1 return with D1_test contexts (off-policy protocol), with D1_train
    contexts, on-policy; d(phi) (None without an encoder); the largest per-epoch mean Q of
    the critics (None for BC objectives)."""
    t1, t2 = (t.name for t in get_task_set(TASK_SET).all_tasks)
    d_phi = None
    if trainer.method.encode is not None:
        z = trainer.embed(stack_datasets([train[t1], train[t2], test[t1]]))   # (S, 3, n, Z)
        d_phi = [float(relative_representation_metric(zs[0], zs[1], zs[2])) for zs in z]
    in_dist = trainer.evaluate_policy(*trainer.final_state, "off_policy", contexts=train)
    per_seed = lambda summary: summary["tasks"][t1]["per_seed"]
    return {"task1_return_test_context": per_seed(results["protocols"]["off_policy"]),
            "task1_return_train_context": per_seed(in_dist),
            "task1_return_on_policy": per_seed(results["protocols"]["on_policy"]),
            "d_phi": d_phi, "max_mean_q": max_mean_q(trainer.workdir, trainer.num_seeds)}


def max_mean_q(run_dir: Path, num_seeds: int) -> list[float] | None:
    """Per seed, the largest epoch mean of the critics' Q in metrics.csv (None if none)."""
    from reda_jax.metrics_log import read_metrics
    q = [[] for _ in range(num_seeds)]
    for r in read_metrics(run_dir):
        if r["metric"] == "meta/q":
            q[int(r["seed"])].append(float(r["value"]))
    return [max(v) for v in q] if all(q) else None


def pool(per_collection: list[dict]) -> dict:
    """Rows of one method over several collections -> one row whose per-seed lists
    concatenate the collections' (seeds x collections samples)."""
    out = {"method": per_collection[0]["method"]}
    for key, value in per_collection[0].items():
        if key != "method":
            out[key] = None if value is None else [v for r in per_collection for v in r[key]]
    return out


def format_cell(values, per_value: bool = False) -> str:
    """mean [95% t-interval]; per_value: mean (each value), for a row of one value per
    collection (the behavior checkpoints), where a t-interval over 2 numbers says little."""
    if values is None:
        return "–"
    if per_value and len(values) > 1:
        return f"{np.mean(values):.2f} (" + ", ".join(f"{v:.2f}" for v in values) + ")"
    from reda_jax.report.plots import mean_interval
    mean, lo, hi = mean_interval(np.asarray(values, np.float64))
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]" if len(values) > 1 else f"{mean:.2f}"


COLUMNS = (("task1_return_test_context", "task 1, D1_test contexts"),
           ("task1_return_train_context", "task 1, D1_train contexts"),
           ("task1_return_on_policy", "task 1, on-policy"),
           ("d_phi", "d(phi) (Eq. 8)"), ("max_mean_q", "max epoch mean Q"))


def format_table(rows: list[dict], infos: dict) -> str:
    """rows: pooled rows; infos: {collect seed: {role: {'checkpoint', 'return'}}}."""
    lines = ["| method | " + " | ".join(label for _, label in COLUMNS) + " | n |",
             "|---|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        lines.append(f"| {METHOD_LABELS.get(r['method'], r['method'])} | "
                     + " | ".join(format_cell(r[k], r["method"] == "behavior") for k, _ in COLUMNS)
                     + f" | {len(r['task1_return_on_policy'])} |")
    data = [f"- collection {cs}: {format_roles(info)}" for cs, info in infos.items()]
    return ("\n".join(lines) + "\n\nCells: mean [95% t-interval] over seeds x collections "
            "(the behavior row: mean (each collection's checkpoint)). Data:\n"
            + "\n".join(data))


def format_roles(info: dict) -> str:
    """One collection's roles: checkpoint, return, whether it was in band (info of
    `didactic_data`, with 'eval_return' where the behavior row measured it)."""
    return ", ".join(f"{k} = checkpoint {v['checkpoint']} (return {v['return']:.1f}"
                     + ("" if v.get("in_band", True) else
                        f"; none in the {BAND:.0%} band, the closest")
                     + (f"; {v['eval_return']:.1f} on the evaluation's episodes"
                        if "eval_return" in v else "") + ")"
                     for k, v in info.items())


def behavior_row(returns: list[float]) -> dict:
    """The table row of the D1_train behavior checkpoints (one return per collection)."""
    row = {"method": "behavior", "d_phi": None, "max_mean_q": None}
    for key, _ in COLUMNS[:3]:
        row[key] = list(returns)
    return row


FLOOR = 0.9
"""The fidelity floor: a method's in-distribution task-1 return (on-policy and with
D1_train contexts) should reach FLOOR x the behavior checkpoint's."""


def floor_verdict(rows: list[dict]) -> str:
    """Which methods reach FLOOR x the behavior row's mean with in-distribution contexts."""
    by = {r["method"]: r for r in rows}
    if "behavior" not in by:
        return "Floor not checked: no behavior row."
    ref = float(np.mean(by["behavior"]["task1_return_on_policy"]))
    parts = []
    for m, r in by.items():
        if m == "behavior":
            continue
        ratio = min(float(np.mean(r[k])) for k in ("task1_return_on_policy",
                                                   "task1_return_train_context")) / ref
        parts.append(f"{METHOD_LABELS.get(m, m)} {ratio:.2f}x{'' if ratio >= FLOOR else ' (below)'}")
    return (f"Floor ({FLOOR}x the behavior checkpoint's {ref:.1f}, in-distribution contexts, "
            "the lower of on-policy and D1_train contexts): " + ", ".join(parts) + ".")


def figure2_verdict(rows: list[dict]) -> str:
    """Whether the paper's Figure 2 holds: ReDA has the best task-1 return with D1_test
    contexts and the lowest d(phi) of the context methods. Says which part fails."""
    by = {r["method"]: r for r in rows}
    if "reda" not in by:
        return "Figure 2 not checked: ReDA was not run."
    others = [m for m in by if m in CONTEXT_METHODS and m != "reda"]
    if not others:
        return "Figure 2 not checked: no other context method was run."
    mean = lambda m, k: float(np.mean(by[m][k]))
    ret_ok = all(mean("reda", "task1_return_test_context") > mean(m, "task1_return_test_context")
                 for m in others)
    phi_ok = all(mean("reda", "d_phi") < mean(m, "d_phi") for m in others)
    best = "the highest" if ret_ok else "NOT the highest"
    parts = [f"(a) ReDA's task-1 return with D1_test contexts is {best} "
             f"of {', '.join(['reda'] + others)} (means)",
             f"(b) ReDA's d(phi) is {'the lowest' if phi_ok else 'NOT the lowest'}"]
    holds = "holds" if ret_ok and phi_ok else "does NOT hold"
    return f"Figure 2 {holds} on these means: " + "; ".join(parts) + \
        " (compare the 95% intervals before calling a gap real)."


def draw_figure(rows: list[dict], path: Path, title: str = "") -> bool:
    """Figure 2: (a) return on task 1 with D1_test contexts, (b) d(phi); bars = mean over
    seeds x collections, error bars = 95% t-interval (none for the behavior checkpoints, one
    per collection). Returns False without matplotlib."""
    from reda_jax.report import plots
    shown = []
    for r in rows:
        if r["method"] == "behavior":
            r = {**r, "task1_return_test_context": {
                "mean": float(np.mean(r["task1_return_test_context"])), "lo": None, "hi": None}}
        shown.append(r)
    try:
        plots.plot_figure2(shown, METHOD_LABELS, path, title=title)
    except ImportError:
        return False
    return True


PART_MINUTES = {"collect": 10.0, "bc": 3.0, "oracle": 13.0, "reda": 23.0, "om_sac": 18.0,
                "focal": 10.0, "om_bc": 6.0, "corro": 12.0, "pool": 0.3}
"""Rough wall minutes of each part of one collection at the default sizes (2-core AMD
EPYC, two collections side by side; 'pool': restoring and evaluating one finished run in
the pooled pass): the weights of `JobProgress`, whose ETA then follows the measured rate."""


class JobProgress:
    """One progress bar, with an ETA, over a whole didactic job: its parts (e.g. (0,
    'collect'), (0, 'reda'), (0, 'reda', 'pool')) each weighted by PART_MINUTES.
    update(part, fraction, restored) moves a part forward (never back); work that earlier
    processes did (restored=True) counts as done but not towards the rate, so the ETA
    follows this process's speed."""

    def __init__(self, parts, enabled: bool = True, desc: str = "didactic"):
        from tqdm import tqdm
        self.weights = {p: PART_MINUTES.get(p[-1] if p[-1] == "pool" else p[1], 10.0)
                        for p in parts}
        self.done = {p: 0.0 for p in self.weights}
        self.enabled = enabled
        self.n, self.restored = 0.0, 0.0     # work done, and the part of it restored
        self.bar = tqdm(total=sum(self.weights.values()), disable=not enabled, smoothing=0,
                        desc=desc, mininterval=2,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def update(self, part, fraction: float, restored: bool = False) -> None:
        new = max(self.done[part], min(max(fraction, 0.0), 1.0))
        delta = (new - self.done[part]) * self.weights[part]
        self.done[part] = new
        if delta <= 0:
            return
        if restored:
            self.restored += delta
            if self.enabled:
                self.bar.initial += delta     # tqdm's rate is (n - initial) / elapsed
        self.n += delta
        self.bar.update(delta)

    def fraction(self) -> float:
        total = sum(self.weights.values())
        return sum(self.done[p] * w for p, w in self.weights.items()) / total

    def write(self, line: str) -> None:
        """Prints a line above the bar (plainly when the bar is off)."""
        if self.enabled:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        self.bar.close()
