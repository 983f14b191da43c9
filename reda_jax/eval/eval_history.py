"""eval_history.jsonl: one JSON record per evaluation of a run's meta-policy ({'epoch',
protocol: summary}), appended as stage 3 goes, cut back when a run resumes, and read
without a last line a kill cut short."""
from __future__ import annotations

import json
import os
from pathlib import Path

from reda_jax.validate import InputError

FILE = "eval_history.jsonl"


def append_history(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_history(path: Path) -> list[dict]:
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


def truncate_history(path: Path, epoch: int) -> None:
    if not path.exists():
        return
    keep = [r for r in read_history(path) if r["epoch"] <= epoch]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)
