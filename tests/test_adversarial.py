"""Model rollouts, prefix windows, the Eq. 5/6 reward, the ring buffer and SAC+BC's actor loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.algos import adversarial
from reda_jax.algos.sac import actor_objective
from reda_jax.data import ring


def test_model_rollout_alive_mask_and_frozen_dead_rows():
    # s' = s + a with a = 1: row 0 starts at 0, row 1 at 1.5; done when s' >= 2.
    step_fn = lambda o, a, k: (o + a, jnp.abs(a).sum(-1), o[:, 0] * 10.0)
    policy = lambda o, k: jnp.ones_like(o)
    term = lambda o, a, n: n[..., 0] >= 2.0
    roll = adversarial.model_rollout(jnp.array([[0.0], [1.5]]), jnp.array([[7.0], [8.0]]),
                                     step_fn, policy, term, horizon=4, key=jax.random.key(0))
    np.testing.assert_allclose(roll.observations[0, :, 0], [0, 1, 2, 2, 2])  # frozen after done
    np.testing.assert_allclose(roll.observations[1, :, 0], [1.5, 2.5, 2.5, 2.5, 2.5])
    np.testing.assert_allclose(roll.alive[0], [1, 1, 1, 0, 0])
    np.testing.assert_allclose(roll.alive[1], [1, 1, 0, 0, 0])
    np.testing.assert_allclose(roll.terminals[0], [0, 1, 1, 1, 1][:4])
    np.testing.assert_allclose(roll.rewards[0], [0, 10, 20, 20])
    tokens = roll.tokens("state")
    assert tokens.shape == (2, 5, 2)
    np.testing.assert_allclose(tokens[0, :, 1], [7, 1, 1, 1, 1])  # a_{-1}, then a_0..a_3
    # Transition tokens (s_t, a_{t-1}, r_{t-1}, s_{t-1}): the start's previous step given,
    # then the model's reward r(s_t, a_t) = 10 s_t and the state before.
    roll = adversarial.model_rollout(jnp.array([[0.0], [1.5]]), jnp.array([[7.0], [8.0]]),
                                     step_fn, policy, term, horizon=4, key=jax.random.key(0),
                                     start_prev_reward=jnp.array([0.25, 0.5]),
                                     start_prev_obs=jnp.array([[-1.0], [-2.0]]))
    tokens = roll.tokens("transition")
    assert tokens.shape == (2, 5, 4)
    np.testing.assert_allclose(tokens[0], [[0, 7, 0.25, -1], [1, 1, 0, 0], [2, 1, 10, 1],
                                           [2, 1, 20, 2], [2, 1, 20, 2]])
    np.testing.assert_allclose(tokens[1, :2], [[1.5, 8, 0.5, -2], [2.5, 1, 15, 1.5]])


def test_prefix_windows_by_hand():
    tokens = jnp.arange(1, 5, dtype=jnp.float32).reshape(1, 4, 1)   # tokens 1,2,3,4
    valid = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    win, mask = adversarial.prefix_windows(tokens, valid, window=3)
    np.testing.assert_allclose(win[0, :, :, 0], [[0, 0, 1], [0, 1, 2], [1, 2, 3], [0, 0, 0]])
    np.testing.assert_allclose(mask[0], [[0, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 0]])


def test_adversarial_reward_rewards_lowering_the_true_task_score():
    # R(z_t) of the true task falls 0 -> -1 -> -3: the adversary earns +1 then +2.
    scores = jnp.array([[0.0, -1.0, -3.0]])
    np.testing.assert_allclose(adversarial.adversarial_reward(scores), [[1.0, 2.0]])
    total = adversarial.total_reward(jnp.array([[1.0]]), jnp.array([[0.5]]), jnp.array([[2.0]]),
                                     lambda1=2.0, lambda2=3.0)
    np.testing.assert_allclose(total, [[1.0 - 1.0 + 6.0]])


def test_ring_wraps_and_never_samples_zero_weight_rows():
    r = ring.init_ring(jnp.zeros(()), capacity=5)
    r = ring.push(r, jnp.arange(4.0), jnp.array([1.0, 0.0, 1.0, 1.0]))
    r = ring.push(r, jnp.arange(10.0, 13.0), jnp.array([1.0, 1.0, 0.0]))
    # rows: [11, 12(w0), 2, 3, 10]; pointer at 2
    np.testing.assert_allclose(r.data, [11, 12, 2, 3, 10])
    np.testing.assert_allclose(r.weights, [1, 0, 1, 1, 1])
    assert int(r.pointer) == 2
    rows, ok = ring.sample(r, ring.sampling_cdf(r), jax.random.key(1), 4000)
    assert float(ok) == 1.0
    values, counts = np.unique(np.asarray(rows), return_counts=True)
    assert set(values) == {2.0, 3.0, 10.0, 11.0}
    np.testing.assert_allclose(counts / 4000, 0.25, atol=0.03)
    empty = ring.init_ring(jnp.zeros(()), capacity=3)
    assert float(ring.sample(empty, ring.sampling_cdf(empty), jax.random.key(0), 2)[1]) == 0.0
    with pytest.raises(ValueError, match="capacity"):
        ring.push(empty, jnp.zeros(4), jnp.ones(4))


def test_actor_objective_sac_and_td3bc_by_hand():
    logp = jnp.array([0.5, -1.0])
    q = jnp.array([2.0, -4.0])
    a = jnp.array([[0.1, 0.2], [0.0, -0.5]])
    data_a = jnp.array([[0.0, 0.0], [0.0, 0.5]])
    alpha = 0.2
    sac = float(actor_objective(logp, q, alpha))
    assert sac == pytest.approx(np.mean([0.2 * 0.5 - 2.0, 0.2 * -1.0 + 4.0]))
    mean_abs_q = 3.0
    bc = np.array([0.01 + 0.04, 1.0])
    expected = np.mean(0.2 * np.array([0.5, -1.0]) - 2.5 * np.array([2.0, -4.0]) / mean_abs_q
                       + 1.5 * bc)
    got = float(actor_objective(logp, q, alpha, q_weight=2.5, bc_weight=1.5, actions=a,
                                data_actions=data_a))
    assert got == pytest.approx(expected, rel=1e-5)
    # The Q scale is held constant: the gradient wrt q is -q_weight / (B * mean|Q|).
    g = jax.grad(lambda qq: actor_objective(logp, qq, alpha, 2.5, 1.5, a, data_a))(q)
    np.testing.assert_allclose(g, -2.5 / (2 * mean_abs_q), rtol=1e-4)
    # Per-dimension BC weights (bc_error 'standardized': 1 / the data's action variance).
    scale = jnp.array([100.0, 4.0])
    bc_scaled = np.array([100 * 0.01 + 4 * 0.04, 4 * 1.0])
    expected = np.mean(0.2 * np.array([0.5, -1.0]) - 2.5 * np.array([2.0, -4.0]) / mean_abs_q
                       + 1.5 * bc_scaled)
    got = float(actor_objective(logp, q, alpha, 2.5, 1.5, a, data_a, bc_scale=scale))
    assert got == pytest.approx(expected, rel=1e-5)
