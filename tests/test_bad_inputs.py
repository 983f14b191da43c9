"""Bad inputs: every one is refused before any work with one line naming the problem and
exit code 2 (or, for an interrupted or damaged run, recovered exactly), and nothing is
left that would later be read as valid. One smoke dataset and one finished smoke run are
shared by every case (docs/reliability.md)."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from absl import flags

from experiments import train as train_app
from launch import sweep
from reda_jax import configs, presets, validate
from reda_jax.data import store
from reda_jax.experiment import build_config, load_or_collect
from reda_jax.metrics_log import read_metrics
from reda_jax.run_info import prepare_run_dir
from reda_jax.data.train_data import make_train_data
from reda_jax.stage_checkpoints import check_run_checkpoints
from reda_jax.stage_loop import TIMING_FILE, Preempted
from reda_jax.train import Trainer
from reda_jax.envs.tasks import get_task_set

TS = "hopper-gravity"
TRAIN_ID = "reda/hopper-gravity/gravity_x0p5-ckpt1-train-v0"
OTHER_ID = "reda/hopper-gravity/gravity_x0p8-ckpt1-train-v0"
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(900)


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory):
    """The smoke collection of hopper-gravity (datasets under <dir>/datasets)."""
    d = tmp_path_factory.mktemp("bad_inputs_data")
    load_or_collect(TS, "smoke", 1, str(d))
    return d


ALGO = "bc"   # the cheapest method: stage 3 only; the run-directory logic is the same


@pytest.fixture(scope="session")
def finished_run(smoke_dir, tmp_path_factory):
    """(workdir, results, metrics.csv text) of an uninterrupted smoke run."""
    w = tmp_path_factory.mktemp("bad_inputs_run") / "run"
    results = _run(smoke_dir, w)
    return w, results, (w / "metrics.csv").read_text()


def _run(data_dir, workdir, config=None, logs=None, **kw):
    config = config or build_config(TS, "smoke", 1, algo=ALGO)
    train, test = load_or_collect(TS, "smoke", 1, str(data_dir))
    check_run_checkpoints(Path(workdir), config)   # as experiments.train.run_training
    prepare_run_dir(workdir, {"train": configs.to_dict(config), "data_dir": str(data_dir)})
    data = make_train_data(get_task_set(TS), train, test)
    log = (logs.append if logs is not None else (lambda _: None))
    return Trainer(config, data, workdir, show_progress=False, log=log, **kw).run()


def _copy_run(finished_run, tmp_path) -> Path:
    w = tmp_path / "run"
    shutil.copytree(finished_run[0], w)
    return w


def _exit(capsys, fn, *args) -> str:
    """Runs `validate.guarded(fn)` (what run_app runs); asserts exit code 2 and one line
    of stderr; returns that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        validate.guarded(fn)(*args)
    assert e.value.code == validate.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------ train flags

def _train_main(capsys, argv):
    """experiments.train's real flag parsing and main, in this process."""
    flags.FLAGS.unparse_flags()
    try:
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            rest = validate.parse_flags(["train"] + argv)
            validate.guarded(train_app.main)(rest)
            raise SystemExit(0)
        err = capsys.readouterr().err
        return e.value.code, err
    finally:
        flags.FLAGS.unparse_flags()


