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
from reda_jax.algos import contrastive, dynamics
from reda_jax.algos.reda import DynamicsData, make_task_models
from reda_jax.checkpoint import Checkpointer
from reda_jax.data.context import DeviceDataset, make_device_dataset, sample_task_windows, \
    stack_datasets
from reda_jax.envs.tasks import TaskSet
from reda_jax.eval import protocols, readout
from reda_jax.method_names import method_of
from reda_jax.methods import Method, make_method, task_features
from reda_jax.metrics_log import STAGES, MetricsLog, copy_stage_rows
from reda_jax.run_info import write_json_atomic
from reda_jax.sharding import shard_seeds
from reda_jax.validate import InputError

SCANNED = ("encoder/", "adversary/", "meta/", "generative/")
EMBEDDING_WINDOWS = 200  # context windows per task and seed in embeddings.npz
# Wall seconds per stage ('stage1_s', 'representation_s', 'meta_policy_s', 'evaluation_s'),
# summed over every process that worked on the run (epochs redone after a kill included).
TIMING_FILE = "timing.json"


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
        evaluation contexts);
    test_all_tasks: the same stacked over every task of the set, in `all_tasks` order
        (embeddings.npz).
    """

    task_set: TaskSet
    train: DeviceDataset
    train_arrays: list[dict[str, np.ndarray]]
    test_train_tasks: DeviceDataset
    contexts: dict[str, DeviceDataset]
    test_all_tasks: DeviceDataset


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
                     contexts={name: make_device_dataset(a) for name, a in test.items()},
                     test_all_tasks=stack_datasets([test[t.name] for t in task_set.all_tasks]))


def make_dynamics_data(arrays: Sequence[dict], config: configs.DynamicsConfig, seed: int
                       ) -> DynamicsData:
    """Holdout split per task (`dynamics.split_holdout`, the same for every run seed),
    padded to the largest task; the reward model's data concatenate every task's rows, and
    so do pooled task models' ([s, a, one-hot of the task], s' - s) with a leading axis 1."""
    rng = np.random.default_rng(seed)
    num_rows = max(len(a["rewards"]) for a in arrays)
    splits = [dynamics.split_holdout(rng, len(a["rewards"]), num_rows, config) for a in arrays]
    dyn = [dynamics.dynamics_arrays(a) for a in arrays]     # per task ([s, a], s' - s)
    rew = [dynamics.reward_arrays(a) for a in arrays]       # per task ([s, a], r)
    if config.task_models == "pooled":
        T = len(arrays)
        dyn = [(np.concatenate([x, np.broadcast_to(np.eye(T, dtype=x.dtype)[k],
                                                   x.shape[:-1] + (T,))], -1), y)
               for k, (x, y) in enumerate(dyn)]

    def padded(pairs, field, part):   # part 0: train rows, 1: holdout rows
        return jnp.asarray(np.stack([p[field][s[part]] for p, s in zip(pairs, splits)]),
                           jnp.float32)

    def joined(pairs, field, part):   # the valid rows of every task, concatenated
        return jnp.asarray(np.concatenate([p[field][s[part][:s[2 + part]]]
                                           for p, s in zip(pairs, splits)]), jnp.float32)

    reward_inputs, reward_holdout = joined(rew, 0, 0), joined(rew, 0, 1)
    if config.task_models == "pooled":
        one = lambda x: x[None]
        model = dict(inputs=one(joined(dyn, 0, 0)), targets=one(joined(dyn, 1, 0)),
                     holdout_inputs=one(joined(dyn, 0, 1)), holdout_targets=one(joined(dyn, 1, 1)),
                     train_size=jnp.asarray([sum(s[2] for s in splits)], jnp.int32),
                     holdout_size=jnp.asarray([sum(s[3] for s in splits)], jnp.int32))
    else:
        model = dict(inputs=padded(dyn, 0, 0), targets=padded(dyn, 1, 0),
                     holdout_inputs=padded(dyn, 0, 1), holdout_targets=padded(dyn, 1, 1),
                     train_size=jnp.asarray([s[2] for s in splits], jnp.int32),
                     holdout_size=jnp.asarray([s[3] for s in splits], jnp.int32))
    return DynamicsData(
        **model,
        reward_inputs=reward_inputs, reward_targets=joined(rew, 1, 0),
        reward_train_size=jnp.asarray(len(reward_inputs), jnp.int32),
        reward_holdout_inputs=reward_holdout, reward_holdout_targets=joined(rew, 1, 1),
        reward_holdout_size=jnp.asarray(len(reward_holdout), jnp.int32))


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
    """(S,) keys of a stage; split over devices along the seed axis when there are
    several (`reda_jax.sharding`), so every state made from them is too."""
    base = jax.random.key(seed)
    return shard_seeds(jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(base, s),
                                                             stage))(jnp.arange(num_seeds)))


def epoch_keys(stage_keys: jax.Array, epoch: int) -> jax.Array:
    return jax.vmap(lambda k: jax.random.fold_in(k, epoch))(stage_keys)


CHECKPOINTS_KEPT = 2  # per stage: the newest, and one to fall back to if it is unreadable
# Config fields each stage's result depends on (cumulative); meta_policy: all of them.
STAGE_FIELDS = {"dynamics": ("algo", "task_set", "num_checkpoints", "num_seeds", "seed",
                             "dynamics", "corro"),
                "representation": ("algo", "task_set", "num_checkpoints", "num_seeds", "seed",
                                   "dynamics", "corro", "encoder", "representation", "focal")}
IGNORED_FIELDS = ("checkpoint_interval_s",)   # do not change what a stage computes


def config_diff(saved: Mapping, current: Mapping, stage: str) -> list[str]:
    """Dotted names of the fields `stage` depends on where two config dicts differ
    (`configs.differing_fields`)."""
    keys = STAGE_FIELDS.get(stage) or [k for k in set(saved) | set(current)
                                       if k not in IGNORED_FIELDS]
    return configs.differing_fields({k: saved.get(k) for k in keys if k in saved},
                                    {k: current.get(k) for k in keys if k in current})


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


class _StageCheckpoints:
    """A stage's orbax checkpoints (the newest CHECKPOINTS_KEPT) plus its save cadence;
    each checkpoint's metadata holds the config that made it."""

    def __init__(self, workdir: Path, stage: str, interval_s: float,
                 config: Mapping | None = None, log: Callable[[str], None] = print):
        """config: `configs.to_dict` of the run's TrainConfig (None: not recorded/checked)."""
        self.dir = workdir / "checkpoints" / stage
        self.stage = stage
        self.ckpt = Checkpointer(self.dir, max_to_keep=CHECKPOINTS_KEPT)
        self.config = None if config is None else json.loads(json.dumps(config, default=str))
        self.interval_s = interval_s
        self.log = log
        self.last = time.time()

    def _meta(self, step: int) -> dict:
        meta = self.ckpt.restore_meta(step)
        saved = meta.get("config")
        if saved is not None and self.config is not None:
            diff = config_diff(saved, self.config, self.stage)
            if diff:
                raise InputError(f"{self.dir / str(step)} was made under a different config "
                                 f"(fields {diff}); use the flags that made it, another "
                                 f"--workdir, or delete {self.dir.parent.parent}")
        return meta

    def newest_meta(self) -> tuple[int, dict] | None:
        """(step, metadata) of the newest checkpoint whose metadata reads, None if none;
        raises InputError if it was made under another config."""
        for step in reversed(self.ckpt.all_steps()):
            try:
                return step, self._meta(step)
            except (InputError, KeyboardInterrupt):
                raise
            except Exception:
                continue
        return None

    def restore(self, like) -> tuple[Any, int, bool]:
        """(tree, epoch, done) of the newest checkpoint that restores, falling back to older
        ones (saying so); (like, 0, False) when there is none."""
        steps = list(reversed(self.ckpt.all_steps()))
        problems = []
        for step in steps:
            try:
                meta = self._meta(step)
                tree, _ = self.ckpt.restore(step, like)
            except (InputError, KeyboardInterrupt):
                raise
            except Exception as e:
                problems.append(f"step {step}: {_first_line(e)}")
                self.log(f"warning: checkpoint {self.dir / str(step)} cannot be restored "
                         f"({_first_line(e)}); trying an older one")
                continue
            if problems:
                self.log(f"resuming stage {self.stage!r} from the older checkpoint {step}; "
                         "the unreadable newer ones are removed")
                self._remove_after(step)
            return jax.tree.map(jnp.asarray, tree), step, bool(meta.get("done", False))
        if problems:
            raise InputError(f"{self.dir}: no checkpoint of stage {self.stage!r} can be "
                             f"restored ({'; '.join(problems)}); delete {self.dir} to redo "
                             "the stage")
        return like, 0, False

    def _remove_after(self, step: int) -> None:
        """Deletes the step directories after `step` (unreadable; saves would collide)."""
        for p in self.dir.iterdir():
            if p.is_dir() and p.name.isdigit() and int(p.name) > step:
                shutil.rmtree(p)
        self.ckpt.close()
        self.ckpt = Checkpointer(self.dir, max_to_keep=CHECKPOINTS_KEPT)

    def maybe_save(self, epoch: int, tree, done: bool, force: bool = False) -> None:
        if force or done or time.time() - self.last >= self.interval_s:
            meta = {"done": done, "epoch": epoch}
            if self.config is not None:
                meta["config"] = self.config
            self.ckpt.save(epoch, tree, meta)
            self.last = time.time()

    def done(self) -> bool:
        found = self.newest_meta()
        return found is not None and bool(found[1].get("done", False))


