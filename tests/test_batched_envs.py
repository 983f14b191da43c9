"""BatchedEnvs against gymnasium v5, step by step and bit for bit, for every family."""
import numpy as np
import pytest

from reda_jax.envs.batched import FAMILIES, BatchedEnvs
from reda_jax.envs.tasks import TASK_SETS, TaskSpec, get_task_set

pytestmark = pytest.mark.timeout(300)

# Every family in the project's task sets, each with two tasks of different multipliers
# (and both parameters where the project varies both), plus Ant with its contact forces
# observed (gymnasium's default; the project's Ant drops them).
CASES = {
    "hopper": get_task_set("hopper-gravity").train_tasks[::2]
    + get_task_set("hopper-damping").train_tasks[2:],
    "walker2d": get_task_set("walker2d-gravity").train_tasks[:1]
    + get_task_set("walker2d-damping").train_tasks[:1],
    "halfcheetah": get_task_set("halfcheetah-gravity").train_tasks[::2],
    "ant": get_task_set("ant-gravity").train_tasks[::2]
    + get_task_set("ant-damping").train_tasks[:1],
    "ant-with-forces": (TaskSpec("Ant-v5", "gravity", 0.5,
                                 (("include_cfrc_ext_in_observation", True),)),),
    "inverted-pendulum": get_task_set("inverted-pendulum-gravity").train_tasks,
}


def test_every_project_family_is_covered():
    families = {ts.env_id for ts in TASK_SETS.values()}
    assert families <= set(FAMILIES)
    assert families <= {t.env_id for tasks in CASES.values() for t in tasks}


def run_both(tasks, num_envs, steps, action_scale, seed=0):
    """Steps BatchedEnvs and one gymnasium env per env with the same random float32 actions;
    an env that ends (terminated or truncated) is reset in both with a fresh seed. Returns
    the number of episode ends of each kind."""
    env_tasks = np.arange(num_envs) % len(tasks)
    sim = BatchedEnvs(tasks, env_tasks)
    refs = [tasks[t].make_env() for t in env_tasks]
    rng = np.random.default_rng(seed)
    next_seed = 100

    def reset(idx):
        nonlocal next_seed
        seeds = np.arange(next_seed, next_seed + len(idx))
        next_seed += len(idx)
        got = sim.reset(idx, seeds)
        want = np.stack([refs[i].reset(seed=int(s))[0] for i, s in zip(idx, seeds)])
        np.testing.assert_array_equal(got, want)

    reset(np.arange(num_envs))
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        # A random subset of envs steps (the rest wait, as finished envs do in evaluate).
        idx = np.flatnonzero(rng.random(num_envs) < 0.8)
        a = (action_scale * rng.uniform(-1, 1, (len(idx), sim.act_dim))).astype(np.float32)
        obs, rew, term, trunc = sim.step(idx, a)
        for j, i in enumerate(idx):
            o, r, te, tr, _ = refs[i].step(a[j])
            np.testing.assert_array_equal(obs[j], o)
            assert rew[j] == r, (i, rew[j], r)
            assert (term[j], trunc[j]) == (te, tr)
        done = term | trunc
        ends["terminated"] += int(term.sum())
        ends["truncated"] += int(trunc.sum())
        if done.any():
            reset(idx[done])
    return ends


@pytest.mark.parametrize("family", sorted(CASES))
def test_steps_equal_gymnasium_exactly(family):
    """Observations, rewards (==, not close), terminations and truncations equal the
    gymnasium env's at every step, through resets; falling families do terminate."""
    ends = run_both(CASES[family], num_envs=4, steps=250, action_scale=1.0)
    if family in ("hopper", "walker2d", "inverted-pendulum"):
        assert ends["terminated"] > 0


def test_time_limit_truncates_at_1000_steps_exactly():
    """HalfCheetah never terminates: both envs (stepped together every time) are truncated
    at step 1000, not 999 or 1001; a reset restarts the count."""
    tasks = CASES["halfcheetah"]
    sim = BatchedEnvs(tasks, [0, 1])
    assert sim.max_episode_steps == 1000
    sim.reset([0, 1], [1, 2])
    a = np.zeros((2, sim.act_dim), np.float32)
    for step in range(1, 1001):
        _, _, term, trunc = sim.step([0, 1], a)
        assert not term.any()
        assert trunc.all() == (step == 1000) and trunc.any() == (step == 1000)
    sim.reset([0], [3])
    assert not sim.step([0], a[:1])[3].any()


def test_same_seed_same_start_and_tasks_differ():
    """Two envs of one task reset with one seed start identically and stay identical; the
    same seed in another task (gravity x1.5 vs x0.5) gives the same start but other
    dynamics."""
    tasks = CASES["hopper"][:2]
    sim = BatchedEnvs(tasks, [0, 0, 1])
    o0 = sim.reset([0, 1, 2], [7, 7, 7])
    np.testing.assert_array_equal(o0[0], o0[1])
    np.testing.assert_array_equal(o0[0], o0[2])
    a = np.full((3, sim.act_dim), 0.1, np.float32)
    for _ in range(5):
        obs, *_ = sim.step([0, 1, 2], a)
    np.testing.assert_array_equal(obs[0], obs[1])
    assert np.abs(obs[0] - obs[2]).max() > 1e-4


def test_bad_inputs():
    hopper = CASES["hopper"]
    with pytest.raises(ValueError, match="one family"):
        BatchedEnvs([hopper[0], CASES["walker2d"][0]], [0, 1])
    with pytest.raises(ValueError, match="one family"):
        BatchedEnvs([CASES["ant"][0], CASES["ant-with-forces"][0]], [0, 1])
    with pytest.raises(ValueError, match="no rules for 'Swimmer-v5'"):
        BatchedEnvs([TaskSpec("Swimmer-v5", "gravity", 1.0)], [0])
    with pytest.raises(ValueError, match="index the 2 tasks"):
        BatchedEnvs(hopper[:2], [0, 2])
    with pytest.raises(ValueError, match="at least one task"):
        BatchedEnvs([], [0])
    sim = BatchedEnvs(hopper[:1], [0, 0])
    with pytest.raises(ValueError, match="one seed per env"):
        sim.reset([0, 1], [1])
    sim.reset([0, 1], [1, 2])
    with pytest.raises(ValueError, match=r"\(n, act_dim\) = \(2, 3\)"):
        sim.step([0, 1], np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        sim.step([0, 2], np.zeros((2, 3), np.float32))
    # An empty step is allowed (every env finished) and changes nothing.
    obs, rew, term, trunc = sim.step([], np.zeros((0, 3), np.float32))
    assert obs.shape == (0, 11) and rew.shape == term.shape == trunc.shape == (0,)
