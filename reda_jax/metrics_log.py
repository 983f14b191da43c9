"""Per-epoch metrics: a long-format CSV (always) and TensorBoard events (if installed).

metrics.csv columns: stage, epoch, metric, seed, value (one row per seed). On resume the
rows after the restored position are dropped, so a resumed run's file equals an
uninterrupted run's. TensorBoard gets the mean over seeds, tag "<stage>/<metric>".
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from reda_jax.validate import InputError

STAGES = ("dynamics", "representation", "meta_policy")
FIELDS = ("stage", "epoch", "metric", "seed", "value")


class MetricsLog:
    def __init__(self, workdir: str | os.PathLike, tensorboard: bool = True):
        self.path = Path(workdir) / "metrics.csv"
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(FIELDS)
        self._tb = None
        if tensorboard:
            try:
                from tensorboard.summary.writer.event_file_writer import EventFileWriter
                self._tb = EventFileWriter(str(Path(workdir) / "tensorboard"))
            except ImportError:  # the `viz` extra is optional
                self._tb = None

    def truncate(self, stage: str, epoch: int, later: bool = True) -> int:
        """Drops rows of `stage` after `epoch` (and, if `later`, rows of later stages),
        plus a partial or malformed last line left by a kill; returns the rows dropped."""
        drop = set(STAGES[STAGES.index(stage) + 1:]) if later else set()
        rows = read_complete_rows(self.path)
        keep = [r for r in rows if r["stage"] not in drop
                and not (r["stage"] == stage and int(r["epoch"]) > epoch)]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(keep)
        os.replace(tmp, self.path)
        return len(rows) - len(keep)

    def last_epoch(self, stage: str) -> int:
        """The largest epoch of `stage` in the file (0 if none)."""
        return max((int(r["epoch"]) for r in read_complete_rows(self.path)
                    if r["stage"] == stage), default=0)

    def write(self, stage: str, epoch: int, per_seed: dict[str, np.ndarray]) -> None:
        """per_seed: {metric: (S,) values}."""
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            for name, values in per_seed.items():
                for s, v in enumerate(np.asarray(values, np.float64).reshape(-1)):
                    w.writerow((stage, epoch, name, s, f"{v:.6g}"))
        if self._tb is not None:
            self._write_tb(stage, epoch, per_seed)

    def _write_tb(self, stage, epoch, per_seed):
        import time

        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        values = [Summary.Value(tag=f"{stage}/{k}", simple_value=float(np.mean(v)))
                  for k, v in per_seed.items()]
        step = STAGES.index(stage) * 1_000_000 + epoch
        self._tb.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _complete(row: dict) -> bool:
    if set(row) != set(FIELDS) or row["stage"] not in STAGES or None in row.values():
        return False
    try:
        int(row["epoch"]), int(row["seed"]), float(row["value"])
    except (TypeError, ValueError):
        return False
    return True


def read_complete_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a metrics.csv, without a last line cut short by a kill (no newline, or
    too few fields); a malformed line before the last raises ValueError naming it."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]   # the last line was cut short
    lines = [l for l in lines if l]
    if not lines:
        return []
    rows = list(csv.DictReader(io.StringIO("\n".join(lines) + "\n")))
    if lines[0].split(",") != list(FIELDS):
        raise InputError(f"{path}: header {lines[0]!r} is not {','.join(FIELDS)}; "
                         "move the file away to continue the run without its log")
    out = []
    for i, r in enumerate(rows):
        if _complete(r):
            out.append(r)
        elif i < len(rows) - 1:
            raise InputError(f"{path}: malformed line {i + 2} ({','.join(map(str, r.values()))!r}); "
                             "move the file away to continue the run without its log")
    return out


def copy_stage_rows(src_workdir: str | os.PathLike, dst_workdir: str | os.PathLike,
                    stage: str) -> int:
    """Appends the rows of `stage` from src_workdir's metrics.csv to dst_workdir's (created
    if missing) unless dst already has rows of that stage: a run that reuses another's
    finished stage keeps that stage's per-epoch log. Returns the rows copied."""
    dst = Path(dst_workdir) / "metrics.csv"
    if any(r["stage"] == stage for r in read_complete_rows(dst)):
        return 0
    rows = [r for r in read_complete_rows(Path(src_workdir) / "metrics.csv")
            if r["stage"] == stage]
    new = not dst.exists()
    with open(dst, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)
    return len(rows)


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    with open(Path(workdir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))
