"""Behavior collection: time limits, replay buffer, checkpoint groups, datasets, resume."""
import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.configs import CollectConfig, SACConfig
from reda_jax.presets import collect_preset
from reda_jax.data import replay, store
from reda_jax.behavior.collect import BehaviorCollector, read_returns
from reda_jax.data.datasets import build_datasets, load_datasets, prefix
from reda_jax.data.rollout import collect_transitions
from reda_jax.envs.tasks import get_task_set, make_env
from reda_jax.types import Transitions

pytestmark = pytest.mark.timeout(600)

TINY = CollectConfig(
    sac=SACConfig(hidden_dims=(32, 32), batch_size=32), total_steps=120, random_steps=40,
    update_after=20, update_every=10, num_checkpoints=4, checkpoint_groups=((2,), (1, 2, 4)),
    train_transitions=60, test_transitions_per_checkpoint=15, seed=3)


def test_time_limit_is_a_truncation_never_a_terminal():
    """HalfCheetah never terminates: with a 25-step limit every 25th transition is a
    truncation, no transition is terminal, and the cut at the end is a truncation."""
    task = get_task_set("halfcheetah-gravity").task(1.0)
    envs = [make_env(task, max_episode_steps=25) for _ in range(2)]
    data, returns = collect_transitions(lambda o: np.zeros((2, 6), np.float32), envs, 60, seed=0)
    for d in data:
        assert not d["terminals"].any()
        assert np.flatnonzero(d["truncations"]).tolist() == [24, 49, 59]
        # next_obs continues into obs inside an episode, and not across a reset
        np.testing.assert_array_equal(d["next_observations"][:24], d["observations"][1:25])
        assert not np.allclose(d["next_observations"][24], d["observations"][25])
    assert [len(r) for r in returns] == [2, 2]  # the cut third episode is not counted


def test_replay_insert_and_sample_only_filled_rows():
    buf = replay.init_replay(num_members=2, capacity=10, obs_dim=1, act_dim=1)

    def chunk(start, n):
        vals = jnp.arange(start, start + n, dtype=jnp.float32)
        rows = jnp.stack([vals, vals + 100])  # member 1 is offset by 100
        return Transitions(rows[..., None], rows[..., None], rows, rows[..., None],
                           jnp.zeros_like(rows), jnp.zeros_like(rows))

    buf = replay.insert(replay.insert(buf, chunk(0, 3)), chunk(3, 2))
    assert int(buf.size) == 5
    np.testing.assert_array_equal(buf.data.rewards[1, :6], [100, 101, 102, 103, 104, 0])
    batch = replay.sample(buf, jax.random.key(0), 500)
    r = np.asarray(batch.rewards)
    assert set(np.unique(r[0])) == {0, 1, 2, 3, 4}
    assert set(np.unique(r[1])) == {100, 101, 102, 103, 104}
    np.testing.assert_array_equal(np.asarray(batch.observations)[..., 0], r)


def test_transitions_per_checkpoint_follow_the_groups():
    cfg = CollectConfig()
    need = cfg.transitions_per_checkpoint()
    assert need[25] == 1_000_000
    assert need[5] == need[45] == 333_333
    assert need[10] == need[40] == 200_000
    assert need[1] == need[50] == 20_000
    assert len(need) == 50


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="num_checkpoints"):
        CollectConfig(total_steps=1001)
    with pytest.raises(ValueError, match="outside 1..50"):
        CollectConfig(checkpoint_groups=((0, 25),))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        CollectConfig(seed=-1)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        collect_preset("huge")


def test_prefix_ends_with_truncation():
    d = {k: np.zeros(5, bool) if k in ("terminals", "truncations") else np.arange(5.0)
         for k in store.FIELDS}
    out = prefix(d, 3)
    assert out["truncations"].tolist() == [False, False, True]
    d["terminals"][2] = True
    assert prefix(d, 3)["truncations"].tolist() == [False, False, False]
    with pytest.raises(ValueError, match="only 5"):
        prefix(d, 6)


