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