TRAIN_FLAG_CASES = [
    (["--lambda1=-1"], "--lambda1: must be a finite number >= 0"),
    (["--lambda1=nan"], "--lambda1: must be a finite number >= 0"),
    (["--lambda1=inf"], "--lambda1: must be a finite number >= 0"),
    (["--lambda2=-0.5"], "--lambda2: must be a finite number >= 0"),
    (["--num_seeds=0"], "--num_seeds: must be an integer >= 1"),
    (["--num_models=0"], "--num_models: must be an integer >= 1"),
    (["--seed=-1"], "--seed: must be an integer >= 0"),
    (["--num_seeds=abc"], "flag --num_seeds=abc"),
    (["--checkpoints=2"], "flag --checkpoints=2"),
    (["--ablation=wo_everything"], "flag --ablation=wo_everything"),
    (["--algo=focal", "--lambda1=0.5"], "--lambda1 and --lambda2 are ReDA's"),
    (["--from_workdir=FINISHED"], "--from_stage and --from_workdir go together"),
    (["--from_stage=representation"], "--from_stage and --from_workdir go together"),
    (["--from_stage=dynamics", "--from_workdir=FINISHED"], "--from_stage: 'dynamics'"),
    (["--from_stage=representation", "--from_workdir=/nonexistent/run"],
     "--from_workdir: /nonexistent/run is not a run directory"),
    (["--workdir=A_FILE"], "--workdir:"),
    (["--workdir=/sys/reda_run"], "--workdir: /sys is not writable"),
    (["--data_dir=A_FILE"], "--data_dir:"),
    (["positional"], "unexpected arguments ['positional']"),
    (["--set=meta.qweight=0"], "meta.qweight: meta has no field 'qweight'; fields: "),
    (["--set=meta.q_weight=high"], "meta.q_weight: 'high' is not a float"),
    (["--set=meta=1"], "meta is a section"),
    (["--set=meta.q_weight"], "expected dotted.field=value"),
    (["--set=meta.context_source='window'"], "context_source"),
    (["--set=token=states"], "token must be one of ('state', 'transition')"),
    (["--collect_seed=-1"], "--collect_seed"),
]


@pytest.mark.parametrize("argv,first", TRAIN_FLAG_CASES, ids=[" ".join(a) for a, _ in
                                                               TRAIN_FLAG_CASES])
