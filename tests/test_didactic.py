"""The didactic example: Eq. 8's metric, the checkpoint choice, and the app end to end."""
import csv
import dataclasses
import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax import presets
from reda_jax.eval.metrics import mean_pairwise_sq_distance, relative_representation_metric
from reda_jax.report import didactic
from reda_jax.report.didactic import choose_checkpoints


def test_relative_representation_metric_matches_eq8_by_brute_force():
    rng = np.random.default_rng(0)
    z1, z2, zt = rng.normal(size=(5, 3)), rng.normal(size=(7, 3)) + 2.0, rng.normal(size=(4, 3))
    num = sum(np.sum((a - b) ** 2) for a in z1 for b in zt)
    den = sum(np.sum((a - b) ** 2) for a in z2 for b in zt)
    expected = len(z2) * num / (len(z1) * den)               # Eq. 8 as printed
    np.testing.assert_allclose(relative_representation_metric(z1, z2, zt), expected, rtol=1e-5)
    np.testing.assert_allclose(mean_pairwise_sq_distance(z1, zt), num / (5 * 4), rtol=1e-5)
    # Test contexts mapped onto task 1's cluster: d near 0; onto task 2's: d large.
    tight1 = np.zeros((6, 3)) + rng.normal(size=(6, 3)) * 1e-3
    far2 = np.full((6, 3), 5.0)
    assert relative_representation_metric(tight1, far2, tight1 + 1e-3) < 1e-4
    assert relative_representation_metric(tight1, far2, far2) > 1e4


