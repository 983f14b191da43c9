"""Task sets, the task-parameter wrapper and action rescaling."""

import gc
import os
import re
import sys

import gymnasium
import mujoco
import numpy as np
import pytest

import reda_jax
from reda_jax.envs import (
    TASK_SETS,
    TaskParameterWrapper,
    TaskSet,
    TaskSpec,
    get_task_set,
    make_env,
)

EXPECTED = {  # name: (env_id, parameter, obs_dim, act_dim, train, test)
    "halfcheetah-gravity": ("HalfCheetah-v5", "gravity", 17, 6),
    "hopper-gravity": ("Hopper-v5", "gravity", 11, 3),
    "hopper-damping": ("Hopper-v5", "dof_damping", 11, 3),
    "walker2d-gravity": ("Walker2d-v5", "gravity", 17, 6),
    "walker2d-damping": ("Walker2d-v5", "dof_damping", 17, 6),
    "ant-gravity": ("Ant-v5", "gravity", 27, 8),
    "ant-damping": ("Ant-v5", "dof_damping", 27, 8),
    "inverted-pendulum-gravity": ("InvertedPendulum-v5", "gravity", 4, 1),
}

_BARE_DEFAULTS = {}


def _bare_defaults(ts: TaskSet):
    """Gravity and dof_damping of a freshly built, unwrapped simulator."""
    if ts.env_id not in _BARE_DEFAULTS:
        env = gymnasium.make(ts.env_id, **dict(ts.env_kwargs))
        m = env.unwrapped.model
        _BARE_DEFAULTS[ts.env_id] = (m.opt.gravity.copy(), m.dof_damping.copy())
        env.close()
    return _BARE_DEFAULTS[ts.env_id]


