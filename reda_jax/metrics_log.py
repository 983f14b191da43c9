"""Per-epoch metrics: a long-format CSV (always) and TensorBoard events (if installed).

metrics.csv columns: stage, epoch, metric, seed, value (one row per seed). On resume the
rows after the restored position are dropped, so a resumed run's file equals an
uninterrupted run's. TensorBoard gets the mean over seeds, tag "<stage>/<metric>".
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

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

    def truncate(self, stage: str, epoch: int) -> None:
        """Drops rows of `stage` after `epoch` and rows of later stages."""
        later = set(STAGES[STAGES.index(stage) + 1:])
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if r["stage"] not in later
                and not (r["stage"] == stage and int(r["epoch"]) > epoch)]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(keep)
        os.replace(tmp, self.path)

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


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    with open(Path(workdir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))