def _write_returns(path, returns: dict, episodes: dict | None = None) -> None:
    """returns.csv as the collector writes it: {task: [return of checkpoint 1, 2, ...]}."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["checkpoint", "task", "return_mean", "episodes"])
        w.writeheader()
        for task, rets in returns.items():
            for k, r in enumerate(rets, 1):
                w.writerow({"checkpoint": k, "task": task, "return_mean": r,
                            "episodes": (episodes or {}).get((task, k), 50)})


def test_checkpoints_are_the_earliest_in_band_by_return(tmp_path):
    returns = {"gravity_x1.0": [40.0, 107.6, 60.9, 95.2], "gravity_x2.0": [24.0, 80.8, 52.0, 73.5]}
    path = tmp_path / "returns.csv"
    _write_returns(path, returns)
    # task 1 train: 100 +- 20 holds ckpts 2 (107.6) and 4 (95.2): the earliest, 2, although
    # 4 is closer; task 2 train: 50 +- 10 -> ckpt 3; task 1 test: 50 +- 10 -> ckpt 1 (40.0,
    # on the band's edge); task 2 test: 100 +- 20 -> ckpt 2 (80.8).
    assert choose_checkpoints(str(path)) == {"train1": 2, "train2": 3, "test1": 1, "test2": 2}
    # Too few episodes behind a return: that checkpoint is not considered.
    _write_returns(path, returns, episodes={("gravity_x1.0", 2): 5})
    assert choose_checkpoints(str(path))["train1"] == 4
    # Nothing in band: the closest (earliest on ties); never the task's train checkpoint.
    returns["gravity_x1.0"] = [75.0, 0.0, 0.0, 0.0]
    _write_returns(path, returns)
    chosen = choose_checkpoints(str(path))
    assert chosen["train1"] == 1 and chosen["test1"] == 2
    # What the run reports as in band: the band's edges count, outside them does not.
    assert didactic.in_band(40.0, "test1") and didactic.in_band(120.0, "train1")
    assert not didactic.in_band(75.0, "train1") and not didactic.in_band(60.1, "train2")


def _behavior_by_hand(workdir, collect_seed: int, checkpoint: int) -> float:
    """Mean return of task 1's behavior policy at `checkpoint` over the evaluation's episodes,
    stepped one gymnasium env at a time."""
    import jax
    from reda_jax.algos.sac import make_sac
    from reda_jax.checkpoint import Checkpointer
    from reda_jax.envs.tasks import get_task_set
    from reda_jax.eval.protocols import env_seed
    task_set = get_task_set(didactic.TASK_SET)
    sac = make_sac(presets.didactic_collect_config("smoke", collect_seed).sac, task_set.obs_dim,
                   task_set.act_dim)
    like = jax.vmap(sac.init)(jax.random.split(jax.random.key(0), 2)).actor_params
    params, _ = Checkpointer(workdir / "data" / "checkpoints" / "policies", None).restore(
        checkpoint, like)
    task1 = jax.tree.map(lambda x: x[0], params)
    ecfg = presets.didactic_train_config("bc", "smoke", 1).eval
    env, returns = task_set.all_tasks[0].make_env(), []
    for e in range(ecfg.num_episodes):
        obs, _ = env.reset(seed=env_seed(ecfg.seed, 0, e))
        total, done, steps = 0.0, False, 0
        while not done and (ecfg.max_steps is None or steps < ecfg.max_steps):
            a = np.asarray(sac.act(task1, jnp.asarray(obs, jnp.float32), None, True))
            obs, r, term, trunc, _ = env.step(a)
            total, done, steps = total + r, term or trunc, steps + 1
        returns.append(total)
    return float(np.mean(returns))


def test_overrides_reach_every_method_after_the_didactic_sizes():
    base = presets.didactic_train_config("reda", "default", 5)
    config = presets.didactic_train_config("reda", "default", 5,
                                   ("meta.q_weight=0", "meta.num_epochs=3"))
    assert base.meta.q_weight == 0.1 and base.meta.num_epochs == 10
    assert config.meta.q_weight == 0.0 and isinstance(config.meta.q_weight, float)
    assert config.meta.num_epochs == 3           # an override beats the didactic's own size
    assert config.data_preset == "didactic" and config.num_seeds == 5
    assert dataclasses.replace(config, meta=base.meta) == base   # nothing else changed
    with pytest.raises(ValueError, match="no field 'qq'"):
        presets.didactic_train_config("bc", "default", 5, ("meta.qq=1",))


@pytest.mark.timeout(900)
def test_didactic_app_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.didactic", "--preset=smoke",
                          f"--workdir={tmp_path}", "--noprogress", "--methods=bc,oracle,om_sac",
                          "--num_seeds=2", "--collect_seeds=0,1"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    for label in ("| BC |", "| Oracle |", "| OM-SAC |", "collection 0:", "collection 1:",
                  "Figure 2 not checked"):
        assert label in out.stdout, label
    result = json.loads((tmp_path / "didactic.json").read_text())
    assert [r["method"] for r in result["rows"]] == ["behavior", "bc", "oracle", "om_sac"]
    assert "| Behavior (D1_train checkpoint) |" in out.stdout and "Floor (0.9x" in out.stdout
    # The behavior row: D1_train's checkpoint of task 1, rolled out by hand on the episodes
    # (reset seeds) the methods are evaluated on.
    for cs, info in result["data"].items():
        k = info["train1"]["checkpoint"]
        assert result["rows"][0]["task1_return_on_policy"][int(cs)] == pytest.approx(
            _behavior_by_hand(tmp_path / f"collect{cs}", int(cs), k), rel=1e-6)
    b = result["rows"][0]["task1_return_on_policy"]     # one checkpoint per collection: shown
    assert f"| {np.mean(b):.2f} ({b[0]:.2f}, {b[1]:.2f}) |" in out.stdout   # not as a t-interval
    rows = {r["method"]: r for r in result["rows"][1:]}
    # Pooled over 2 seeds x 2 collections; d(phi) only for the learned representation.
    for row in rows.values():
        for key in ("task1_return_test_context", "task1_return_train_context",
                    "task1_return_on_policy"):
            assert len(row[key]) == 4
    assert rows["bc"]["d_phi"] is None and rows["oracle"]["d_phi"] is None
    assert len(rows["om_sac"]["d_phi"]) == 4 and all(d > 0 and np.isfinite(d)
                                                     for d in rows["om_sac"]["d_phi"])
    assert rows["bc"]["max_mean_q"] is None and len(rows["oracle"]["max_mean_q"]) == 4
    # Each collection is its own data, with its own checkpoints.
    for info in result["data"].values():
        assert info["train1"]["checkpoint"] != info["test1"]["checkpoint"]
    c0 = (tmp_path / "collect0" / "data" / "returns.csv").read_text()
    c1 = (tmp_path / "collect1" / "data" / "returns.csv").read_text()
    assert c0 != c1
    bad = subprocess.run([sys.executable, "-m", "experiments.didactic", "--methods=prompt_dt",
                          f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "prompt_dt" in bad.stderr


def test_a_didactic_collection_with_other_checkpoints_changes_only_their_number():
    base = presets.didactic_collect_config("default", 1)
    other = presets.didactic_collect_config("default", 1, num_checkpoints=12)
    assert (base.num_checkpoints, other.num_checkpoints) == (60, 12)
    assert dataclasses.replace(other, num_checkpoints=60) == base


def test_one_progress_bar_over_the_job_counts_restored_work_as_done_not_as_speed():
    parts = [(0, "collect"), (0, "reda"), (1, "collect"), (1, "reda"), (0, "reda", "pool")]
    job = didactic.JobProgress(parts, enabled=False)
    w = didactic.PART_MINUTES
    assert job.weights[(0, "reda")] == w["reda"] and job.weights[(0, "reda", "pool")] == w["pool"]
    job.update((0, "collect"), 1.0, restored=True)          # an earlier process collected it
    assert job.restored == pytest.approx(w["collect"])     # done, but not this process's rate
    job.update((0, "reda"), 0.5)
    job.update((0, "reda"), 0.25)                            # never moves back
    assert job.done[(0, "reda")] == 0.5
    assert job.n == pytest.approx(w["collect"] + 0.5 * w["reda"])
    job.update((1, "collect"), 2.0)                          # clipped to the part's weight
    total = 2 * (w["collect"] + w["reda"]) + w["pool"]
    assert job.fraction() == pytest.approx((2 * w["collect"] + 0.5 * w["reda"]) / total)
    job.close()