def test_train_flag_is_refused_before_any_work(capsys, tmp_path, argv, first, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "config.json").write_text("{}")
    argv = [a.replace("A_FILE", str(blocker)).replace("FINISHED", str(finished)) for a in argv]
    if not any(a.startswith("--workdir") for a in argv):
        argv.append(f"--workdir={tmp_path / 'w'}")
    if not any(a.startswith("--data_dir") for a in argv):
        argv.append(f"--data_dir={tmp_path / 'data'}")
    # Any work (data loading or collection) would be a failure of the validation pass.
    monkeypatch.setattr(train_app, "run_training", lambda *a, **k: pytest.fail("work started"))
    code, err = _train_main(capsys, argv + ["--task_set=hopper-gravity", "--preset=smoke"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and first in lines[0], err
    assert not (tmp_path / "w").exists() and not (tmp_path / "data").exists()


# ------------------------------------------------------------------------ sweep flags

class _Flags(SimpleNamespace):
    def __getitem__(self, name):
        return SimpleNamespace(value=getattr(self, name))


def _sweep_flags(tmp_path, **kw):
    base = dict(mode="list", task_sets=[TS], checkpoints=["1"], methods=["reda"],
                ablations=[], ablation_task_sets=[], num_models=[], models_task_sets=[],
                models_checkpoints=[], seeds=["0"], collect_seeds=[], num_seeds=None,
                preset="smoke",
                runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"),
                parallel=1, out=str(tmp_path / "out"), slurm_cpus=8, slurm_gpus=1,
                slurm_max_concurrent=None, num_processes=None, process_id=None)
    base.update(kw)
    return _Flags(**base)


SWEEP_CASES = [
    (dict(num_seeds=0), "--num_seeds: must be an integer >= 1"),
    (dict(seeds=["x"]), "--seeds: takes comma-separated integers"),
    (dict(seeds=["-1"]), "--seeds: every value must be >= 0"),
    (dict(seeds=[]), "--seeds: needs at least one value"),
    (dict(collect_seeds=["-1"]), "--collect_seeds: every value must be >= 0"),
    (dict(mode="local", parallel=0), "--parallel: must be an integer >= 1"),
    (dict(checkpoints=["2"]), "--checkpoints: [2] not allowed"),
    (dict(num_models=["0"]), "--num_models: every value must be >= 1"),
    (dict(methods=["foo"]), "--methods: unknown ['foo']"),
    (dict(task_sets=["foo"]), "--task_sets: unknown ['foo']"),
    (dict(methods=[]), "the grid is empty"),
    (dict(slurm_gpus=-1), "--slurm_gpus: must be an integer >= 0"),
    (dict(mode="local", runs_root="A_FILE"), "--runs_root:"),
]


def test_set_overrides_reach_the_run_and_need_a_workdir(capsys, tmp_path, monkeypatch):
    got = []
    monkeypatch.setattr(train_app, "run_training", lambda config, *a, **k: got.append(config))
    base = ["--task_set=hopper-gravity", "--preset=smoke", "--algo=oracle",
            f"--data_dir={tmp_path / 'data'}"]
    code, _ = _train_main(capsys, base + [f"--workdir={tmp_path / 'w'}", "--set=meta.q_weight=0",
                                          "--set=eval.num_episodes=7"])
    assert code == 0 and got[0].meta.q_weight == 0.0 and got[0].eval.num_episodes == 7
    assert isinstance(got[0].meta.q_weight, float)
    default = build_config(TS, "smoke", 1, algo="oracle")
    assert default.meta.q_weight != 0.0 and default.eval.num_episodes != 7
    assert dataclasses.replace(got[0], meta=default.meta, eval=default.eval) == default
    code, err = _train_main(capsys, base + ["--set=meta.q_weight=0"])
    assert code == 2 and "--set needs --workdir" in err


@pytest.mark.parametrize("kw,first", SWEEP_CASES, ids=[str(k) for k, _ in SWEEP_CASES])
def test_sweep_flag_is_refused(capsys, tmp_path, kw, first):
    (tmp_path / "a_file").write_text("x")
    kw = {k: (str(tmp_path / "a_file") if v == "A_FILE" else v) for k, v in kw.items()}
    line = _exit(capsys, lambda argv: sweep.check_flags(argv, _sweep_flags(tmp_path, **kw)),
                 ["sweep"])
    assert first in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


# ------------------------------------------------- apps run as programs (subprocesses)

APP_CASES = [
    (["experiments.train", "--lambda1=-1"], "--lambda1"),
    (["experiments.collect", "--seed=-1"], "--seed"),
    (["experiments.collect", "--workdir=A_FILE"], "--workdir"),
    (["experiments.didactic", "--num_seeds=0"], "--num_seeds"),
    (["experiments.didactic", "--collect_seeds=0,a"], "--collect_seeds"),
    (["experiments.didactic", "--collect_seeds=1,1"], "--collect_seeds"),
    (["experiments.didactic", "--methods=foo"], "--methods"),
    (["experiments.didactic", "--set=meta.no_such_field=1"], "--set"),
    (["experiments.probe_encoder", "--methods=bc"], "--methods"),
    (["experiments.probe_encoder", "--stage1_from=../x"], "--stage1_from"),
    (["experiments.probe_encoder", "--simulator_branches=100"], "--simulator_branches"),
    (["experiments.probe_encoder", "--simulator_branches=-1", "--variant=x"],
     "--simulator_branches"),
    (["experiments.probe_encoder", "--set=representation.horizon=5"], "--set"),
    (["experiments.probe_encoder", "--variant=x", "--set=dynamics.task_models='shared'"],
     "--set"),
    (["experiments.probe_encoder", "--variant=x",
      "--set=representation.adversary_reward='code'"], "--set"),
    (["experiments.probe_encoder", "--variant=x",
      "--set=representation.rollout_physics='real'"], "--set"),
    (["experiments.probe_offline_learner", "--algo=oracle", "--only_task=1"], "--only_task"),
    (["experiments.probe_offline_learner", "--algo=bc", "--only_task=3"], "--only_task"),
    (["experiments.probe_encoder", "--task_set=hopper-gravity", "--collect_seeds=0,0"],
     "--collect_seeds"),
    (["experiments.probe_encoder", "--task_set=hopper-gravity", "--preset=default"],
     "--preset"),
    (["launch.sweep", "--num_seeds=0"], "--num_seeds"),
    (["launch.collect_all", "--task_sets=foo", "--dry_run"], "--task_sets"),
    (["experiments.tables", "--runs=/nonexistent/runs"], "--runs"),
    (["experiments.plots", "--confidence=1.5"], "--confidence"),
]


@pytest.mark.parametrize("argv,flag", APP_CASES, ids=[" ".join(a) for a, _ in APP_CASES])
def test_app_prints_one_line_and_exits_2(tmp_path, argv, flag):
    (tmp_path / "a_file").write_text("x")
    argv = [a.replace("A_FILE", str(tmp_path / "a_file")) for a in argv]
    if argv[0] in ("experiments.train", "experiments.didactic", "experiments.probe_encoder",
                   "experiments.probe_offline_learner"):
        argv.append(f"--workdir={tmp_path / 'w'}")
    r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith((f"error: {flag}", f"error: flag {flag}")), r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert not (tmp_path / "w").exists()


# ------------------------------------------------------------------------ datasets

def _refresh_marker(ds_dir: Path) -> None:
    """Records the digests again, as a (buggy) writer that wrote this data would have."""
    marker = json.loads((ds_dir / store.MARKER_FILE).read_text())
    marker["files"] = {n: store.file_digest(ds_dir / n) for n in store.DIGESTED}
    (ds_dir / store.MARKER_FILE).write_text(json.dumps(marker))


def _edit_flat(ds_dir: Path, fn) -> None:
    with np.load(ds_dir / store.CACHE_FILE) as z:
        arrays = {k: z[k] for k in z.files}
    fn(arrays)
    with open(ds_dir / store.CACHE_FILE, "wb") as f:
        np.savez(f, **arrays)
    _refresh_marker(ds_dir)


def _edit_meta(ds_dir: Path, **kw) -> None:
    meta = json.loads((ds_dir / store.METADATA_FILE).read_text())
    meta.update(kw)
    (ds_dir / store.METADATA_FILE).write_text(json.dumps(meta))
    _refresh_marker(ds_dir)


def _wider_obs(a):
    a["observations"] = np.concatenate([a["observations"], a["observations"][:, :1]], 1)
    a["next_observations"] = np.concatenate([a["next_observations"],
                                             a["next_observations"][:, :1]], 1)


DATASET_CASES = {
    "another task's directory": (lambda r: (shutil.rmtree(r / TRAIN_ID), shutil.copytree(
        r / OTHER_ID, r / TRAIN_ID)), "task_name='gravity_x0.8'"),
    "metadata names another task": (lambda r: _edit_meta(r / TRAIN_ID, task_name="gravity_x0.8"),
                                    "metadata task_name='gravity_x0.8'"),
    "metadata names another split": (lambda r: _edit_meta(r / TRAIN_ID, split="test"),
                                     "metadata split='test'"),
    "metadata names another group": (lambda r: _edit_meta(r / TRAIN_ID, group="ckpt3"),
                                     "metadata group='ckpt3'"),
    "observation dimension": (lambda r: (_edit_flat(r / TRAIN_ID, _wider_obs), _edit_meta(
        r / TRAIN_ID, observation_dim=12)), "observation dimension 12, but task set"),
    "actions x1000": (lambda r: _edit_flat(r / TRAIN_ID, lambda a: a.update(
        actions=a["actions"] * 1000)), "'actions' outside the action space"),
    "main_data.hdf5 garbage": (lambda r: (r / TRAIN_ID / "data" / "main_data.hdf5").write_bytes(
        b"garbage" * 100), "main_data.hdf5: size 700 bytes differs"),
    "flat.npz truncated": (lambda r: (r / TRAIN_ID / "flat.npz").write_bytes(
        (r / TRAIN_ID / "flat.npz").read_bytes()[:500]), "unreadable flat cache"),
    "flat.npz swapped for valid other data": (lambda r: shutil.copy(
        r / OTHER_ID / "flat.npz", r / TRAIN_ID / "flat.npz"), "flat.npz:"),
    "NaN reward": (lambda r: _edit_flat(r / TRAIN_ID, lambda a: a["rewards"].__setitem__(
        3, np.nan)), "'rewards' has a non-finite value at index 3"),
    "float64 observations": (lambda r: _edit_flat(r / TRAIN_ID, lambda a: a.update(
        observations=a["observations"].astype(np.float64))), "dtype float64"),
    "metadata not JSON": (lambda r: (r / TRAIN_ID / "reda_metadata.json").write_text("{x"),
                          "unreadable metadata JSON"),
    "COMPLETE not JSON": (lambda r: (r / TRAIN_ID / "COMPLETE").write_text("{x"),
                          "unreadable completion marker"),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_invalid_dataset_is_an_error_naming_the_file_never_a_recollection(
        capsys, smoke_dir, tmp_path, monkeypatch, case):
    break_it, words = DATASET_CASES[case]
    data = tmp_path / "data"
    shutil.copytree(smoke_dir / "datasets", data / "datasets")
    break_it(data / "datasets")
    import reda_jax.behavior.collect as collect
    monkeypatch.setattr(collect, "run_collection", lambda *a, **k: pytest.fail("re-collection"))
    config = build_config(TS, "smoke", 1)
    line = _exit(capsys, lambda: train_app.run_training(config, str(tmp_path / "w"),
                                                        str(data), show_progress=False))
    assert str(data / "datasets" / TRAIN_ID) in line and words in line, line
    # Nothing was written that a later run would read as valid: no run directory, and the
    # dataset still fails the same way.
    assert not (tmp_path / "w").exists()
    with pytest.raises(store.DatasetError) as again:
        load_or_collect(TS, "smoke", 1, str(data))
    assert words in str(again.value)


def test_a_collection_asked_for_by_seed_refuses_datasets_of_another_seed(smoke_dir,
                                                                        monkeypatch):
    """The smoke preset collects with seed 0: asking for it by seed loads; asking for seed 3
    in the same directory is refused, naming both seeds, and collects nothing."""
    import reda_jax.behavior.collect as collect
    monkeypatch.setattr(collect, "run_collection", lambda *a, **k: pytest.fail("re-collection"))
    assert presets.collect_preset("smoke", TS).seed == 0
    train, _ = load_or_collect(TS, "smoke", 1, str(smoke_dir), seed=0)
    assert len(train) == len(get_task_set(TS).train_tasks)
    with pytest.raises(store.DatasetError, match="collected with seed 0, not the requested 3"):
        load_or_collect(TS, "smoke", 1, str(smoke_dir), seed=3)
    # Without a seed the preset's is required (here a preset that says 5): a run's recorded
    # collection seed is always its data's.
    import dataclasses
    original = presets.collect_preset
    monkeypatch.setattr(presets, "collect_preset", lambda *a, **k: dataclasses.replace(
        original(*a, **k), seed=5))
    with pytest.raises(store.DatasetError, match="seed 0, not the requested 5.*--collect_seed"):
        load_or_collect(TS, "smoke", 1, str(smoke_dir))


def test_missing_dataset_on_a_read_only_store_names_both(capsys, tmp_path):
    line = _exit(capsys, lambda: load_or_collect(TS, "smoke", 1, "/sys/reda_data"))
    assert line.startswith("error: --data_dir: datasets missing") and "not found" in line
    assert "not writable" in line


# ------------------------------------------------------------------------ run directories

def test_checkpoints_of_another_config_are_refused_without_config_json(capsys, tmp_path):
    """A finished ReDA run whose config.json is gone, run again as w/o TC: refused by the
    config its checkpoints record (only their metadata is read, so no training here)."""
    from reda_jax.checkpoint import Checkpointer
    w = tmp_path / "run"
    reda = configs.to_dict(build_config(TS, "smoke", 1))
    for stage, epoch in (("dynamics", 3), ("representation", 2), ("meta_policy", 2)):
        Checkpointer(w / "checkpoints" / stage, max_to_keep=2).save(
            epoch, {"x": np.zeros(2, np.float32)}, {"done": True, "epoch": epoch,
                                                     "config": reda})
    (w / "results.json").write_text(json.dumps({"method": "reda"}))
    wo_tc = build_config(TS, "smoke", 1, ablation="wo_tc")
    line = _exit(capsys, lambda: train_app.run_training(wo_tc, str(w), str(tmp_path / "d"),
                                                        show_progress=False))
    assert "made under a different config" in line and "representation.lambda2" in line
    assert "checkpoints/representation" in line
    # Nothing relabelled, nothing collected; config.json was not recreated, so the
    # original command still resumes.
    assert json.loads((w / "results.json").read_text())["method"] == "reda"
    assert not (w / "config.json").exists() and not (tmp_path / "d").exists()


def test_another_config_in_the_same_workdir_names_the_fields(capsys, finished_run, tmp_path,
                                                             smoke_dir):
    w = _copy_run(finished_run, tmp_path)
    other = build_config(TS, "smoke", 1, algo=ALGO, num_seeds=3)
    line = _exit(capsys, lambda: train_app.run_training(other, str(w), str(smoke_dir),
                                                        show_progress=False))
    assert "made under a different config (fields ['num_seeds'])" in line
    assert (w / "results.json").read_text() == (finished_run[0] / "results.json").read_text()


def _same_results(a, b):
    for p in ("on_policy", "off_policy"):
        for task, v in a["protocols"][p]["tasks"].items():
            np.testing.assert_allclose(v["per_seed"], b["protocols"][p]["tasks"][task]["per_seed"],
                                       rtol=1e-6)


def _corrupt_files(step_dir: Path, only=None):
    for f in step_dir.rglob("*"):
        if f.is_file() and (only is None or f.name == only):
            f.write_bytes(b"junk")


def _newest(d: Path) -> Path:
    return max((p for p in d.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


RECOVER_CASES = {
    "partial last line in metrics.csv": (
        lambda w: open(w / "metrics.csv", "a").write("meta_policy,2,meta/crit"), None),
    "partial last line in eval_history.jsonl": (
        lambda w: open(w / "eval_history.jsonl", "a").write('{"epoch": 3, "on_'), None),
    "eval_history.jsonl deleted": (lambda w: (w / "eval_history.jsonl").unlink(),
                                   "evaluating the final policy again"),
    "newest meta_policy checkpoint corrupt": (
        lambda w: _corrupt_files(_newest(w / "checkpoints" / "meta_policy")),
        "resuming stage 'meta_policy' from the older checkpoint"),
    "corrupt checkpoint metadata file": (
        lambda w: _corrupt_files(_newest(w / "checkpoints" / "meta_policy"),
                                 "_CHECKPOINT_METADATA"), None),
    "stray empty step directory": (lambda w: (w / "checkpoints" / "meta_policy" / "99").mkdir(),
                                   None),
    "half-written orbax checkpoint": (lambda w: shutil.copytree(
        _newest(w / "checkpoints" / "meta_policy"),
        w / "checkpoints" / "meta_policy" / "3.orbax-checkpoint-tmp-1"), None),
    "metrics.csv deleted": (lambda w: (w / "metrics.csv").unlink(), "metrics.csv lacks"),
}


@pytest.mark.parametrize("case", list(RECOVER_CASES))
def test_damaged_run_recovers_to_the_same_result(finished_run, smoke_dir, tmp_path, case):
    damage, said = RECOVER_CASES[case]
    w = _copy_run(finished_run, tmp_path)
    damage(w)
    logs = []
    results = _run(smoke_dir, w, logs=logs)
    _same_results(results, finished_run[1])
    if said:
        assert any(said in l for l in logs), logs
    if case != "metrics.csv deleted":
        assert (w / "metrics.csv").read_text() == finished_run[2]
    history = [json.loads(l) for l in (w / "eval_history.jsonl").read_text().splitlines()]
    assert history[-1]["epoch"] == results["epoch"]


STAGE_TIMES = ("meta_policy_s", "evaluation_s")   # what a BC run spends its time on


def test_a_finished_run_resumed_keeps_the_times_its_training_took(finished_run, smoke_dir,
                                                                  tmp_path):
    """Resuming a finished run (e.g. to pool tables) trains nothing: its results.json must
    keep the stage times of the processes that trained it, not report them as missing."""
    w = _copy_run(finished_run, tmp_path)
    before = finished_run[1]["timing_s"]
    assert all(before[k] > 0 for k in STAGE_TIMES), before
    after = _run(smoke_dir, w)["timing_s"]
    assert {k: after[k] for k in STAGE_TIMES} == {k: before[k] for k in STAGE_TIMES}


def test_a_preempted_run_adds_the_times_of_both_processes(smoke_dir, tmp_path):
    w = tmp_path / "run"
    with pytest.raises(Preempted):
        _run(smoke_dir, w, epoch_budget=1)
    timing = json.loads((w / TIMING_FILE).read_text())
    assert timing["meta_policy_s"] > 0
    # Pretend the first process took 1000 s: the resumed run must add to it, not restart.
    (w / TIMING_FILE).write_text(json.dumps({**timing, "meta_policy_s": 1000.0}))
    total = _run(smoke_dir, w)["timing_s"]["meta_policy_s"]
    assert 1000.0 < total < 1000.0 + 600.0
    assert total == json.loads((w / TIMING_FILE).read_text())["meta_policy_s"]


def test_stage_without_a_restorable_checkpoint_says_what_to_do(capsys, finished_run, tmp_path,
                                                               smoke_dir):
    w = _copy_run(finished_run, tmp_path)
    for p in (w / "checkpoints" / "meta_policy").iterdir():
        _corrupt_files(p)
    line = _exit(capsys, lambda: _run(smoke_dir, w))
    assert "no checkpoint of stage 'meta_policy' can be restored" in line and "delete" in line


def test_malformed_metrics_line_names_the_file_and_line(capsys, finished_run, tmp_path,
                                                        smoke_dir):
    w = _copy_run(finished_run, tmp_path)
    lines = (w / "metrics.csv").read_text().splitlines(True)
    lines[3] = "garbage\n"
    (w / "metrics.csv").write_text("".join(lines))
    line = _exit(capsys, lambda: _run(smoke_dir, w))
    assert "metrics.csv: malformed line 4" in line


def test_kill_during_the_first_checkpoint_write_resumes_to_the_same_metrics(
        finished_run, smoke_dir, tmp_path, monkeypatch):
    """A kill while orbax writes the run's first checkpoint leaves epoch-1 rows and a
    temporary directory; the next run must not log epoch 1 twice."""
    from reda_jax import checkpoint

    class Killed(BaseException):
        pass

    real_save = checkpoint.Checkpointer.save

    def dying_save(self, step, tree, meta=None):
        tmp = self.directory / f"{step}.orbax-checkpoint-tmp-42"
        tmp.mkdir(parents=True)
        (tmp / "partial").write_bytes(b"half")
        raise Killed

    w = tmp_path / "run"
    monkeypatch.setattr(checkpoint.Checkpointer, "save", dying_save)
    with pytest.raises(Killed):
        _run(smoke_dir, w)
    assert [r["epoch"] for r in read_metrics(w)][-1] == "1"  # the killed run logged epoch 1
    monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
    results = _run(smoke_dir, w)
    assert (w / "metrics.csv").read_text() == finished_run[2]
    _same_results(results, finished_run[1])


# ------------------------------------------------------------------------ tables / plots

def test_tables_skip_an_unreadable_results_json_naming_it(finished_run, tmp_path, capsys):
    from reda_jax.report import tables
    runs = tmp_path / "runs"
    shutil.copytree(finished_run[0], runs / "good")
    (runs / "bad").mkdir()
    (runs / "bad" / "results.json").write_text('{"algo": "re')
    out = tmp_path / "out"
    tables.make_report(runs, out, echo=lambda *_: None)
    err = capsys.readouterr().err
    assert f"warning: skipped {runs / 'bad' / 'results.json'}: unreadable" in err
    assert "1 runs" in (out / "tables.md").read_text() or "Results of 1 runs" in (
        out / "tables.md").read_text()


def test_behavior_returns_checks_the_collection_seed(smoke_dir, tmp_path):
    """experiments.behavior_returns reads collection s where experiments.train does and
    refuses a directory collected with another seed, or no collection, naming the problem."""
    from reda_jax.experiment import check_collection_seed, collection_dir
    check_collection_seed(str(smoke_dir), 0)                     # the smoke collection: seed 0
    with pytest.raises(validate.InputError, match="collected with seed 0, not the requested "
                                                  "collection seed 3"):
        check_collection_seed(str(smoke_dir), 3)
    with pytest.raises(validate.InputError, match="no collection at .*config.json"):
        check_collection_seed(str(tmp_path), 0)
    assert collection_dir("runs/data/smoke/x", 3, "smoke", TS)[1] == "runs/data/smoke/x-seed3"


def test_a_full_disk_and_an_interrupt_are_one_line_saying_the_run_resumes(capsys):
    """Also when they surface as another library's error raised while handling them (a
    checkpoint writer's closed event loop, a thread pool shut down by the interrupt)."""
    import errno

    def full():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.csv")
        except OSError as e:
            raise RuntimeError("Event loop is closed") from e

    def interrupted():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("cannot schedule new futures after shutdown")

    with pytest.raises(SystemExit) as exit_:
        validate.guarded(full)()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no space left on device writing /runs/x/metrics.csv; free space and "
                   "rerun the same command: the run resumes from its last checkpoint"]
    with pytest.raises(SystemExit) as exit_:
        validate.guarded(interrupted)()
    assert exit_.value.code == validate.EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: interrupted; rerun the same command to resume from the last checkpoint"]
    with pytest.raises(ZeroDivisionError):      # anything else is not hidden
        validate.guarded(lambda: 1 / 0)()