def _check_value(env, ts: TaskSet, multiplier: float):
    g0, d0 = _bare_defaults(ts)
    model = env.unwrapped.model
    if ts.parameter == "gravity":
        np.testing.assert_allclose(model.opt.gravity, [g0[0], g0[1], multiplier * g0[2]],
                                   rtol=0, atol=1e-12)
        np.testing.assert_array_equal(model.dof_damping, d0)
    else:
        np.testing.assert_allclose(model.dof_damping, multiplier * d0, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(model.opt.gravity, g0)


@pytest.mark.timeout(120)
def test_registry():
    assert set(TASK_SETS) == set(EXPECTED)
    for name, (env_id, parameter, obs_dim, act_dim) in EXPECTED.items():
        ts = get_task_set(name)
        assert ts.name == name and ts.env_id == env_id and ts.parameter == parameter
        assert (ts.obs_dim, ts.act_dim, ts.max_episode_steps) == (obs_dim, act_dim, 1000)
        if name == "inverted-pendulum-gravity":
            assert ts.train_multipliers == (1.0, 2.0) and ts.test_multipliers == ()
        else:
            assert ts.train_multipliers == (0.5, 1.0, 1.5)
            assert ts.test_multipliers == (0.8, 1.2)
        assert [t.multiplier for t in ts.all_tasks] == list(ts.train_multipliers + ts.test_multipliers)
        assert ts.all_tasks == ts.train_tasks + ts.test_tasks
        names = [t.name for t in ts.all_tasks]
        assert len(set(names)) == len(names)
        for t in ts.all_tasks:
            assert (t.env_id, t.parameter, t.env_kwargs) == (env_id, parameter, ts.env_kwargs)
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+", t.name), t.name
        env = ts.make_env(ts.train_multipliers[0])
        obs, _ = env.reset(seed=0)
        assert obs.shape == (obs_dim,) and env.observation_space.shape == (obs_dim,)
        assert env.action_space.shape == (act_dim,)
        np.testing.assert_array_equal(env.action_space.low, -1.0)
        np.testing.assert_array_equal(env.action_space.high, 1.0)
        env.close()


@pytest.mark.timeout(30)
def test_unknown_task_set_and_bad_specs():
    with pytest.raises(ValueError) as e:
        get_task_set("hopper-friction")
    assert "hopper-friction" in str(e.value)
    for name in EXPECTED:
        assert name in str(e.value)
    with pytest.raises(ValueError):
        TaskSpec("Hopper-v5", "friction", 1.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            TaskSpec("Hopper-v5", "gravity", bad)
    with pytest.raises(ValueError):  # a multiplier both train and test
        TaskSet("x", "Hopper-v5", "gravity", (0.5, 1.0), (1.0,))


@pytest.mark.timeout(30)
def test_task_names():
    assert TaskSpec("Hopper-v5", "gravity", 1.5).name == "gravity_x1.5"
    assert TaskSpec("Hopper-v5", "gravity", 1).name == "gravity_x1.0"
    assert TaskSpec("Walker2d-v5", "dof_damping", 0.5).name == "dof_damping_x0.5"
    assert TaskSpec("Walker2d-v5", "dof_damping", 1.25).name == "dof_damping_x1.25"
    # Hashable and equal by value (usable as dict keys / static jit arguments).
    assert get_task_set("hopper-gravity").task(1.0) == TaskSpec("Hopper-v5", "gravity", 1.0)
    assert len({get_task_set("ant-gravity").task(m) for m in (0.5, 0.5, 1.5)}) == 2


@pytest.mark.timeout(120)
def test_every_task_gets_multiplier_times_fresh_default():
    for ts in TASK_SETS.values():
        g0, d0 = _bare_defaults(ts)
        assert g0[2] == pytest.approx(-9.81)
        assert (d0 > 0).any()  # damping tasks really change something
        for task in ts.all_tasks:
            env = make_env(task)
            assert env.task == task
            _check_value(env, ts, task.multiplier)
            env.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["hopper-gravity", "walker2d-damping"])
def test_applied_once_survives_reset_never_compounds(name):
    ts = get_task_set(name)
    env_a = ts.make_env(0.5)
    env_b = ts.make_env(1.5)  # made after x0.5: its default must not be 0.5 x default
    _check_value(env_a, ts, 0.5)
    _check_value(env_b, ts, 1.5)
    for seed in range(3):
        env_b.reset(seed=seed)
        env_b.step(env_b.action_space.sample())
    _check_value(env_b, ts, 1.5)
    # Wrapping the same simulator again sets from the recorded default: no 2.25.
    again = TaskParameterWrapper(env_b.env, ts.task(1.5))
    _check_value(again, ts, 1.5)
    other = TaskParameterWrapper(again, ts.task(0.8))
    _check_value(other, ts, 0.8)
    np.testing.assert_array_equal(other.default_value, env_a.default_value)
    other.reset(seed=0)
    _check_value(other, ts, 0.8)
    _check_value(env_a, ts, 0.5)  # a separate simulator is untouched


@pytest.mark.timeout(60)
def test_simulator_uses_the_parameters():
    """Exact physics: at zero velocity and control the acceleration is linear in gravity;
    the passive force is -damping * qvel."""
    ts = get_task_set("inverted-pendulum-gravity")
    qacc = {}
    for m in (1.0, 2.0):
        env = ts.make_env(m)
        env.reset(seed=0)
        base = env.unwrapped
        base.data.qpos[:] = [0.1, 0.15]
        base.data.qvel[:] = 0.0
        base.data.ctrl[:] = 0.0
        mujoco.mj_forward(base.model, base.data)
        qacc[m] = base.data.qacc.copy()
    assert np.abs(qacc[1.0]).max() > 1.0
    np.testing.assert_allclose(qacc[2.0], 2.0 * qacc[1.0], rtol=1e-9, atol=1e-9)

    ts = get_task_set("hopper-damping")
    _, d0 = _bare_defaults(ts)
    env = ts.make_env(1.5)
    env.reset(seed=0)
    base = env.unwrapped
    qvel = np.linspace(-1.0, 1.0, base.model.nv)
    base.data.qvel[:] = qvel
    mujoco.mj_forward(base.model, base.data)
    np.testing.assert_allclose(base.data.qfrc_damper, -1.5 * d0 * qvel, rtol=1e-12, atol=1e-12)


def _rollout(env, actions, seed=3):
    obs, _ = env.reset(seed=seed)
    states = [np.concatenate([env.unwrapped.data.qpos, env.unwrapped.data.qvel])]
    for a in actions:  # keep stepping past termination: we compare the physics
        env.step(a)
        states.append(np.concatenate([env.unwrapped.data.qpos, env.unwrapped.data.qvel]))
    return obs, np.array(states)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["walker2d-damping", "walker2d-gravity"])
