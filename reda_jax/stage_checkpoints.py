"""Each stage's orbax checkpoints in a run directory: save cadence, restore with fallback
to an older checkpoint, the config each was made under (a run resumed or reused under
another config is refused, naming the fields), where a killed run resumes, and reuse of
finished stages from another run directory."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from reda_jax import configs
from reda_jax.checkpoint import Checkpointer
from reda_jax.metrics_log import STAGES, copy_stage_rows
from reda_jax.validate import InputError

CHECKPOINTS_KEPT = 2  # per stage: the newest, and one to fall back to if it is unreadable
# Config fields each stage's result depends on (cumulative); meta_policy: all of them.
STAGE_FIELDS = {"dynamics": ("algo", "task_set", "num_checkpoints", "num_seeds", "seed",
                             "dynamics", "corro"),
                "representation": ("algo", "task_set", "num_checkpoints", "num_seeds", "seed",
                                   "dynamics", "corro", "window", "token", "encoder",
                                   "representation", "focal")}
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


class StageCheckpoints:
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
            StageCheckpoints(workdir, stage, 0, current).newest_meta()


def resume_position(workdir: Path) -> tuple[str, int] | None:
    """(stage, epoch) of the first unfinished stage with a checkpoint, None if fresh."""
    position = None
    for stage in STAGES:
        d = workdir / "checkpoints" / stage
        if not d.exists():
            break
        found = StageCheckpoints(workdir, stage, 0).newest_meta()
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
        if not StageCheckpoints(from_workdir, stage, 0, ours).done():
            raise InputError(f"cannot reuse stage {stage!r} of {from_workdir}: it has not "
                             "finished")
        if not dst.exists():
            tmp = dst.with_name(dst.name + ".copying")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            copy_stage_rows(from_workdir, workdir, stage)
            os.replace(tmp, dst)
