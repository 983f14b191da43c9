"""launch.sweep: the grid, the command strings, resuming (finished runs skipped), the order
of runs sharing missing datasets, failure reporting, the slurm script, multihost slicing."""
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from launch import sweep


def test_full_paper_grid_size():
    specs = sweep.expand_grid()
    # main 7 task sets x 3 checkpoint counts x 8 methods (the paper's 6 + bc and oracle) =
    # 168; ablations: 2 Walker2d task sets x 3 x 4 = 24; models: Walker2d Gravity-1 x {1, 5}
    # (3 is the main ReDA run) = 2.
    assert len(specs) == 168 + 24 + 2 == 194
    assert len({s.workdir for s in specs}) == 194
    assert {"bc", "oracle"} <= {s.method for s in specs}
    assert sweep.DIDACTIC not in {s.task_set for s in specs}
    assert len(sweep.expand_grid(seeds=(0, 1))) == 388
    assert sum(s.ablation != "none" for s in specs) == 24
    assert {(s.task_set, s.checkpoints, s.num_models) for s in specs if s.num_models} == {
        ("walker2d-gravity", 1, 1), ("walker2d-gravity", 1, 5)}
    # a smaller grid
    specs = sweep.expand_grid(task_sets=["hopper-gravity"], checkpoints=[1, 3],
                              methods=["reda", "om_sac"], ablations=["wo_tc"],
                              ablation_task_sets=["hopper-gravity"], num_models=[1, 3],
                              models_task_sets=["hopper-gravity"], seeds=[0, 1])
    assert len(specs) == 2 * (2 * 2 + 2 * 1 + 1)
    with pytest.raises(ValueError, match="unknown methods"):
        sweep.expand_grid(methods=["nope"])
    with pytest.raises(ValueError, match="unknown task sets"):
        sweep.expand_grid(task_sets=["hopper-foo"])


def test_command_strings():
    specs = sweep.expand_grid(task_sets=["walker2d-gravity"], checkpoints=[1],
                              methods=["reda", "focal"], ablations=["wo_adv"],
                              ablation_task_sets=["walker2d-gravity"], num_models=[5],
                              seeds=[2], num_seeds=5, preset="paper")
    assert [s.shell() for s in specs] == [
        "python -m experiments.train --task_set=walker2d-gravity --checkpoints=1 --algo=reda "
        "--preset=paper --seed=2 --num_seeds=5 --workdir=runs/walker2d-gravity/reda/paper-ckpt1-seed2",
        "python -m experiments.train --task_set=walker2d-gravity --checkpoints=1 --algo=focal "
        "--preset=paper --seed=2 --num_seeds=5 --workdir=runs/walker2d-gravity/focal/paper-ckpt1-seed2",
        "python -m experiments.train --task_set=walker2d-gravity --checkpoints=1 --algo=reda "
        "--ablation=wo_adv --preset=paper --seed=2 --num_seeds=5 "
        "--workdir=runs/walker2d-gravity/reda_wo_adv/paper-ckpt1-seed2",
        "python -m experiments.train --task_set=walker2d-gravity --checkpoints=1 --algo=reda "
        "--num_models=5 --preset=paper --seed=2 --num_seeds=5 "
        "--workdir=runs/walker2d-gravity/reda/paper-ckpt1-seed2-models5",
    ]
    s = sweep.RunSpec("hopper-gravity", 3, "om_bc", 0, "mini", data_root="/d")
    assert s.shell() == ("python -m experiments.train --task_set=hopper-gravity --checkpoints=3 "
                         "--algo=om_bc --preset=mini --seed=0 "
                         "--workdir=runs/hopper-gravity/om_bc/mini-ckpt3-seed0 "
                         "--data_dir=/d/mini/hopper-gravity")