def test_figure4_same_start_same_actions_different_trajectories(name):
    """Paper Figure 4: one initial state, one action sequence, damping (gravity) x0.5 /
    x1.0 / x1.5 -> clearly different trajectories; the same multiplier -> the same one."""
    ts = get_task_set(name)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, (100, ts.act_dim))
    runs = {m: _rollout(ts.make_env(m), actions) for m in (0.5, 1.0, 1.5)}
    obs0 = runs[1.0][0]
    for m in (0.5, 1.5):
        np.testing.assert_array_equal(runs[m][0], obs0)  # same initial state
        np.testing.assert_array_equal(runs[m][1][0], runs[1.0][1][0])
    for a, b in ((0.5, 1.0), (0.5, 1.5), (1.0, 1.5)):
        final_gap = np.abs(runs[a][1][-1, :9] - runs[b][1][-1, :9]).max()  # positions
        assert final_gap > 0.1, (a, b, final_gap)
    # Determinism, and the x1.0 task is the unmodified simulator.
    _, again = _rollout(ts.make_env(1.5), actions)
    np.testing.assert_array_equal(again, runs[1.5][1])
    bare = gymnasium.make(ts.env_id)
    _, bare_states = _rollout(bare, actions)
    np.testing.assert_array_equal(bare_states, runs[1.0][1])


@pytest.mark.timeout(60)
def test_inverted_pendulum_actions_rescaled():
    env = get_task_set("inverted-pendulum-gravity").make_env(2.0)
    np.testing.assert_array_equal(env.unwrapped.action_space.high, 3.0)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    env.reset(seed=0)
    for a, ctrl in ((1.0, 3.0), (-1.0, -3.0), (0.5, 1.5), (0.0, 0.0)):
        env.step(np.array([a], np.float32))
        np.testing.assert_allclose(env.unwrapped.data.ctrl, [ctrl], rtol=0, atol=1e-6)
    # Native [-1, 1] boxes pass actions through unchanged.
    env = get_task_set("hopper-gravity").make_env(1.0)
    env.reset(seed=0)
    a = np.array([0.3, -0.7, 1.0])
    env.step(a)
    np.testing.assert_allclose(env.unwrapped.data.ctrl, a, rtol=0, atol=1e-7)


def test_wrapper_adds_no_per_step_work():
    """Counted, not timed: over n steps the wrapped env runs exactly n more Python calls
    than the bare one (gymnasium.Wrapper.step forwarding) and none in reda_jax's code."""
    for method in ("step", "reset", "observation", "action"):
        assert method not in vars(TaskParameterWrapper)
    task = get_task_set("hopper-gravity").task(1.0)
    wrapped, bare = make_env(task), gymnasium.make("Hopper-v5")
    action, n = np.zeros(3), 100
    package_dir = os.path.dirname(reda_jax.__file__)

    def calls(env):
        env.reset(seed=0)
        files = []
        # No garbage collection while counting: a finaliser of an object left by an earlier
        # test in this process (e.g. an env's __del__) would add calls of its own.
        gc.collect()
        gc.disable()
        sys.setprofile(lambda frame, event, arg: event == "call"
                       and files.append(frame.f_code.co_filename))
        try:
            for _ in range(n):
                env.step(action)
        finally:
            sys.setprofile(None)
            gc.enable()
        return files

    in_wrapped, in_bare = calls(wrapped), calls(bare)
    assert not [f for f in in_wrapped if f.startswith(package_dir)]
    assert len(in_wrapped) - len(in_bare) == n
