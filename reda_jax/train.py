"""The vmapped, scanned training loop: stages 1-3 of ReDA, evaluation, checkpoints, logs.

Every learner state has a leading seed axis S; each epoch is one jitted call of
`jax.vmap(epoch_fn)` whose body is a `lax.scan` over update steps. Python only loops over
epochs: it logs metrics (metrics.csv, TensorBoard), stops on a non-finite loss, saves an
orbax checkpoint per stage (at most every `checkpoint_interval_s` and at a stage's end),
and evaluates in the real simulator.

Determinism: the key of seed s, stage g and epoch e is fold_in(fold_in(fold_in(key(seed),
s), g), e), so a run killed anywhere and resumed from its last checkpoint repeats the
same epochs with the same keys and ends with the same result.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from reda_jax import configs
from reda_jax.algos import contrastive
from reda_jax.algos.reda import DynamicsData, ReDA, make_reda
from reda_jax.checkpoint import Checkpointer
from reda_jax.data.context import DeviceDataset, make_device_dataset, sample_context_windows, \
    stack_datasets
from reda_jax.envs.tasks import TaskSet
from reda_jax.eval import protocols
from reda_jax.metrics_log import STAGES, MetricsLog
from reda_jax.run_info import write_json_atomic

SCANNED = ("encoder/", "adversary/", "meta/")
PROTOCOLS = ("on_policy", "off_policy")


class Preempted(RuntimeError):
    """Raised when a Trainer's `epoch_budget` is used up (after saving a checkpoint)."""


class NonFiniteError(FloatingPointError):
    """A loss or metric became NaN or inf; the message names stage, epoch, step, quantity."""


@dataclasses.dataclass
class TrainData:
    """Host and device data of one run.

    train: DeviceDataset stacked over the T training tasks (the offline datasets);
    train_arrays: the same as host dicts (for the dynamics holdout split);
    test_train_tasks: DeviceDataset (T, ...) of the unseen-checkpoint data of the training
        tasks (encoder task-identification accuracy);
    contexts: {task name: DeviceDataset} unseen-checkpoint data of every task (off-policy
        evaluation contexts).
    """

    task_set: TaskSet
    train: DeviceDataset
    train_arrays: list[dict[str, np.ndarray]]
    test_train_tasks: DeviceDataset
    contexts: dict[str, DeviceDataset]


def make_train_data(task_set: TaskSet, train: Mapping[str, dict], test: Mapping[str, dict]
                    ) -> TrainData:
    """train: {train task name: arrays}; test: {task name: arrays} for every task."""
    names = [t.name for t in task_set.train_tasks]
    missing = [n for n in names if n not in train] + [t.name for t in task_set.all_tasks
                                                      if t.name not in test]
    if missing:
        raise ValueError(f"datasets missing for tasks {missing}")
    arrays = [train[n] for n in names]
    return TrainData(task_set=task_set, train=stack_datasets(arrays), train_arrays=arrays,
                     test_train_tasks=stack_datasets([test[n] for n in names]),
                     contexts={name: make_device_dataset(a) for name, a in test.items()})