def test_independent_collections(tmp_path):
    """--collect_seeds: a run per collection; the preset's collection keeps the plain layout
    (and is not repeated), another gets --collect_seed, a -collect<c> workdir and the
    -seed<c> data directory that experiments.train and experiments.collect use."""
    from reda_jax import presets
    assert presets.collect_preset("mini", "hopper-gravity").seed == 0
    specs = sweep.expand_grid(task_sets=["hopper-gravity"], checkpoints=[1], methods=["bc"],
                              ablations=[], num_models=[], seeds=[0], preset="mini",
                              collect_seeds=[0, 1, 0])
    assert [s.shell() for s in specs] == [
        "python -m experiments.train --task_set=hopper-gravity --checkpoints=1 --algo=bc "
        "--preset=mini --seed=0 --workdir=runs/hopper-gravity/bc/mini-ckpt1-seed0",
        "python -m experiments.train --task_set=hopper-gravity --checkpoints=1 --algo=bc "
        "--preset=mini --seed=0 --collect_seed=1 "
        "--workdir=runs/hopper-gravity/bc/mini-ckpt1-seed0-collect1"]
    assert specs[1].data_dir == "runs/data/mini/hopper-gravity-seed1"
    elsewhere = sweep.RunSpec("hopper-gravity", 1, "bc", 0, "mini", collect_seed=1,
                              data_root=str(tmp_path / "d"))
    assert sweep.collect_commands([elsewhere]) == [
        "python -m experiments.collect --task_set=hopper-gravity --preset=mini --seed=1 "
        f"--workdir={tmp_path}/d/mini/hopper-gravity-seed1"]


def _fake_argv(log):
    """A stand-in for experiments.train: records start/end, writes config.json then
    results.json (or fails for workdirs containing 'om_bc')."""
    code = ("import json, pathlib, sys, time\n"
            "w = pathlib.Path(sys.argv[1]); log = sys.argv[2]\n"
            "open(log, 'a').write(f'start {w} {time.time()}\\n')\n"
            "if 'om_bc' in str(w): sys.exit(3)\n"
            "w.mkdir(parents=True, exist_ok=True)\n"
            "time.sleep(0.3)\n"
            "(w / 'config.json').write_text('{}')\n"
            "time.sleep(0.3)\n"
            "(w / 'results.json').write_text('{}')\n"
            "open(log, 'a').write(f'end {w} {time.time()}\\n')\n")
    return lambda spec, quiet: [sys.executable, "-c", code, spec.workdir, str(log)]


def _events(log):
    out = {}
    for line in Path(log).read_text().splitlines():
        kind, w, t = line.split()
        out.setdefault(w, {})[kind] = float(t)
    return out


