"""The loop every training stage shares (`StageLoop.run`): restore from the stage's
newest checkpoint, then jitted epochs with the NaN guard, metrics.csv, wall-time
accounting, checkpoints and an epoch budget; plus the RNG schedule of every stage.

Determinism: the key of seed s, stage g and epoch e is fold_in(fold_in(fold_in(key(seed),
s), g), e), so a run killed anywhere and resumed from its last checkpoint repeats the
same epochs with the same keys and ends with the same result.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from reda_jax import configs
from reda_jax.metrics_log import STAGES, MetricsLog
from reda_jax.run_info import write_json_atomic
from reda_jax.sharding import shard_seeds
from reda_jax.stage_checkpoints import StageCheckpoints
from reda_jax.validate import InputError

SCANNED = ("encoder/", "adversary/", "meta/", "generative/")
# Wall seconds per stage ('dynamics_s', 'representation_s', 'meta_policy_s', 'evaluation_s'),
# summed over every process that worked on the run (epochs redone after a kill included).
TIMING_FILE = "timing.json"


class Preempted(RuntimeError):
    """Raised when a Trainer's `epoch_budget` is used up (after saving a checkpoint)."""


class NonFiniteError(FloatingPointError):
    """A loss or metric became NaN or inf; the message names stage, epoch, step, quantity."""


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


class StageLoop:
    """Runs a run directory's stages: metrics.csv, timing.json, checkpoints and the epoch
    budget of one process (see `run`)."""

    def __init__(self, workdir: Path, config: configs.TrainConfig, show_progress: bool = True,
                 log: Callable[[str], None] = print, epoch_budget: int | None = None,
                 on_epoch: Callable[[str, int, int, bool], None] | None = None):
        """epoch_budget: stop with `Preempted` after this many epochs (over all stages) in
        this process, after checkpointing; run again to continue (e.g. on a preemptible
        scheduler with a time slot). on_epoch(stage, epoch, num_epochs, restored): called
        once a stage is restored (restored=True, its epoch so far) and after each epoch
        trained, e.g. for a progress display over several runs."""
        self.workdir, self.config = Path(workdir), config
        self.show_progress, self.log = show_progress, log
        self.epoch_budget = epoch_budget
        self.on_epoch = on_epoch
        self.metrics = MetricsLog(self.workdir)
        self.timing: dict[str, float] = read_timing(self.workdir)

    def store(self, stage: str) -> StageCheckpoints:
        return StageCheckpoints(self.workdir, stage, self.config.checkpoint_interval_s,
                                configs.to_dict(self.config), self.log)

    def clock(self, key: str, since: float) -> float:
        """Adds the wall seconds since `since` to timing[key] (kept in timing.json, so a
        resumed run's results.json counts every process's time); returns now. Called before
        an epoch's checkpoint, so an epoch budget's stop keeps that epoch's time."""
        now = time.time()
        self.timing[key] = self.timing.get(key, 0.0) + now - since
        write_json_atomic(self.workdir / TIMING_FILE, self.timing)
        return now

    def _bar(self, total: int, initial: int, desc: str):
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc=desc, disable=not self.show_progress,
                    unit="epoch", mininterval=2)

    def _spend(self, store: StageCheckpoints, epoch: int, tree, done: bool) -> None:
        """Saves if due; with an epoch budget, counts the epoch and stops when it is spent."""
        if self.epoch_budget is not None:
            self.epoch_budget -= 1
            if self.epoch_budget <= 0:
                store.maybe_save(epoch, tree, done, force=True)
                raise Preempted(f"epoch budget used up at epoch {epoch}; run again to resume")
        store.maybe_save(epoch, tree, done)

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

    def run(self, stage: str, desc: str, clock: str, state, num_epochs: int,
            epoch_fn: Callable, converged: Callable | None = None,
            restored: Callable | None = None, after_epoch: Callable | None = None):
        """Restores `state` (the stage's initial state, seeds leading) from the stage's
        newest checkpoint, cuts the logs back to it and calls restored(epoch, done); then,
        until epoch == num_epochs or converged(state): epoch_fn(state, epoch) -> (state,
        metrics) for epoch 1, 2, ..., the NaN guard and metrics.csv, wall time under
        timing[clock], after_epoch(state, epoch, done, per-seed metrics) -> progress-bar
        postfix or None (its own time is its own to count), the checkpoint and the epoch
        budget. Returns (the final state, its epoch)."""
        store = self.store(stage)
        state, epoch, done = store.restore(state)
        state = shard_seeds(state, self.config.num_seeds)
        self._cut_logs(stage, epoch, done)
        if restored is not None:
            restored(epoch, done)
        if self.on_epoch is not None:
            self.on_epoch(stage, epoch, num_epochs, True)
        if done:   # a finished stage, restored: one line, not a full progress bar
            if self.show_progress:
                self.log(f"{desc}: finished earlier (epoch {epoch}), restored")
            return state, epoch
        bar = self._bar(num_epochs, epoch, desc)
        t0 = time.time()
        while not done:
            epoch += 1
            state, metrics = epoch_fn(state, epoch)
            seeds = self._epoch_done(stage, epoch, metrics)
            done = epoch >= num_epochs or (converged is not None and converged(state))
            self.clock(clock, t0)
            postfix = after_epoch(state, epoch, done, seeds) if after_epoch else None
            t0 = time.time()
            self._spend(store, epoch, state, done)
            bar.update(1)
            if postfix:
                bar.set_postfix(postfix, refresh=False)
            if self.on_epoch is not None:
                self.on_epoch(stage, epoch, num_epochs, False)
        bar.close()
        return state, epoch


def read_timing(workdir: Path) -> dict[str, float]:
    """The run's timing.json ({} if none yet)."""
    path = workdir / TIMING_FILE
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a timing record ({e}); delete it to restart the "
                         "run's timings") from e