def make_dynamics_data(arrays: Sequence[dict], config: configs.DynamicsConfig, seed: int
                       ) -> DynamicsData:
    """Holdout split per task (the same for every run seed), padded to fixed shapes."""
    rng = np.random.default_rng(seed)
    parts = []
    for a in arrays:
        x = np.concatenate([a["observations"], a["actions"]], -1).astype(np.float32)
        y = (a["next_observations"] - a["observations"]).astype(np.float32)
        r = np.asarray(a["rewards"], np.float32)[:, None]
        n = len(x)
        h = min(int(config.holdout_fraction * n) + 1, config.max_holdout)
        perm = rng.permutation(n)
        parts.append((x[perm[h:]], y[perm[h:]], r[perm[h:]], x[perm[:h]], y[perm[:h]], r[perm[:h]]))

    def pad_stack(items):
        n = max(len(i) for i in items)
        return np.stack([np.concatenate([i, np.zeros((n - len(i),) + i.shape[1:], i.dtype)])
                         for i in items]), np.array([len(i) for i in items], np.int32)

    x, n_tr = pad_stack([p[0] for p in parts])
    y, _ = pad_stack([p[1] for p in parts])
    hx, n_ho = pad_stack([p[3] for p in parts])
    hy, _ = pad_stack([p[4] for p in parts])
    rx = np.concatenate([p[0] for p in parts])
    ry = np.concatenate([p[2] for p in parts])
    rhx = np.concatenate([p[3] for p in parts])
    rhy = np.concatenate([p[5] for p in parts])
    return DynamicsData(
        inputs=jnp.asarray(x), targets=jnp.asarray(y), train_size=jnp.asarray(n_tr),
        holdout_inputs=jnp.asarray(hx), holdout_targets=jnp.asarray(hy),
        holdout_size=jnp.asarray(n_ho), reward_inputs=jnp.asarray(rx),
        reward_targets=jnp.asarray(ry), reward_train_size=jnp.asarray(len(rx), jnp.int32),
        reward_holdout_inputs=jnp.asarray(rhx), reward_holdout_targets=jnp.asarray(rhy),
        reward_holdout_size=jnp.asarray(len(rhx), jnp.int32))


def check_finite(stage: str, epoch: int, metrics: Mapping[str, np.ndarray]) -> None:
    """Raises NonFiniteError naming the first non-finite quantity (and its update step)."""
    for name, value in metrics.items():
        value = np.asarray(value, np.float64)
        if np.all(np.isfinite(value)):
            continue
        bad_seeds = sorted({int(i) for i in np.nonzero(~np.isfinite(value))[0]})
        where = f"epoch {epoch}"
        if name.startswith(SCANNED) and value.ndim >= 2:
            flat = ~np.isfinite(value.reshape(value.shape[0], value.shape[1], -1)).any(-1)
            step = int(np.argmax(flat.any(0)))
            where += f", update step {step + 1} of the epoch"
        raise NonFiniteError(f"non-finite {name} in stage {stage!r} at {where} "
                             f"(seeds {bad_seeds}); the run stops here")


def per_seed(metrics: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Means over every axis but the seed axis: {name: (S,)}."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v, np.float64)
        out[k] = v.reshape(v.shape[0], -1).mean(1)
    return out


def seed_keys(seed: int, num_seeds: int, stage: int) -> jax.Array:
    base = jax.random.key(seed)
    return jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(base, s), stage))(
        jnp.arange(num_seeds))


def epoch_keys(stage_keys: jax.Array, epoch: int) -> jax.Array:
    return jax.vmap(lambda k: jax.random.fold_in(k, epoch))(stage_keys)


class _StageCheckpoints:
    """A stage's orbax checkpoints plus its save cadence."""

    def __init__(self, workdir: Path, stage: str, interval_s: float):
        self.ckpt = Checkpointer(workdir / "checkpoints" / stage, max_to_keep=1)
        self.interval_s = interval_s
        self.last = time.time()

    def restore(self, like) -> tuple[Any, int, bool]:
        step = self.ckpt.latest_step()
        if step is None:
            return like, 0, False
        tree, meta = self.ckpt.restore(step, like)
        return jax.tree.map(jnp.asarray, tree), step, bool(meta.get("done", False))

    def maybe_save(self, epoch: int, tree, done: bool) -> None:
        if done or time.time() - self.last >= self.interval_s:
            self.ckpt.save(epoch, tree, {"done": done, "epoch": epoch})
            self.last = time.time()

    def done(self) -> bool:
        step = self.ckpt.latest_step()
        return step is not None and bool(self.ckpt.restore_meta(step).get("done", False))


def resume_position(workdir: Path) -> tuple[str, int] | None:
    """(stage, epoch) of the first unfinished stage with a checkpoint, None if fresh."""
    position = None
    for stage in STAGES:
        d = workdir / "checkpoints" / stage
        if not d.exists():
            break
        ck = Checkpointer(d)
        step = ck.latest_step()
        if step is None:
            break
        position = (stage, step)
        if not ck.restore_meta(step).get("done", False):
            break
    return position