def test_local_skips_finished_reports_failures(tmp_path):
    specs = sweep.expand_grid(task_sets=["hopper-gravity"], checkpoints=[1],
                              methods=["reda", "om_sac", "om_bc"], ablations=[], num_models=[],
                              runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    (tmp_path / "data/paper/hopper-gravity/datasets").mkdir(parents=True)
    Path(specs[0].workdir).mkdir(parents=True)
    (Path(specs[0].workdir) / "results.json").write_text("{}")
    log, printed = tmp_path / "events.log", []
    failures = sweep.run_local(specs, parallel=2, echo=printed.append,
                               argv_fn=_fake_argv(log), poll_s=0.05)
    assert [(f.method, rc) for f, rc in failures] == [("om_bc", 3)]
    ev = _events(log)
    assert specs[0].workdir not in ev  # finished before: skipped
    assert set(ev) == {specs[1].workdir, specs[2].workdir}
    assert any("[skip] finished" in p for p in printed)
    assert (Path(specs[2].workdir) / "sweep.log").exists()  # parallel runs log to files
    assert sweep.report_failures(failures, echo=printed.append) == 1
    assert "exit code 3" in printed[-1] and "--algo=om_bc" in printed[-1]
    # a re-launch resumes: nothing but the failed run is started again
    log2 = tmp_path / "events2.log"
    sweep.run_local(specs, parallel=2, echo=lambda *_: None, argv_fn=_fake_argv(log2),
                    poll_s=0.05)
    assert set(_events(log2)) == {specs[2].workdir}


def test_local_never_collects_one_task_set_twice_at_once(tmp_path):
    specs = sweep.expand_grid(task_sets=["hopper-gravity", "ant-gravity"], checkpoints=[1],
                              methods=["reda", "om_sac"], ablations=[], num_models=[],
                              runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    log = tmp_path / "events.log"
    failures = sweep.run_local(specs, parallel=4, echo=lambda *_: None,
                               argv_fn=_fake_argv(log), poll_s=0.02)
    assert failures == []
    ev = _events(log)
    for ts in ("hopper-gravity", "ant-gravity"):
        a, b = [ev[s.workdir] for s in specs if s.task_set == ts]
        first, second = sorted((a, b), key=lambda e: e["start"])
        # the second run of a task set without datasets starts only after the first one has
        # loaded them (config.json, written 0.3 s after its start)
        assert second["start"] >= first["start"] + 0.3


def test_slurm_script(tmp_path):
    specs = sweep.expand_grid(task_sets=["hopper-gravity"], checkpoints=[1, 3],
                              methods=["reda"], ablations=[], num_models=[],
                              runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    Path(specs[1].workdir).mkdir(parents=True)
    (Path(specs[1].workdir) / "results.json").write_text("{}")
    res = sweep.SlurmResources(partition="gpu", time="12:00:00", cpus=4, mem="16G", gpus=1,
                               max_concurrent=10, setup="source .venv/bin/activate",
                               extra=("--account=abc",))
    printed = []
    written = sweep.write_slurm(specs, str(tmp_path / "out"), res, repo_dir="/repo",
                                echo=printed.append)
    out = (tmp_path / "out").resolve()
    assert [p.name for p in written] == ["commands.txt", "sweep.sbatch", "collect_commands.txt",
                                         "collect.sbatch"]
    assert (out / "commands.txt").read_text() == specs[0].shell() + "\n"  # the unfinished one
    script = (out / "sweep.sbatch").read_text()
    for line in ("#!/bin/bash", "#SBATCH --array=0-0%10", "#SBATCH --partition=gpu",
                 "#SBATCH --time=12:00:00", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G",
                 "#SBATCH --gres=gpu:1", "#SBATCH --account=abc", "cd /repo",
                 "source .venv/bin/activate", f"#SBATCH --output={out}/logs/%x-%A_%a.out",
                 f'CMD=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {out}/commands.txt)',
                 'eval "$CMD"'):
        assert line in script.splitlines(), line
    collect = (out / "collect_commands.txt").read_text()
    assert collect == (f"python -m experiments.collect --task_set=hopper-gravity --preset=paper "
                       f"--workdir={tmp_path}/data/paper/hopper-gravity\n")
    assert "sbatch --dependency=afterok:$jid" in printed[-1]
    # the array script itself: index i runs line i + 1, a finished run is skipped
    script = sweep.slurm_script(str(tmp_path / "c.txt"), 3, "/logs", str(tmp_path),
                                sweep.SlurmResources(gpus=0))
    assert "#SBATCH --array=0-2" in script and "--gres" not in script
    wd = tmp_path / "w1"
    (tmp_path / "c.txt").write_text(f"echo zero\necho one --workdir={wd}\necho two\n")
    run = lambda i: subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                   env={"SLURM_ARRAY_TASK_ID": str(i), "PATH": "/usr/bin:/bin"})
    assert run(0).stdout.splitlines()[-1] == "zero"
    assert run(1).stdout.splitlines()[-1] == f"one --workdir={wd}"
    wd.mkdir()
    (wd / "results.json").write_text("{}")
    assert run(1).stdout.strip() == f"finished already: {wd}"


def test_multihost_slicing(tmp_path, monkeypatch):
    specs = sweep.expand_grid(runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "d"))
    slices = [sweep.host_slice(specs, i, 3) for i in range(3)]
    assert [len(s) for s in slices] == [65, 65, 64]   # 194 runs over 3 hosts
    assert sorted((s.workdir for sl in slices for s in sl)) == sorted(s.workdir for s in specs)
    assert slices[1] == specs[1::3]
    with pytest.raises(ValueError):
        sweep.host_slice(specs, 3, 3)
    seen = {}
    monkeypatch.setattr(sweep, "run_local", lambda mine, parallel, **kw: seen.setdefault(
        "mine", list(mine)) and [])
    sweep.run_multihost(specs, 2, 3, echo=lambda *_: None)
    assert seen["mine"] == specs[2::3]


def test_list_mode_cli():
    r = subprocess.run([sys.executable, "-m", "launch.sweep", "--mode=list",
                        "--task_sets=hopper-gravity", "--checkpoints=1", "--methods=reda,focal",
                        "--ablations=", "--num_models=", "--seeds=0,1", "--num_seeds=5"],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == ("python -m experiments.train --task_set=hopper-gravity --checkpoints=1 "
                        "--algo=reda --preset=paper --seed=0 --num_seeds=5 "
                        "--workdir=runs/hopper-gravity/reda/paper-ckpt1-seed0")
    assert lines[-1].startswith("# 4 runs (4 main, 0 ablations, 0 numbers of models)")
    assert all(shlex.split(l)[:3] == ["python", "-m", "experiments.train"] for l in lines[:-1])
