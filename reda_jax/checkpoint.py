"""Atomic, resumable checkpoints (orbax): a pytree of arrays plus JSON metadata per step."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves `(tree, meta)` under integer steps in `directory`; orbax writes each step to a
    temporary directory and renames it when complete, so a killed save never looks complete.

    max_to_keep: None keeps every step (e.g. the 50 behavior policies), 1 keeps the latest.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 1):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, tree: Any, meta: dict | None = None) -> None:
        tree = jax.tree.map(np.asarray, tree)
        self._manager.save(step, args=ocp.args.Composite(
            tree=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta or {})), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int, like: Any) -> tuple[Any, dict]:
        """Restores the tree at `step` with the structure, shapes and dtypes of `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, jax.tree.map(np.asarray, like))
        out = self._manager.restore(step, args=ocp.args.Composite(
            tree=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["tree"], dict(out["meta"])

    def restore_meta(self, step: int) -> dict:
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def close(self) -> None:
        self._manager.close()
