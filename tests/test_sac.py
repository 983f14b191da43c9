"""SAC: the pieces against hand-computed values, and learning on problems with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.algos.sac import actor_objective, make_sac, td_target, value_bounds
from reda_jax.configs import SACConfig
from reda_jax.networks.policies import sample_tanh_gaussian
from reda_jax.types import Transitions


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean = jnp.array([[0.3, -1.2], [2.0, 0.0]])
    log_std = jnp.array([[-0.5, 0.2], [0.1, -1.0]])
    a, logp = sample_tanh_gaussian(mean, log_std, jax.random.key(0))
    # Hand computation: recover u = atanh(a), Gaussian density of u, minus log|da/du|.
    u = np.arctanh(np.asarray(a, np.float64))
    std = np.exp(np.asarray(log_std, np.float64))
    gauss = -0.5 * ((u - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = (gauss - np.log(1 - np.tanh(u) ** 2)).sum(-1)
    np.testing.assert_allclose(np.asarray(logp), expected, rtol=1e-4, atol=1e-4)
    assert np.all(np.abs(np.asarray(a)) < 1)


def test_tanh_gaussian_log_prob_is_finite_when_saturated():
    a, logp = sample_tanh_gaussian(jnp.array([[30.0]]), jnp.array([[-20.0]]), jax.random.key(1))
    assert np.isfinite(float(logp[0])) and float(a[0, 0]) == pytest.approx(1.0)


def test_td_target_hand_computed():
    rewards = jnp.array([1.0, 0.5, -2.0])
    terminals = jnp.array([0.0, 1.0, 0.0])
    next_q = jnp.array([[10.0, 4.0, 3.0], [8.0, 6.0, -1.0]])
    next_logp = jnp.array([-1.0, 2.0, 0.5])
    out = td_target(rewards, terminals, next_q, next_logp, alpha=0.2, gamma=0.9)
    # min Q: [8, 4, -1]; minus alpha*logp: [8.2, 3.6, -1.1]; terminal cuts the second.
    np.testing.assert_allclose(out, [1.0 + 0.9 * 8.2, 0.5, -2.0 + 0.9 * -1.1], rtol=1e-6)
    no_ent = td_target(rewards, terminals, next_q, next_logp, alpha=0.2, gamma=0.9,
                       backup_entropy=False)
    np.testing.assert_allclose(no_ent, [1.0 + 0.9 * 8.0, 0.5, -2.0 - 0.9], rtol=1e-6)


def test_truncation_bootstraps_but_terminal_does_not():
    """A batch that differs only in truncations gives the same update; terminals change it."""
    config = SACConfig(hidden_dims=(16, 16))
    sac = make_sac(config, 3, 2)
    state = sac.init(jax.random.key(0))
    k = jax.random.split(jax.random.key(1), 3)
    base = Transitions(jax.random.normal(k[0], (32, 3)), jnp.tanh(jax.random.normal(k[1], (32, 2))),
                       jnp.ones(32), jax.random.normal(k[2], (32, 3)), jnp.zeros(32), jnp.zeros(32))
    _, m0 = sac.update(state, base, jax.random.key(2))
    _, m_trunc = sac.update(state, base.replace(truncations=jnp.ones(32)), jax.random.key(2))
    _, m_term = sac.update(state, base.replace(terminals=jnp.ones(32)), jax.random.key(2))
    assert float(m_trunc["target_q"]) == pytest.approx(float(m0["target_q"]))
    # With every transition terminal the target is exactly the reward.
    assert float(m_term["target_q"]) == pytest.approx(1.0)
    assert float(m0["target_q"]) != pytest.approx(1.0, abs=1e-3)


@pytest.mark.timeout(300)
def test_sac_solves_a_continuous_bandit():
    """One-step episodes with reward -(a - 0.6)^2 - (b + 0.3)^2: the deterministic policy
    must move to (0.6, -0.3), the critic must learn the reward, and the temperature must
    fall from its initial value as the entropy is pushed towards -|A|."""
    config = SACConfig(hidden_dims=(64, 64), batch_size=128, init_temperature=0.1)
    sac = make_sac(config, 2, 2)
    target = jnp.array([0.6, -0.3])

    def step(carry, key):
        state = carry
        k_obs, k_act, k_upd = jax.random.split(key, 3)
        obs = jax.random.normal(k_obs, (128, 2))
        act = jax.random.uniform(k_act, (128, 2), minval=-1, maxval=1)
        rew = -((act - target) ** 2).sum(-1)
        batch = Transitions(obs, act, rew, obs, jnp.ones(128), jnp.zeros(128))
        return sac.update(state, batch, k_upd)

    state = sac.init(jax.random.key(0))
    state, metrics = jax.jit(lambda s, ks: jax.lax.scan(step, s, ks))(
        state, jax.random.split(jax.random.key(1), 3000))
    obs = jax.random.normal(jax.random.key(2), (64, 2))
    actions = sac.act(state.actor_params, obs, None, deterministic=True)
    np.testing.assert_allclose(np.asarray(actions).mean(0), target, atol=0.1)
    q = sac.critic.apply(state.critic_params, obs, jnp.broadcast_to(target, (64, 2)))
    assert abs(float(q.mean())) < 0.1
    far = jnp.broadcast_to(jnp.array([-0.6, 0.3]), (64, 2))  # reward -(1.2^2 + 0.6^2) = -1.8
    assert float(sac.critic.apply(state.critic_params, obs, far).mean()) == pytest.approx(-1.8, abs=0.3)
    assert float(metrics["alpha"][-1]) < 0.1
    assert int(state.step) == 3000


def test_vmapped_update_equals_separate_updates():
    """Members of a vmapped update are independent: the same as updating each alone."""
    sac = make_sac(SACConfig(hidden_dims=(16,)), 3, 1)
    keys = jax.random.split(jax.random.key(0), 2)
    states = jax.vmap(sac.init)(keys)
    k = jax.random.split(jax.random.key(1), 3)
    batch = Transitions(jax.random.normal(k[0], (2, 8, 3)), jnp.tanh(jax.random.normal(k[1], (2, 8, 1))),
                        jnp.arange(16.0).reshape(2, 8), jax.random.normal(k[2], (2, 8, 3)),
                        jnp.zeros((2, 8)), jnp.zeros((2, 8)))
    ukeys = jax.random.split(jax.random.key(3), 2)
    joint, _ = jax.vmap(sac.update)(states, batch, ukeys)
    for i in range(2):
        alone, _ = sac.update(jax.tree.map(lambda x: x[i], states),
                              jax.tree.map(lambda x: x[i], batch), ukeys[i])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6),
                     joint, alone)


def test_update_names_a_wrongly_shaped_batch():
    sac = make_sac(SACConfig(hidden_dims=(8,)), 3, 2)
    state = sac.init(jax.random.key(0))
    bad = Transitions(jnp.zeros((4, 3)), jnp.zeros((4, 5)), jnp.zeros(4), jnp.zeros((4, 3)),
                      jnp.zeros(4), jnp.zeros(4))
    with pytest.raises(AssertionError, match=r"Transitions.actions has shape \(4, 5\), expected \(4, 2\)"):
        sac.update(state, bad, jax.random.key(1))


def test_value_bounds_and_clipped_td_target():
    # Every reward 1, episodes may end: any return lies in [0, 1 / (1 - gamma)].
    assert value_bounds(1.0, 1.0, 0.99) == pytest.approx((0.0, 100.0))
    assert value_bounds(-2.0, 3.0, 0.9) == pytest.approx((-20.0, 30.0))
    assert value_bounds(0.5, 3.0, 0.5) == pytest.approx((0.0, 6.0))
    with pytest.raises(ValueError, match="reward_min <= reward_max"):
        value_bounds(1.0, 0.0, 0.99)
    rewards, terminals = jnp.array([1.0, 1.0, 1.0]), jnp.zeros(3)
    next_q = jnp.array([[150.0, 50.0, -40.0], [160.0, 60.0, -30.0]])
    out = td_target(rewards, terminals, next_q, jnp.zeros(3), alpha=0.0, gamma=0.99,
                    bounds=value_bounds(1.0, 1.0, 0.99))
    # Unclipped: [149.5, 50.5, -38.6]; clipped to [0, 100].
    np.testing.assert_allclose(out, [100.0, 50.5, 0.0], rtol=1e-6)


def test_actor_objective_with_and_without_entropy():
    logp, q = jnp.array([-1.0, 0.5]), jnp.array([2.0, -4.0])
    a, data = jnp.array([[0.5], [0.0]]), jnp.array([[0.0], [1.0]])
    # mean|Q| = 3: Q term -2.5 * Q / 3; BC term |a - a_data|^2 = [0.25, 1].
    with_ent = actor_objective(logp, q, 0.2, 2.5, 1.0, a, data)
    expected = np.mean([0.2 * -1.0 - 2.5 * 2.0 / 3 + 0.25, 0.2 * 0.5 + 2.5 * 4.0 / 3 + 1.0])
    assert float(with_ent) == pytest.approx(expected, rel=1e-5)
    without = actor_objective(logp, q, 0.2, 2.5, 1.0, a, data, entropy=False)
    assert float(without) == pytest.approx(expected - 0.2 * np.mean([-1.0, 0.5]), rel=1e-5)


@pytest.mark.parametrize("bc_on_mean", [False, True])
def test_bc_error_of_the_mean_or_of_the_sampled_action(bc_on_mean):
    # Q weight 0 and no entropy: the actor's loss is the BC error alone, of tanh(mu(s)) with
    # bc_on_mean, else of the sampled action tanh(mu + sigma * eps) (the reference code).
    sac = make_sac(SACConfig(hidden_dims=(16, 16)), 3, 2, q_weight=0.0, bc_weight=1.0,
                   actor_entropy=False, bc_on_mean=bc_on_mean)
    state = sac.init(jax.random.key(0))
    k = jax.random.split(jax.random.key(1), 3)
    obs = jax.random.normal(k[0], (64, 3))
    data_a = jnp.tanh(jax.random.normal(k[1], (64, 2)))
    batch = Transitions(obs, data_a, jnp.zeros(64), obs, jnp.zeros(64), jnp.zeros(64))
    _, info = sac.actor_step(state, batch, k[2])
    mean, log_std = sac.actor.apply(state.actor_params, obs)
    sampled, _ = sample_tanh_gaussian(mean, log_std, k[2])
    by_mean = float(((jnp.tanh(mean) - data_a) ** 2).sum(-1).mean())
    by_sample = float(((sampled - data_a) ** 2).sum(-1).mean())
    assert abs(by_mean - by_sample) > 0.05       # the two differ on this batch
    expected = by_mean if bc_on_mean else by_sample
    np.testing.assert_allclose(float(info["actor_loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["mean_action_mse"]), by_mean, rtol=1e-5)
    np.testing.assert_allclose(float(info["bc_mse"]), by_sample, rtol=1e-5)