def reuse_stages(workdir: Path, from_workdir: Path, from_stage: str) -> None:
    """Copies the finished checkpoints of the stages before `from_stage` from another run
    directory whose config agrees on everything those stages depend on."""
    if from_stage not in STAGES:
        raise ValueError(f"from_stage must be one of {STAGES}, got {from_stage!r}")
    ours = json.loads((workdir / "config.json").read_text())["train"]
    cfg_path = from_workdir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"--from_workdir {from_workdir} has no config.json")
    theirs = json.loads(cfg_path.read_text())["train"]
    needs = {"dynamics": ("task_set", "num_checkpoints", "num_seeds", "seed", "dynamics"),
             "representation": ("encoder", "representation")}
    keys: list[str] = []
    for stage in STAGES[:STAGES.index(from_stage)]:
        keys += needs[stage]
        differ = [k for k in keys if ours.get(k) != theirs.get(k)]
        if differ:
            raise ValueError(f"cannot reuse stage {stage!r} of {from_workdir}: config differs "
                             f"in {differ}")
        src = from_workdir / "checkpoints" / stage
        dst = workdir / "checkpoints" / stage
        if not _StageCheckpoints(from_workdir, stage, 0).done():
            raise ValueError(f"stage {stage!r} of {from_workdir} has not finished")
        if not dst.exists():
            shutil.copytree(src, dst)