def test_collection_resumes_after_a_kill_and_builds_group_datasets(tmp_path, monkeypatch):
    task_set = get_task_set("inverted-pendulum-gravity")
    tasks = task_set.all_tasks
    workdir = tmp_path / "collect"

    class Killed(Exception):
        pass

    def kill_at(step):
        def progress(n, info):
            if info["env_steps"] >= step:
                raise Killed()
        return progress

    collector = BehaviorCollector(TINY, tasks, [0, 1], workdir)
    with pytest.raises(Killed):
        collector.run(kill_at(75))  # dies mid-episode between checkpoints 2 (60 steps) and 3 (90)
    assert collector.train_ckpt.latest_step() == 2
    saved_actor = collector.policy_ckpt.restore(2, collector._fresh()[0].actor_params)[0]

    collector = BehaviorCollector(TINY, tasks, [0, 1], workdir)
    state, buffer, _, meta = collector._restore(2)
    assert int(buffer.size) == 60 and meta["env_steps"] == 60
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.actor_params),
                 saved_actor)
    collector.run()
    assert collector.train_ckpt.latest_step() == 4
    rows = read_returns(workdir / "returns.csv")
    assert sorted((int(r["checkpoint"]), r["task"]) for r in rows) == sorted(
        (k, t.name) for k in range(1, 5) for t in tasks)  # one row each, none repeated

    # The resumed run ends exactly where an uninterrupted one does.
    straight = BehaviorCollector(TINY, tasks, [0, 1], tmp_path / "straight")
    straight.run()
    state_a, buffer_a, _, _ = collector._restore(4)
    state_b, buffer_b, _, _ = straight._restore(4)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, (state_a, buffer_a)),
                 jax.tree.map(np.asarray, (state_b, buffer_b)))
    for task in tasks:
        for k in range(1, 5):
            ra = np.load(workdir / "rollouts" / task.name / f"ckpt_{k:03d}.npz")
            rb = np.load(tmp_path / "straight" / "rollouts" / task.name / f"ckpt_{k:03d}.npz")
            for field in ("observations", "actions", "rewards"):
                np.testing.assert_array_equal(ra[field], rb[field])

    root = tmp_path / "datasets"
    ids = build_datasets(workdir / "rollouts", root, task_set, TINY)
    assert len(ids) == len(tasks) * 2 * 2
    train = load_datasets(root, task_set, 3, "train", TINY)
    test = load_datasets(root, task_set, 3, "test", TINY)
    for task in tasks:
        arrays, meta = train[task.name]
        assert meta["checkpoints"] == [1, 2, 4] and meta["multiplier"] == task.multiplier
        assert len(arrays["rewards"]) == 3 * (60 // 3)
        # each checkpoint's slice ends an episode
        assert all(arrays["terminals"][i] or arrays["truncations"][i] for i in (19, 39, 59))
        rollout = np.load(workdir / "rollouts" / task.name / "ckpt_004.npz")
        np.testing.assert_array_equal(arrays["observations"][40:60], rollout["observations"][:20])
        arrays, meta = test[task.name]
        assert meta["checkpoints"] == [3] and len(arrays["rewards"]) == 15
        assert set(meta["checkpoint_returns"]) == {"3"}
    # Minari users can rebuild the exact task from a dataset.
    import minari
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    env = minari.load_dataset(ids[-1]).recover_environment()
    assert env.unwrapped.model.opt.gravity[2] == pytest.approx(-9.81 * tasks[-1].multiplier)
    assert env.action_space.high[0] == 1.0  # rescaled like make_env
    one = load_datasets(root, task_set, 1, "train", TINY)
    assert one[tasks[0].name][1]["checkpoints"] == [2]
    assert len(one[tasks[0].name][0]["rewards"]) == 60
    with pytest.raises(ValueError, match="valid sizes: \\[1, 3\\]"):
        load_datasets(root, task_set, 5, "train", TINY)


def test_extended_rollouts_come_from_the_stored_policy_and_keep_the_smaller_dataset(tmp_path):
    """Lost rollouts are re-rolled from the stored policies. More data from the same checkpoint: the stored rollout grows to the new N, its first
    rows (and so the smaller dataset) are unchanged, the appended episodes are new (another
    reset seed) and are the stored deterministic policy's actions, and the extended
    group's datasets hold N per task."""
    from reda_jax.behavior.collect import extended_config
    task_set = get_task_set("inverted-pendulum-gravity")
    tasks = task_set.all_tasks
    workdir = tmp_path / "collect"
    collector = BehaviorCollector(TINY, tasks, [0, 1], workdir)
    collector.run()
    # Deleted rollouts come back, identical, from the stored policies when the collection
    # is run again (returns.csv keeps one row per checkpoint and task).
    gone = workdir / "rollouts" / tasks[1].name / "ckpt_001.npz"
    kept = dict(np.load(gone))
    gone.unlink()
    (workdir / "rollouts" / tasks[0].name / "ckpt_003.npz").unlink()
    BehaviorCollector(TINY, tasks, [0, 1], workdir).run()
    for field in ("observations", "actions", "rewards", "episode_returns"):
        np.testing.assert_array_equal(np.load(gone)[field], kept[field])
    assert (workdir / "rollouts" / tasks[0].name / "ckpt_003.npz").exists()
    assert len(read_returns(workdir / "returns.csv")) == len(tasks) * TINY.num_checkpoints
    build_datasets(workdir / "rollouts", tmp_path / "small", task_set, TINY)
    before = {t.name: dict(np.load(workdir / "rollouts" / t.name / "ckpt_002.npz"))
              for t in tasks}
    collector.extend_rollouts([2], 150)
    collector.extend_rollouts([2], 150)   # nothing left to do: unchanged
    actor = collector.policy_ckpt.restore(2, collector._fresh()[0].actor_params)[0]
    for i, task in enumerate(tasks):
        after = dict(np.load(workdir / "rollouts" / task.name / "ckpt_002.npz"))
        old = before[task.name]
        n = len(old["rewards"])
        assert len(after["rewards"]) == 150 and n < 150
        np.testing.assert_array_equal(after["observations"][:n], old["observations"])
        assert after["terminals"][n - 1] or after["truncations"][n - 1]
        assert not np.allclose(after["observations"][n], old["observations"][0])
        one = jax.tree.map(lambda x: jnp.asarray(x[i]), actor)
        acts = jax.vmap(lambda o: collector.sac.act(one, o, jax.random.key(0), True))(
            jnp.asarray(after["observations"][n:]))
        np.testing.assert_allclose(after["actions"][n:], np.asarray(acts), atol=1e-5)
        assert len(after["episode_returns"]) >= len(old["episode_returns"])
    ext = extended_config(TINY, 150, 1)
    assert ext.checkpoint_groups == ((2,),)
    build_datasets(workdir / "rollouts", tmp_path / "big", task_set, ext)
    big = load_datasets(tmp_path / "big", task_set, 1, "train", ext)
    small = load_datasets(tmp_path / "small", task_set, 1, "train", TINY)
    for task in tasks:
        assert len(big[task.name][0]["rewards"]) == 150
        np.testing.assert_array_equal(big[task.name][0]["observations"][:60],
                                      small[task.name][0]["observations"])


@pytest.mark.timeout(900)
def test_trained_smoke_policy_beats_random_on_inverted_pendulum(tmp_path):
    """A few thousand SAC steps balance the pendulum far longer than random actions."""
    cfg = CollectConfig(sac=SACConfig(hidden_dims=(64, 64), batch_size=128), total_steps=4000,
                        random_steps=500, update_after=200, update_every=50, num_checkpoints=2,
                        checkpoint_groups=((2,),), train_transitions=1000,
                        test_transitions_per_checkpoint=1000, seed=0)
    task = get_task_set("inverted-pendulum-gravity").task(1.0)
    BehaviorCollector(cfg, [task], [0], tmp_path).run()
    last = [r for r in read_returns(tmp_path / "returns.csv") if r["checkpoint"] == "2"][0]
    rng = np.random.default_rng(0)
    _, random_returns = collect_transitions(
        lambda o: rng.uniform(-1, 1, (1, 1)).astype(np.float32), [make_env(task)], 1000, seed=0)
    random_mean = float(np.mean(random_returns[0]))
    assert random_mean < 20
    assert float(last["return_mean"]) > 10 * random_mean


def test_collect_app_rejects_unknown_task_set():
    out = subprocess.run([sys.executable, "-m", "experiments.collect", "--task_set=hopper-wind"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "hopper-wind" in out.stderr and "hopper-gravity" in out.stderr


@pytest.mark.timeout(900)
def test_collect_app_end_to_end_and_rerun_resumes(tmp_path):
    """The README's app on the smoke preset: datasets, config and returns are written; a
    second run with the same command finds everything done and retrains nothing."""
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "experiments.collect", "--task_set=inverted-pendulum-gravity",
           "--preset=smoke", f"--workdir={workdir}"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (workdir / "config.json").exists() and (workdir / "run_info.json").exists()
    cfg = collect_preset("smoke")
    rows = read_returns(workdir / "returns.csv")
    assert len(rows) == 2 * cfg.num_checkpoints
    train = load_datasets(workdir / "datasets", get_task_set("inverted-pendulum-gravity"), 3,
                          "train", cfg)
    assert {m["multiplier"] for _, m in train.values()} == {1.0, 2.0}
    mtime = (workdir / "returns.csv").stat().st_mtime
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (workdir / "returns.csv").stat().st_mtime == mtime
    assert "| checkpoint |" in second.stdout
    other = subprocess.run(cmd[:-2] + ["--preset=mini", f"--workdir={workdir}"],
                           capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "different config" in other.stderr


_LAUNCHER = """
import json, sys
from launch.collect_all import commands
print(json.dumps(commands(["hopper-gravity", "ant-damping"], "mini", "out")))
try:
    commands(["hopper-wind"], "mini", "out")
except ValueError as e:
    print(e)
"""


def test_launcher_expands_task_sets_and_names_unknown_ones():
    # In a fresh interpreter: the launcher's absl flags (--preset, ...) would clash with
    # those of other apps imported in-process by other test modules.
    out = subprocess.run([sys.executable, "-c", _LAUNCHER], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    cmds_line, error_line = out.stdout.strip().splitlines()[:2]
    assert [c[-3:] for c in json.loads(cmds_line)] == [
        ["--task_set=hopper-gravity", "--preset=mini", "--workdir=out/mini/hopper-gravity"],
        ["--task_set=ant-damping", "--preset=mini", "--workdir=out/mini/ant-damping"]]
    assert re.search("'hopper-wind'.*walker2d-gravity", error_line), error_line