def check_run_checkpoints(workdir: Path, config: configs.TrainConfig) -> None:
    """Refuses (InputError naming the fields) a run directory whose checkpoints were made
    under another config, whether or not its config.json is still there."""
    current = configs.to_dict(config)
    for stage in STAGES:
        if (workdir / "checkpoints" / stage).is_dir():
            _StageCheckpoints(workdir, stage, 0, current).newest_meta()


def resume_position(workdir: Path) -> tuple[str, int] | None:
    """(stage, epoch) of the first unfinished stage with a checkpoint, None if fresh."""
    position = None
    for stage in STAGES:
        d = workdir / "checkpoints" / stage
        if not d.exists():
            break
        found = _StageCheckpoints(workdir, stage, 0).newest_meta()
        if found is None:
            break
        position = (stage, found[0])
        if not found[1].get("done", False):
            break
    return position


def reuse_stages(workdir: Path, from_workdir: Path, from_stage: str) -> None:
    """Copies the finished checkpoints of the stages before `from_stage` from another run
    directory whose config agrees on everything those stages depend on, with their rows of
    metrics.csv. Stages the other run has no checkpoints of (its method has no such stage)
    are skipped."""
    if from_stage not in STAGES:
        raise InputError(f"--from_stage: must be one of {', '.join(STAGES)}, got {from_stage!r}")
    ours = json.loads((workdir / "config.json").read_text())["train"]
    cfg_path = from_workdir / "config.json"
    if not cfg_path.exists():
        raise InputError(f"--from_workdir: {from_workdir} has no config.json")
    theirs = json.loads(cfg_path.read_text())["train"]
    for stage in STAGES[:STAGES.index(from_stage)]:
        differ = config_diff(theirs, ours, stage)
        if differ:
            raise InputError(f"cannot reuse stage {stage!r} of {from_workdir}: config differs "
                             f"in {differ}")
        src = from_workdir / "checkpoints" / stage
        dst = workdir / "checkpoints" / stage
        if not src.exists():
            continue
        if not _StageCheckpoints(from_workdir, stage, 0, ours).done():
            raise InputError(f"cannot reuse stage {stage!r} of {from_workdir}: it has not "
                             "finished")
        if not dst.exists():
            tmp = dst.with_name(dst.name + ".copying")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            copy_stage_rows(from_workdir, workdir, stage)
            os.replace(tmp, dst)


