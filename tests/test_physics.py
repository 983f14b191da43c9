"""The simulator read-out: stepping a task's physics from recorded states reproduces the
data, and the comparison of models with physics on arrays with known answers."""
import numpy as np
import pytest

from reda_jax.envs.tasks import get_task_set
from reda_jax.eval.physics import physics_readout, simulated_next_observations


def _rollout(task_set, multiplier, n, seed):
    env = task_set.make_env(multiplier)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(n):
        act = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        nxt, _, term, trunc, _ = env.step(act)
        rows.append((obs, act, nxt))
        obs = env.reset()[0] if term or trunc else nxt
    env.close()
    return [np.stack(x).astype(np.float32) for x in zip(*rows)]


@pytest.mark.parametrize("name", ["inverted-pendulum-gravity", "hopper-gravity"])
def test_stepping_the_tasks_physics_from_recorded_states_reproduces_the_data(name):
    ts = get_task_set(name)
    m1, m2 = ts.train_multipliers[:2]
    obs, act, nxt = _rollout(ts, m1, 60, seed=3)
    same = simulated_next_observations(ts, m1, obs, act)
    np.testing.assert_allclose(same, nxt, atol=1e-5)
    other = simulated_next_observations(ts, m2, obs, act)
    assert np.abs(other - nxt).max() > 1e-3           # another gravity: another s'
    # Positions are integrated from velocities: the velocities differ most.
    ds = obs.shape[-1]
    assert np.abs(other - nxt)[:, ds // 2:].mean() > np.abs(other - nxt)[:, :ds // 2].mean()


def test_physics_readout_on_known_arrays():
    rng = np.random.default_rng(0)
    T, n, ds = 2, 50, 3
    true_next = rng.normal(size=(T, T, n, ds)).astype(np.float32)
    recorded = true_next[np.arange(T), np.arange(T)]
    exact = physics_readout(true_next, true_next, recorded)
    assert exact["model_gap_cosine"] == pytest.approx(1.0)
    assert exact["model_gap_error"] == pytest.approx(0.0, abs=1e-6)
    assert exact["model_physics_error"] == pytest.approx(0.0, abs=1e-6)
    assert exact["recorded_vs_simulated"] == 0.0
    gap = np.concatenate([true_next[1, 0] - true_next[0, 0], true_next[0, 1] - true_next[1, 1]])
    assert exact["true_gap"] == pytest.approx(np.sqrt(np.mean(gap ** 2)), rel=1e-5)
    # Models whose difference points the other way: cosine -1, gap error 2 true gaps.
    flipped = true_next.copy()
    flipped[1, 0] = true_next[0, 0] - (true_next[1, 0] - true_next[0, 0])
    flipped[0, 1] = true_next[1, 1] - (true_next[0, 1] - true_next[1, 1])
    out = physics_readout(true_next, flipped, recorded)
    assert out["model_gap_cosine"] == pytest.approx(-1.0)
    assert out["model_gap_error"] == pytest.approx(2.0, rel=1e-5)


def test_physics_readout_finds_the_dimension_that_carries_the_task():
    """The tasks differ only in dimension 2; the models err by 0.3 in every dimension."""
    rng = np.random.default_rng(1)
    T, n, ds = 3, 40, 4
    base = rng.normal(size=(n, ds))
    true_next = np.stack([np.stack([base + np.eye(ds)[2] * 0.1 * j for _ in range(T)])
                          for j in range(T)])                           # (T_phys, T, n, ds)
    model_mean = true_next + 0.3 * rng.choice([-1.0, 1.0], size=true_next.shape)
    out = physics_readout(true_next, model_mean, true_next[np.arange(T), np.arange(T)])
    # Pairs (j, k), j != k, differ by 0.1 |j - k|: RMS over 6 pairs of {0.1, 0.1, 0.2} x 2.
    gap = np.sqrt((0.1 ** 2 * 4 + 0.2 ** 2 * 2) / 6)
    assert out["signal_dim"] == 2.0
    assert out["signal_dim_true_gap"] == pytest.approx(gap, rel=1e-6)
    assert out["signal_dim_model_error"] == pytest.approx(0.3 / gap, rel=1e-6)
    assert out["model_error_own_states"] == pytest.approx(0.6 / gap, rel=1e-6)
    assert out["model_error_other_states"] == pytest.approx(0.6 / gap, rel=1e-6)
    # Over all 4 dimensions the gap is spread thinner: half its size, the error twice.
    assert out["true_gap"] == pytest.approx(gap / 2, rel=1e-6)
    assert out["model_physics_error"] == pytest.approx(0.6 / gap, rel=1e-6)


def test_simulated_branches_are_episodes_of_the_tasks_physics():
    from reda_jax.data.context import make_device_dataset
    from reda_jax.eval.physics import simulated_branches
    ts = get_task_set("inverted-pendulum-gravity")
    obs, _, _ = _rollout(ts, 1.0, 20, seed=4)
    branches = simulated_branches(ts, 2.0, obs, horizon=3, act_dim=1, seed=0)
    n = len(branches["rewards"])
    ends = branches["terminals"] + branches["truncations"]
    assert ends.sum() == len(obs) and np.all(ends <= 1.0)      # one episode per start state
    starts = np.concatenate([[0], np.flatnonzero(ends)[:-1] + 1])
    np.testing.assert_array_equal(branches["observations"][starts], obs)
    # Every row is one step of gravity x2 from its state and action.
    np.testing.assert_allclose(simulated_next_observations(
        ts, 2.0, branches["observations"], branches["actions"]),
        branches["next_observations"], atol=1e-5)
    inside = np.setdiff1d(np.arange(n), starts)
    np.testing.assert_array_equal(branches["observations"][inside],
                                  branches["next_observations"][inside - 1])
    # InvertedPendulum-v5 pays 1 per step while the pole stands: the simulator's reward.
    np.testing.assert_array_equal(branches["rewards"], 1.0 - branches["terminals"])
    assert make_device_dataset(branches).size == n


def test_physics_readout_splits_the_error_by_whose_states_the_model_is_asked_at():
    """Each task model errs by 0.1 at its own task's states and by 0.4 at the others'."""
    rng = np.random.default_rng(2)
    T, n, ds = 3, 30, 2
    true_next = rng.normal(size=(T, T, n, ds))
    sign = rng.choice([-1.0, 1.0], size=true_next.shape)
    scale = np.where(np.eye(T, dtype=bool)[:, :, None, None], 0.1, 0.4)
    out = physics_readout(true_next, true_next + scale * sign,
                          true_next[np.arange(T), np.arange(T)])
    gap = out["true_gap"]
    assert out["model_error_own_states"] == pytest.approx(0.1 / gap, rel=1e-6)
    assert out["model_error_other_states"] == pytest.approx(0.4 / gap, rel=1e-6)
    # model_physics_error pools them: 3 own and 6 other (task model, states) pairs.
    assert out["model_physics_error"] == pytest.approx(
        np.sqrt((3 * 0.01 + 6 * 0.16) / 9) / gap, rel=1e-6)
