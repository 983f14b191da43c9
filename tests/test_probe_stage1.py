"""experiments.probe_stage1 end to end on smoke hopper data: read-out points, early
stopping beside the budget, resume, and the extended-data datasets it asks for."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_probe_stage1_reads_out_along_one_run_and_resumes(tmp_path):
    data = tmp_path / "data"
    collect = subprocess.run([sys.executable, "-m", "experiments.collect",
                              "--task_set=hopper-gravity", "--preset=smoke",
                              f"--workdir={data}"], capture_output=True, text=True,
                             timeout=900, cwd=REPO)
    assert collect.returncode == 0, collect.stderr[-3000:]
    argv = [sys.executable, "-m", "experiments.probe_stage1", "--preset=smoke",
            f"--data_dir={data}", f"--workdir={tmp_path / 'probe'}", "--readout_at=3,12",
            "--num_seeds=2", "--num_rows=40"]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "probe" / "hopper-gravity" / "data" / "default"
    records = json.loads((run / "readout.json").read_text())["records"]
    steps = records[-1]["steps_per_epoch"]
    assert [r["label"] for r in records] == ["budget", "budget", "early_stopped"]
    assert [r["updates"] for r in records[:2]] == [-(-3 // steps) * steps, -(-12 // steps) * steps]
    for r in records:
        assert len(r["signal_dim_model_error"]) == 2
        # The task models tell their own task's transitions apart (chance 1/3): swapped or
        # untrained task models would not.
        assert min(r["model_train_accuracy"]) > 0.4
        assert all(v > 0 for v in r["signal_dim_model_error"])
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "holdout_mse"]
    assert sorted({int(r["epoch"]) for r in rows}) == list(range(1, records[1]["epoch"] + 1))
    assert len(rows) == 2 * records[1]["epoch"]
    second = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert second.returncode == 0 and "resumed at epoch" in second.stdout
    again = json.loads((run / "readout.json").read_text())["records"]
    assert again[:2] == records[:2]
    with open(run / "metrics.csv") as f:
        assert sum(r["metric"] == "holdout_mse" for r in csv.DictReader(f)) == len(rows)
    missing = subprocess.run(argv + ["--variant=n900", "--train_transitions=900"],
                             capture_output=True, text=True, timeout=900, cwd=REPO)
    assert missing.returncode == 2
    assert "--train_transitions=900" in missing.stderr and "experiments.collect" in missing.stderr