class Trainer:
    """Runs (or resumes) one run of any method (`reda_jax.methods`) in `workdir`; see the
    module doc."""

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
        T = len(ts.train_tasks)
        self.stage1_data = None
        steps = {"dynamics": 1, "reward": 1}
        needs_models = config.algo == "reda" and config.representation.augmentation != "none"
        if needs_models:
            self.stage1_data = make_dynamics_data(data.train_arrays, config.dynamics, config.seed)
            bs = config.dynamics.batch_size
            steps = {"dynamics": math.ceil(int(np.max(np.asarray(self.stage1_data.train_size)))
                                           / bs),
                     "reward": math.ceil(int(self.stage1_data.reward_train_size) / bs)}
        self.reda_steps = steps  # dynamics / reward model updates per stage-1 epoch
        rewards = np.concatenate([a["rewards"] for a in data.train_arrays])
        simulator = None
        if needs_models and config.representation.rollout_physics == "simulator":
            from reda_jax.envs.mjx_physics import make_simulator_step
            simulator = make_simulator_step(ts.train_tasks)
        self.method: Method = make_method(
            config, ts.obs_dim, ts.act_dim, T, ts.termination_fn,
            steps_per_dynamics_epoch=steps["dynamics"], steps_per_reward_epoch=steps["reward"],
            reward_range=(float(rewards.min()), float(rewards.max())),
            train_multipliers=tuple(t.multiplier for t in ts.train_tasks),
            simulator=simulator, **method_data_stats(config.algo, data.train_arrays))
        if self.method.stage1 == "generative":
            self.stage1_data = data.train
        self.meta_data = data.train
        if self.method.meta_data_kind == "dt":
            from reda_jax.baselines.prompt_dt import make_dt_data
            self.meta_data = make_dt_data(data.train_arrays)
        self.metrics = MetricsLog(self.workdir)
        self.timing: dict[str, float] = _read_timing(self.workdir)
        self.num_seeds = config.num_seeds
        m = self.method
        # The method's epoch functions and policy, vmapped over seeds and jitted (public:
        # experiments/harness.py and the benchmarks time exactly what a run executes).
        if m.stage1 is not None:
            self.stage1_epoch_fn = jax.jit(jax.vmap(m.stage1_epoch, in_axes=(0, None, 0)),
                                           donate_argnums=0)
        if m.init_representation is not None:
            self.representation_epoch_fn = jax.jit(
                jax.vmap(m.representation_epoch, in_axes=(0, 0, None, 0)), donate_argnums=0)
        self.meta_epoch_fn = jax.jit(jax.vmap(m.meta_epoch, in_axes=(0, 0, None, 0)),
                                     donate_argnums=0)
        if m.encode is not None:
            self._accuracy = jax.jit(jax.vmap(self._encoder_accuracy,
                                              in_axes=(0, 0, None, None, 0)))
            self._embed = jax.jit(jax.vmap(self._embeddings, in_axes=(0, 0, None, 0)))
        self.act_fn = jax.jit(jax.vmap(m.act))
        self.simulators = None   # protocols.make_simulators, on the first evaluation

    @property
    def final_params(self) -> tuple[Any, Any]:
        """After `run`: (frozen, trainable) encoder parameters of the final policy."""
        meta_state, frozen = self.final_state
        return frozen, self.method.trainable_params(meta_state)

    # ------------------------------------------------------------------ helpers
    def encode_windows(self, frozen, trainable, batch) -> tuple[jax.Array, jax.Array]:
        """z (..., Z) and weights (...) of ContextBatch windows (any leading dims)."""
        tokens, mask, query = contrastive.tokens_from_context(batch)
        return self.method.encode(frozen, trainable, query, tokens, mask), mask[..., -1]

    def _windows(self, data: DeviceDataset, key, n: int):
        return sample_task_windows(data, key, n, self.method.window)

    def _encoder_accuracy(self, frozen, trainable, train: DeviceDataset, test: DeviceDataset, key):
        """Task-identification accuracy (nearest prototype in Euclidean distance, as the
        read-out, `reda_jax.eval.readout`) of windows of the training data and of the
        unseen checkpoints' test data, against prototypes of the training data."""
        n = 1000
        k1, k2, k3 = jax.random.split(key, 3)
        z_p, w_p = self.encode_windows(frozen, trainable, self._windows(train, k1, n))
        protos = contrastive.prototypes(z_p, w_p)
        own = jnp.arange(protos.shape[0])[:, None]

        def accuracy(data, k):
            z, w = self.encode_windows(frozen, trainable, self._windows(data, k, n))
            return contrastive.weighted_mean(contrastive.nearest_prototype_hits(z, protos, own),
                                             w)

        return {"train_task_id_accuracy": accuracy(train, k2),
                "test_task_id_accuracy": accuracy(test, k3)}

    def _embeddings(self, frozen, trainable, data: DeviceDataset, key):
        """z (T_all, n, Z) of n windows of every task's test data."""
        return self.encode_windows(frozen, trainable,
                                   self._windows(data, key, EMBEDDING_WINDOWS))[0]

    def embed(self, data: DeviceDataset, key_index: int = 0) -> np.ndarray:
        """After `run`: z (S, D, n, Z) of n = EMBEDDING_WINDOWS windows of each of the D
        datasets stacked in `data` (a DeviceDataset with a leading dataset axis)."""
        keys = epoch_keys(seed_keys(self.config.seed, self.num_seeds, 5), key_index)
        return np.asarray(jax.device_get(self._embed(*self.final_params, data, keys)))

    def _bar(self, total: int, initial: int, desc: str):
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc=desc, disable=not self.show_progress,
                    unit="epoch", mininterval=2)

    def _spend(self, store: "_StageCheckpoints", epoch: int, tree, done: bool) -> None:
        """Saves if due; with an epoch budget, counts the epoch and stops when it is spent."""
        if self.epoch_budget is not None:
            self.epoch_budget -= 1
            if self.epoch_budget <= 0:
                store.maybe_save(epoch, tree, done, force=True)
                raise Preempted(f"epoch budget used up at epoch {epoch}; run again to resume")
        store.maybe_save(epoch, tree, done)

    def _clock(self, key: str, since: float) -> float:
        """Adds the wall seconds since `since` to timing[key] (kept in timing.json, so a
        resumed run's results.json counts every process's time); returns now. Called before
        an epoch's checkpoint, so an epoch budget's stop keeps that epoch's time."""
        now = time.time()
        self.timing[key] = self.timing.get(key, 0.0) + now - since
        write_json_atomic(self.workdir / TIMING_FILE, self.timing)
        return now

    def _store(self, stage: str) -> _StageCheckpoints:
        return _StageCheckpoints(self.workdir, stage, self.config.checkpoint_interval_s,
                                 configs.to_dict(self.config), self.log)

    def _cut_logs(self, stage: str, epoch: int, done: bool) -> None:
        """Cuts metrics.csv back to the restored checkpoint (epoch 0: no checkpoint yet).
        An unfinished stage makes later stages' rows and checkpoints invalid."""
        self.metrics.truncate(stage, epoch, later=not done)
        if not done:
            for later in STAGES[STAGES.index(stage) + 1:]:
                d = self.workdir / "checkpoints" / later
                if d.is_dir() and any(p.name[:1].isdigit() for p in d.iterdir()):
                    self.log(f"warning: stage {stage!r} resumes at epoch {epoch}, so the "
                             f"checkpoints of the later stage {later!r} are dropped")
                    shutil.rmtree(d)
        have = self.metrics.last_epoch(stage)
        if have < epoch:
            self.log(f"warning: {self.metrics.path} lacks stage {stage!r} epochs "
                     f"{have + 1}-{epoch} (deleted or cut by hand?); they are not logged again")

    def _epoch_done(self, stage: str, epoch: int, metrics: dict) -> dict[str, np.ndarray]:
        metrics = jax.device_get(metrics)
        check_finite(stage, epoch, metrics)
        seeds = per_seed(metrics)
        self.metrics.write(stage, epoch, seeds)
        return seeds

    def _run_stage(self, stage: str, desc: str, clock: str, state, num_epochs: int,
                   epoch_fn: Callable, converged: Callable | None = None,
                   restored: Callable | None = None, after_epoch: Callable | None = None):
        """The loop every stage shares. Restores `state` (the stage's initial state, seeds
        leading) from the stage's newest checkpoint, cuts the logs back to it and calls
        restored(epoch, done); then, until epoch == num_epochs or converged(state):
        epoch_fn(state, epoch) -> (state, metrics) for epoch 1, 2, ..., the NaN guard and
        metrics.csv (`_epoch_done`), wall time under timing[clock], after_epoch(state,
        epoch, done, per-seed metrics) -> progress-bar postfix or None (its own time is its
        own to count), the checkpoint and the epoch budget (`_spend`). Returns (the final
        state, its epoch)."""
        store = self._store(stage)
        state, epoch, done = store.restore(state)
        state = shard_seeds(state, self.num_seeds)
        self._cut_logs(stage, epoch, done)
        if restored is not None:
            restored(epoch, done)
        bar = self._bar(num_epochs, epoch, desc)
        t0 = time.time()
        while not done:
            epoch += 1
            state, metrics = epoch_fn(state, epoch)
            seeds = self._epoch_done(stage, epoch, metrics)
            done = epoch >= num_epochs or (converged is not None and converged(state))
            self._clock(clock, t0)
            postfix = after_epoch(state, epoch, done, seeds) if after_epoch else None
            t0 = time.time()
            self._spend(store, epoch, state, done)
            bar.update(1)
            if postfix:
                bar.set_postfix(postfix, refresh=False)
        bar.close()
        return state, epoch

    # ------------------------------------------------------------------ stages
    def train_stage1(self):
        """Stage 1 ('dynamics' directory): ReDA's models or CORRO's CVAE."""
        m = self.method
        keys = seed_keys(self.config.seed, self.num_seeds, 1)
        state = jax.jit(jax.vmap(m.init_stage1, in_axes=(0, None)))(keys, self.stage1_data)
        converged = jax.jit(jax.vmap(m.stage1_converged))

        def epoch_fn(state, epoch):
            return self.stage1_epoch_fn(state, self.stage1_data, epoch_keys(keys, epoch))

        def postfix(state, epoch, done, seeds):
            key = "dynamics/holdout_mse" if "dynamics/holdout_mse" in seeds else next(iter(seeds))
            return {key.split("/")[-1]: f"{seeds[key].mean():.4g}"}

        desc = "stage 1: dynamics" if m.stage1 == "dynamics" else "stage 1: generative model"
        state, _ = self._run_stage("dynamics", desc, "stage1_s", state, m.stage1_epochs,
                                   epoch_fn, converged=lambda s: bool(np.all(converged(s))),
                                   after_epoch=postfix)
        return state

    def train_representation(self, stage1_state):
        m = self.method
        keys = seed_keys(self.config.seed, self.num_seeds, 2)
        state = jax.jit(jax.vmap(m.init_representation))(keys)
        acc_keys = seed_keys(self.config.seed, self.num_seeds, 4)
        final_encoder = not self.trains_encoder_in_meta()

        def restored(epoch, done):   # stage 1 is built (or restored) only if still needed
            nonlocal stage1_state
            if not done and callable(stage1_state):
                stage1_state = stage1_state()

        def epoch_fn(state, epoch):
            state, metrics = self.representation_epoch_fn(state, stage1_state, self.data.train,
                                                          epoch_keys(keys, epoch))
            if final_encoder:  # the encoder is final: its accuracies are meaningful now
                acc = self._accuracy(m.frozen_params(state), {},
                                     self.data.train, self.data.test_train_tasks,
                                     epoch_keys(acc_keys, epoch))
                metrics = {**metrics, **{f"encoder/{k}": v for k, v in acc.items()}}
            return state, metrics

        def postfix(state, epoch, done, seeds):
            return {k.split("/")[-1]: f"{v.mean():.3f}" for k, v in seeds.items()
                    if k.endswith(("/loss", "test_task_id_accuracy"))}

        state, _ = self._run_stage("representation", "stage 2: representation",
                                   "representation_s", state, m.representation_epochs,
                                   epoch_fn, restored=restored, after_epoch=postfix)
        return state

    def trains_encoder_in_meta(self) -> bool:
        """Whether stage 3 trains encoder parameters too (om_sac, om_bc, corro's E2)."""
        shapes = jax.eval_shape(jax.vmap(self.method.init_meta),
                                seed_keys(self.config.seed, self.num_seeds, 3))
        return bool(jax.tree.leaves(self.method.trainable_params(shapes)))

    def train_encoder(self) -> tuple[Any, Any]:
        """Trains only as far as the encoder is final: stages 1-2, or the whole run where
        stage 3 trains encoder parameters too. -> (frozen, trainable) encoder parameters
        with a leading seed axis (what `encoder_readout` reads)."""
        m = self.method
        if m.encode is None:
            raise InputError(f"{self.config.algo!r} has no learned task representation")
        if self.trains_encoder_in_meta():
            self.run()
            return self.final_params
        stage1 = self.train_stage1() if m.stage1 is not None else None
        rep = self.train_representation(stage1) if m.init_representation is not None else None
        return m.frozen_params(rep), {}

    def encoder_readout(self, frozen, trainable, num_windows: int = 1000,
                        key_index: int = 0, data: TrainData | None = None
                        ) -> dict[str, np.ndarray]:
        """`readout.encoder_readout` of each seed's encoder -> {name: (S,)}: accuracies on
        training, unseen-checkpoint and unseen-task windows, the linear probe, d(phi); on
        `data` (default: the run's own)."""
        m, data = self.method, data or self.data

        def one(f, t, key):
            return readout.encoder_readout(lambda b: self.encode_windows(f, t, b), data.train,
                                           data.test_train_tasks, data.test_all_tasks, key,
                                           num_windows, m.window)

        keys = epoch_keys(seed_keys(self.config.seed, self.num_seeds, 6), key_index)
        trainable_axis = 0 if jax.tree.leaves(trainable) else None
        out = jax.jit(jax.vmap(one, in_axes=(0, trainable_axis, 0)))(frozen, trainable, keys)
        return {k: np.asarray(v) for k, v in jax.device_get(out).items()}

    def dynamics_readout(self, stage1_state, num_transitions: int = 1000,
                         key_index: int = 0) -> dict[str, np.ndarray]:
        """`readout.model_readout` of each seed's stage-1 task dynamics models (ReDA's
        stage1_state, leading seed axis) -> {name: (S,)}."""
        data, models = self.data, self._task_models()
        T = len(data.task_set.train_tasks)

        def one(state, key):
            predict = lambda o, a: jax.vmap(
                lambda k: models.next_state(state.dynamics, k, o, a))(jnp.arange(T))
            return readout.model_readout(predict, data.train, data.test_train_tasks, key,
                                         num_transitions)

        keys = epoch_keys(seed_keys(self.config.seed, self.num_seeds, 7), key_index)
        out = jax.jit(jax.vmap(one))(stage1_state, keys)
        return {k: np.asarray(v) for k, v in jax.device_get(out).items()}

    def _task_models(self):
        ts = self.data.task_set
        return make_task_models(self.config.dynamics, ts.obs_dim, ts.act_dim,
                                len(ts.train_tasks))

    def physics_readout(self, stage1_state, num_transitions: int = 500
                        ) -> dict[str, np.ndarray]:
        """`physics.physics_readout` of each seed's stage-1 task models against the real
        simulator, at n = num_transitions evenly spaced rows of every training task's
        unseen-checkpoint data (keys as returned) and of its training data (keys prefixed
        'train_') -> {name: (S,)}."""
        from reda_jax.eval import physics
        ts, models = self.data.task_set, self._task_models()
        T = len(ts.train_tasks)
        mean_next = jax.jit(jax.vmap(jax.vmap(        # (seed, task model)
            lambda st, k, o, a: models.next_state(st, k, o, a)[0].mean(0),
            in_axes=(None, 0, None, None)), in_axes=(0, None, None, None)))
        result = {}
        for prefix, data in (("", self.data.test_train_tasks), ("train_", self.data.train)):
            host = jax.device_get(data)
            rows = [np.linspace(0, int(host.size[k]) - 1, num_transitions).astype(int)
                    for k in range(T)]
            take = lambda x: np.stack([np.asarray(x[k])[rows[k]] for k in range(T)])
            obs, act = take(host.transitions.observations), take(host.transitions.actions)
            true_next = np.stack([np.stack([physics.simulated_next_observations(
                ts, task.multiplier, obs[k], act[k]) for k in range(T)])
                for task in ts.train_tasks])                         # (T_phys, T, n, ds)
            model_mean = np.asarray(mean_next(stage1_state.dynamics, jnp.arange(T), obs,
                                              act))                    # (S, Tm, T, n, ds)
            out = [physics.physics_readout(true_next, m, take(host.transitions.next_observations))
                   for m in model_mean]
            result.update({prefix + k: np.array([o[k] for o in out]) for k in out[0]})
        return result

    def evaluate_policy(self, meta_state, frozen, protocol: str,
                        contexts: Mapping[str, Any] | None = None) -> dict:
        """`protocols.summarize` of one protocol in the real simulator, every task of the
        set; off_policy contexts come from `contexts` ({task name: data}; default: the
        unseen-checkpoint data)."""
        ecfg = self.config.eval
        params = (self.method.act_params(meta_state), frozen)  # only what acting reads
        act_fn = lambda p, *args, **kw: self.act_fn(p[0], p[1], *args, **kw)
        tasks = self.data.task_set.all_tasks
        feats = task_features([t.multiplier for t in tasks],
                              [t.multiplier for t in self.data.task_set.train_tasks],
                              self.config.meta.oracle_code) \
            if self.method.task_conditioned else None
        if self.simulators is None:   # made once: the same tasks and sizes every time
            self.simulators = protocols.make_simulators(tasks, self.num_seeds,
                                                         ecfg.num_episodes)
        result = protocols.evaluate(
            tasks, act_fn, params, self.num_seeds, self.method.window, protocol,
            ecfg.num_episodes, ecfg.seed, max_steps=ecfg.max_steps,
            context_data=self.data.contexts if contexts is None else contexts,
            history=self.method.history, task_features=feats, simulators=self.simulators)
        return protocols.summarize(
            result, train_task_names=[t.name for t in self.data.task_set.train_tasks])

    def evaluate(self, meta_state, frozen, epoch: int) -> dict:
        """Both protocols; appends them to eval_history.jsonl."""
        out = {p: self.evaluate_policy(meta_state, frozen, p) for p in configs.PROTOCOLS}
        record = {"epoch": epoch, **out}
        with open(self.workdir / "eval_history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return out

    def train_meta(self, frozen):
        m = self.method
        keys = seed_keys(self.config.seed, self.num_seeds, 3)
        state = jax.jit(jax.vmap(m.init_meta))(keys)
        history_path = self.workdir / "eval_history.jsonl"

        def epoch_fn(state, epoch):
            return self.meta_epoch_fn(state, frozen, self.meta_data, epoch_keys(keys, epoch))

        def evaluate(state, epoch, done, seeds):
            if epoch % m.eval_every and not done:
                return None
            since = time.time()
            summary = self.evaluate(state, frozen, epoch)
            self._clock("evaluation_s", since)
            return {"on": f"{summary['on_policy']['mean_return']:.0f}",
                    "off": f"{summary['off_policy']['mean_return']:.0f}"}

        state, epoch = self._run_stage(
            "meta_policy", "stage 3: meta-policy", "meta_policy_s", state, m.meta_epochs,
            epoch_fn, restored=lambda epoch, done: _truncate_jsonl(history_path, epoch),
            after_epoch=evaluate)
        history = _read_jsonl(self.workdir / "eval_history.jsonl")
        if not history or history[-1]["epoch"] != epoch:
            self.log(f"warning: {self.workdir / 'eval_history.jsonl'} lacks the final epoch "
                     f"{epoch} (deleted or cut?); evaluating the final policy again")
            self.evaluate(state, frozen, epoch)
        return state

    def run(self) -> dict:
        """Runs the remaining stages; returns (and writes results.json) the final evaluation;
        writes embeddings.npz for methods with a task representation."""
        m = self.method
        position = resume_position(self.workdir)
        if position is not None:
            self.log(f"resuming from {position[0]} epoch {position[1]}")
        t0 = time.time()
        stage1 = self.train_stage1 if m.stage1 is not None else None
        rep_done = (m.init_representation is not None
                    and (self.workdir / "checkpoints" / "representation").is_dir()
                    and self._store("representation").done())
        if stage1 is not None and not rep_done:  # a finished stage 2 no longer needs it
            stage1 = stage1()
        rep = self.train_representation(stage1) if m.init_representation is not None else None
        frozen = m.frozen_params(rep)
        meta_state = self.train_meta(frozen)
        acc = {}
        self.final_state = (meta_state, frozen)   # for evaluate_policy(*final_state, ...)
        if m.encode is not None:
            trainable = m.trainable_params(meta_state)
            keys = seed_keys(self.config.seed, self.num_seeds, 4)
            acc = jax.device_get(self._accuracy(frozen, trainable, self.data.train,
                                                self.data.test_train_tasks, epoch_keys(keys, 0)))
            z = jax.device_get(self._embed(frozen, trainable, self.data.test_all_tasks,
                                           epoch_keys(keys, 1)))
            tasks = self.data.task_set.all_tasks
            train_names = {t.name for t in self.data.task_set.train_tasks}
            np.savez(self.workdir / "embeddings.npz", z=np.asarray(z, np.float32),
                     task_names=np.array([t.name for t in tasks]),
                     train_task=np.array([t.name in train_names for t in tasks]))
        final = _read_jsonl(self.workdir / "eval_history.jsonl")[-1]
        cfg = self.config
        results = {
            "algo": cfg.algo, "method": method_label(cfg), "task_set": cfg.task_set,
            "num_checkpoints": cfg.num_checkpoints, "num_seeds": self.num_seeds,
            "seed": cfg.seed, "num_models": cfg.dynamics.num_models,
            "augmentation": cfg.representation.augmentation,
            "epoch": final["epoch"],
            "protocols": {p: final[p] for p in configs.PROTOCOLS},
            "encoder_accuracy": {k: {"per_seed": np.asarray(v).tolist(),
                                     "mean": float(np.mean(v)), "std": float(np.std(v))}
                                 for k, v in acc.items()},
            "timing_s": {**self.timing, "total_this_process": time.time() - t0},
        }
        write_json_atomic(self.workdir / "results.json", results)
        self.metrics.close()
        return results


def method_label(config: configs.TrainConfig) -> str:
    """'reda', 'reda_wo_model', 'reda_wo_adv', 'reda_wo_up', 'reda_wo_tc' or the algo."""
    return method_of(config.algo, dataclasses.asdict(config.representation))


def method_data_stats(algo: str, arrays: Sequence[dict]) -> dict:
    """Host statistics of the training data the methods need (see make_method): every
    method gets the training states' (mean, std) and the actions' std (all tasks pooled)."""
    from reda_jax.baselines.prompt_dt import returns_to_go, state_stats

    actions = np.concatenate([np.asarray(a["actions"], np.float64) for a in arrays])
    stats = {"state_stats": state_stats(arrays), "action_std": actions.std(0).astype(np.float32)}
    if algo == "corro":
        delta = np.concatenate([a["next_observations"] - a["observations"] for a in arrays])
        return {**stats, "delta_std": delta.std(0).astype(np.float32) + 1e-6}
    if algo == "prompt_dt":

        def best_return(a):  # the return-to-go at an episode's first step is its return
            rtg, step = returns_to_go(a["rewards"], a["terminals"], a["truncations"])
            return float(rtg[step == 0].max())

        return {**stats, "target_return": max(best_return(a) for a in arrays)}
    return stats


def _read_timing(workdir: Path) -> dict[str, float]:
    """The run's timing.json ({} if none yet)."""
    path = workdir / TIMING_FILE
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a timing record ({e}); delete it to restart the "
                         "run's timings") from e


def _read_jsonl(path: Path) -> list[dict]:
    """The records of eval_history.jsonl, without a last line cut short by a kill; a
    malformed line before the last raises InputError naming it."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]
    lines = [l for l in lines if l.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
            int(rec["epoch"])
        except (ValueError, KeyError, TypeError):
            if i == len(lines) - 1:
                break
            raise InputError(f"{path}: malformed line {i + 1}; move the file away to let the "
                             "run evaluate its final policy again") from None
        out.append(rec)
    return out


def _truncate_jsonl(path: Path, epoch: int) -> None:
    if not path.exists():
        return
    keep = [r for r in _read_jsonl(path) if r["epoch"] <= epoch]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def results_table(results: dict) -> str:
    """Markdown: rows = tasks, columns = protocols (mean ± std over seeds)."""
    return protocols.format_table(results["protocols"])