class Trainer:
    """Runs (or resumes) one ReDA run in `workdir`; see the module doc."""

    def __init__(self, config: configs.TrainConfig, data: TrainData, workdir: str | os.PathLike,
                 show_progress: bool = True, log: Callable[[str], None] = print,
                 epoch_budget: int | None = None):
        """epoch_budget: stop with `Preempted` after this many epochs (over all stages) in
        this process, after checkpointing; run again to continue (e.g. on a preemptible
        scheduler with a time slot)."""
        self.config, self.data = config, data
        self.epoch_budget = epoch_budget
        self.workdir = Path(workdir)
        self.show_progress, self.log = show_progress, log
        ts = data.task_set
        self.dyn_data = None
        self.uses_models = config.representation.augmentation != "none"
        if self.uses_models:
            self.dyn_data = make_dynamics_data(data.train_arrays, config.dynamics, config.seed)
        n_train = int(np.max(np.asarray(self.dyn_data.train_size))) if self.dyn_data else 1
        n_rew = int(self.dyn_data.reward_train_size) if self.dyn_data else 1
        bs = config.dynamics.batch_size
        self.reda_steps = {"dynamics": math.ceil(n_train / bs), "reward": math.ceil(n_rew / bs)}
        self.reda: ReDA = make_reda(
            config, ts.obs_dim, ts.act_dim, len(ts.train_tasks), ts.termination_fn,
            steps_per_dynamics_epoch=self.reda_steps["dynamics"],
            steps_per_reward_epoch=self.reda_steps["reward"])
        self.metrics = MetricsLog(self.workdir)
        self.timing: dict[str, float] = {}
        S = config.num_seeds
        r = self.reda
        self._dyn_epoch = jax.jit(jax.vmap(r.dynamics_epoch, in_axes=(0, None, 0)), donate_argnums=0)
        self._rep_epoch = jax.jit(jax.vmap(r.representation_epoch, in_axes=(0, 0, None, 0)),
                                  donate_argnums=0)
        self._meta_epoch = jax.jit(jax.vmap(r.meta_epoch, in_axes=(0, 0, None, 0)),
                                   donate_argnums=0)
        self._accuracy = jax.jit(jax.vmap(self._encoder_accuracy, in_axes=(0, None, None, 0)))
        self._act = jax.jit(jax.vmap(r.act))
        self.num_seeds = S

    # ------------------------------------------------------------------ helpers
    def _encoder_accuracy(self, enc_params, train: DeviceDataset, test: DeviceDataset, key):
        """Task-identification accuracy of windows of the training data and of the unseen
        checkpoints' test data, against prototypes of the training data."""
        K, n = self.config.encoder.window, 1000
        k1, k2, k3 = jax.random.split(key, 3)
        win = lambda d, k: jax.vmap(lambda dd, kk: sample_context_windows(dd, kk, n, K))(
            d, jax.random.split(k, d.size.shape[0]))
        z_p, w_p = self.reda.encode_windows(enc_params, win(train, k1))
        protos = contrastive.prototypes(z_p, w_p)
        z_tr, w_tr = self.reda.encode_windows(enc_params, win(train, k2))
        z_te, w_te = self.reda.encode_windows(enc_params, win(test, k3))
        return {"train_task_id_accuracy": contrastive.task_id_accuracy(z_tr, protos, w_tr),
                "test_task_id_accuracy": contrastive.task_id_accuracy(z_te, protos, w_te)}

    def _bar(self, total: int, initial: int, desc: str):
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc=desc, disable=not self.show_progress,
                    unit="epoch", mininterval=2)

    def _spend(self, store: "_StageCheckpoints", epoch: int, tree, done: bool) -> None:
        """Saves if due; with an epoch budget, counts the epoch and stops when it is spent."""
        if self.epoch_budget is not None:
            self.epoch_budget -= 1
            if self.epoch_budget <= 0:
                store.ckpt.save(epoch, tree, {"done": done, "epoch": epoch})
                raise Preempted(f"epoch budget used up at epoch {epoch}; run again to resume")
        store.maybe_save(epoch, tree, done)

    def _epoch_done(self, stage: str, epoch: int, metrics: dict) -> dict[str, np.ndarray]:
        metrics = jax.device_get(metrics)
        check_finite(stage, epoch, metrics)
        seeds = per_seed(metrics)
        self.metrics.write(stage, epoch, seeds)
        return seeds

    # ------------------------------------------------------------------ stages
    def train_models(self):
        cfg = self.config.dynamics
        keys = seed_keys(self.config.seed, self.num_seeds, 1)
        init = jax.jit(jax.vmap(self.reda.init_models, in_axes=(0, None)))
        models = init(keys, self.dyn_data)
        store = _StageCheckpoints(self.workdir, "dynamics", self.config.checkpoint_interval_s)
        models, epoch, done = store.restore(models)
        bar = self._bar(cfg.max_epochs, epoch, "stage 1: dynamics")
        converged = jax.jit(jax.vmap(self.reda.models_converged))
        t0 = time.time()
        while not done:
            epoch += 1
            models, m = self._dyn_epoch(models, self.dyn_data, epoch_keys(keys, epoch))
            seeds = self._epoch_done("dynamics", epoch, m)
            done = bool(np.all(converged(models))) or epoch >= cfg.max_epochs
            self._spend(store, epoch, models, done)
            bar.update(1)
            bar.set_postfix(holdout_mse=f"{seeds['dynamics/holdout_mse'].mean():.4g}",
                            refresh=False)
        bar.close()
        self.timing["dynamics_s"] = time.time() - t0
        return models

    def train_representation(self, models):
        cfg = self.config.representation
        keys = seed_keys(self.config.seed, self.num_seeds, 2)
        state = jax.jit(jax.vmap(self.reda.init_representation))(keys)
        store = _StageCheckpoints(self.workdir, "representation",
                                  self.config.checkpoint_interval_s)
        state, epoch, done = store.restore(state)
        bar = self._bar(cfg.num_epochs, epoch, "stage 2: representation")
        acc_keys = seed_keys(self.config.seed, self.num_seeds, 4)
        t0 = time.time()
        while not done:
            epoch += 1
            state, m = self._rep_epoch(state, models, self.data.train, epoch_keys(keys, epoch))
            acc = self._accuracy(state.encoder.params, self.data.train,
                                 self.data.test_train_tasks, epoch_keys(acc_keys, epoch))
            m = {**m, **{f"encoder/{k}": v for k, v in acc.items()}}
            seeds = self._epoch_done("representation", epoch, m)
            done = epoch >= cfg.num_epochs
            self._spend(store, epoch, state, done)
            bar.update(1)
            bar.set_postfix(loss=f"{seeds['encoder/loss'].mean():.3f}",
                            test_acc=f"{seeds['encoder/test_task_id_accuracy'].mean():.2f}",
                            refresh=False)
        bar.close()
        self.timing["representation_s"] = time.time() - t0
        return state

    def evaluate(self, meta_state, enc_params, epoch: int) -> dict:
        ecfg = self.config.eval
        params = (meta_state.sac.actor_params, enc_params)
        act_fn = lambda p, q, c, m: self._act(p[0], p[1], q, c, m)
        out = {}
        train_names = [t.name for t in self.data.task_set.train_tasks]
        for protocol in PROTOCOLS:
            result = protocols.evaluate(
                self.data.task_set.all_tasks, act_fn, params, self.num_seeds,
                self.config.encoder.window, protocol, ecfg.num_episodes, ecfg.seed,
                max_steps=ecfg.max_steps, context_data=self.data.contexts)
            out[protocol] = protocols.summarize(result, train_task_names=train_names)
        record = {"epoch": epoch, **out}
        with open(self.workdir / "eval_history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return out

    def train_meta(self, enc_params):
        cfg = self.config.meta
        keys = seed_keys(self.config.seed, self.num_seeds, 3)
        state = jax.jit(jax.vmap(self.reda.init_meta))(keys)
        store = _StageCheckpoints(self.workdir, "meta_policy", self.config.checkpoint_interval_s)
        state, epoch, done = store.restore(state)
        _truncate_jsonl(self.workdir / "eval_history.jsonl", epoch)
        bar = self._bar(cfg.num_epochs, epoch, "stage 3: meta-policy")
        t0, t_eval = time.time(), 0.0
        while not done:
            epoch += 1
            state, m = self._meta_epoch(state, enc_params, self.data.train, epoch_keys(keys, epoch))
            self._epoch_done("meta_policy", epoch, m)
            done = epoch >= cfg.num_epochs
            if epoch % cfg.eval_every == 0 or done:
                te = time.time()
                summary = self.evaluate(state, enc_params, epoch)
                t_eval += time.time() - te
                bar.set_postfix(on=f"{summary['on_policy']['mean_return']:.0f}",
                                off=f"{summary['off_policy']['mean_return']:.0f}", refresh=False)
            self._spend(store, epoch, state, done)
            bar.update(1)
        bar.close()
        self.timing["meta_policy_s"] = time.time() - t0 - t_eval
        self.timing["evaluation_s"] = t_eval
        return state

    def run(self) -> dict:
        """Runs the remaining stages; returns (and writes results.json) the final evaluation."""
        position = resume_position(self.workdir)
        if position is not None:
            self.metrics.truncate(*position)
            self.log(f"resuming from {position[0]} epoch {position[1]}")
        t0 = time.time()
        models = self.train_models() if self.uses_models else None
        rep = self.train_representation(models)
        enc_params = rep.encoder.params
        keys = seed_keys(self.config.seed, self.num_seeds, 4)
        acc = jax.device_get(self._accuracy(enc_params, self.data.train,
                                            self.data.test_train_tasks, epoch_keys(keys, 0)))
        self.train_meta(enc_params)
        history = [json.loads(l) for l in open(self.workdir / "eval_history.jsonl")]
        final = history[-1]
        results = {
            "algo": self.config.algo, "task_set": self.config.task_set,
            "num_checkpoints": self.config.num_checkpoints, "num_seeds": self.num_seeds,
            "augmentation": self.config.representation.augmentation,
            "epoch": final["epoch"],
            "protocols": {p: final[p] for p in PROTOCOLS},
            "encoder_accuracy": {k: {"per_seed": np.asarray(v).tolist(),
                                     "mean": float(np.mean(v)), "std": float(np.std(v))}
                                 for k, v in acc.items()},
            "timing_s": {**self.timing, "total_this_process": time.time() - t0},
        }
        write_json_atomic(self.workdir / "results.json", results)
        self.metrics.close()
        return results


def _truncate_jsonl(path: Path, epoch: int) -> None:
    if not path.exists():
        return
    keep = [l for l in path.read_text().splitlines() if l and json.loads(l)["epoch"] <= epoch]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(l + "\n" for l in keep))
    os.replace(tmp, path)


def results_table(results: dict) -> str:
    """Markdown: rows = tasks, columns = protocols (mean ± std over seeds)."""
    return protocols.format_table(results["protocols"])
