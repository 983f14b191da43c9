"""MuJoCo XLA steps of the tasks' physics (`reda_jax.envs.mjx_physics`) against the host
simulator that `eval.physics` (and the data) use."""
import jax
import numpy as np
import pytest

from reda_jax.envs.tasks import get_task_set
from reda_jax.eval import physics

pytest.importorskip("mujoco.mjx")

from reda_jax.envs.mjx_physics import make_simulator_step  # noqa: E402


def test_pendulum_step_matches_the_host_simulator_per_task_and_per_row():
    ts = get_task_set("inverted-pendulum-gravity")
    rng = np.random.default_rng(0)
    obs = rng.uniform(-0.15, 0.15, (16, ts.obs_dim)).astype(np.float32)
    act = rng.uniform(-1.0, 1.0, (16, ts.act_dim)).astype(np.float32)
    step = jax.jit(make_simulator_step(ts.train_tasks))
    ref = np.stack([physics.simulated_next_observations(ts, t.multiplier, obs, act)
                    for t in ts.train_tasks])                                  # (T, n, ds)
    rows = np.arange(16) % 2                      # a per-row task index, as the rollouts use
    out = np.asarray(step(rows, obs, act))
    np.testing.assert_allclose(out, ref[rows, np.arange(16)], atol=1e-5)
    # The tasks differ (gravity x1 vs x2) far beyond that tolerance: the task is applied.
    assert np.abs(ref[0] - ref[1]).max() > 0.05
    with pytest.raises(ValueError, match="one env family"):
        make_simulator_step([ts.train_tasks[0], get_task_set("hopper-gravity").train_tasks[0]])


def test_a_chunked_step_gives_every_row_the_same_result_as_one_call():
    """simulator_chunk: 10 rows as calls of 4 (two full and a remainder of 2) equal one
    vmapped call of all 10, row by row, tasks per row included; a bad chunk is refused."""
    from reda_jax.configs import RepresentationConfig
    ts = get_task_set("inverted-pendulum-gravity")
    rng = np.random.default_rng(1)
    obs = rng.uniform(-0.15, 0.15, (10, ts.obs_dim)).astype(np.float32)
    act = rng.uniform(-1.0, 1.0, (10, ts.act_dim)).astype(np.float32)
    rows = np.arange(10) % 2
    whole = np.asarray(jax.jit(make_simulator_step(ts.train_tasks))(rows, obs, act))
    chunked = np.asarray(jax.jit(make_simulator_step(ts.train_tasks, 4))(rows, obs, act))
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    assert np.abs(whole[0] - whole[1]).max() > 1e-3     # rows differ: a shuffle would show
    with pytest.raises(ValueError, match="simulator_chunk must be >= 0"):
        RepresentationConfig(simulator_chunk=-1)
