"""The pure-jnp termination functions against the simulator's own decisions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.envs import (
    TASK_SETS,
    TERMINATION_FNS,
    get_task_set,
    get_termination_fn,
    make_env,
)

CAN_TERMINATE = {"Hopper-v5", "Walker2d-v5", "Ant-v5", "InvertedPendulum-v5"}


def _push_ant_up(env, rng):
    """Give the Ant's torso an upward velocity so that it leaves the healthy z range."""
    base = env.unwrapped
    qpos, qvel = base.data.qpos.copy(), base.data.qvel.copy()
    qvel[2] = rng.uniform(1.0, 6.0)
    base.set_state(qpos, qvel)
    return base._get_obs()


@functools.lru_cache(maxsize=None)
def _transitions(task_set_name: str, steps_per_task: int = 300):
    """Random-action transitions from every task (train and test) of a task set."""
    ts = get_task_set(task_set_name)
    rng = np.random.default_rng(0)
    obs_l, act_l, next_l, term_l = [], [], [], []
    for i, task in enumerate(ts.all_tasks):
        env = make_env(task)
        obs, _ = env.reset(seed=i)
        for _ in range(steps_per_task):
            action = rng.uniform(-1.0, 1.0, env.action_space.shape)
            next_obs, _, terminated, truncated, _ = env.step(action)
            obs_l.append(obs)
            act_l.append(action)
            next_l.append(next_obs)
            term_l.append(terminated)
            obs = next_obs
            if terminated or truncated:
                obs, _ = env.reset()
                if ts.env_id == "Ant-v5" and rng.uniform() < 0.5:
                    obs = _push_ant_up(env, rng)
        env.close()
    return ts, np.array(obs_l), np.array(act_l), np.array(next_l), np.array(term_l)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(TASK_SETS))
def test_matches_simulator_on_real_transitions(name):
    ts, obs, act, next_obs, terminated = _transitions(name)
    pred = np.asarray(ts.termination_fn(obs, act, next_obs))
    assert pred.shape == terminated.shape and pred.dtype == bool
    bad = np.flatnonzero(pred != terminated)
    assert bad.size == 0, (
        f"{name}: {bad.size} disagreements, first at {bad[:5]}: next_obs={next_obs[bad[0]]}, "
        f"simulator={terminated[bad[0]]}")
    assert (~terminated).sum() >= 100
    if ts.env_id in CAN_TERMINATE:
        assert terminated.sum() >= 10, f"{name}: only {terminated.sum()} terminal transitions"
    else:
        assert not terminated.any()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["hopper-gravity", "ant-damping", "halfcheetah-gravity"])
def test_batch_dims_jit_and_vmap(name):
    ts, obs, act, next_obs, terminated = _transitions(name)
    fn = ts.termination_fn
    n = (len(obs) // 6) * 6
    obs, act, next_obs, terminated = obs[:n], act[:n], next_obs[:n], terminated[:n]
    d = obs.shape[-1]
    jitted = jax.jit(fn)
    # Three leading dims.
    out = jitted(obs.reshape(2, 3, -1, d), act.reshape(2, 3, -1, act.shape[-1]),
                 next_obs.reshape(2, 3, -1, d))
    assert out.shape == (2, 3, n // 6)
    np.testing.assert_array_equal(np.asarray(out).reshape(-1), terminated)
    # vmap over a batch of single transitions, each giving a scalar.
    single = jax.vmap(jitted)(obs, act, next_obs)
    assert single.shape == (n,)
    np.testing.assert_array_equal(np.asarray(single), terminated)
    # No batch dims at all.
    k = int(np.argmax(terminated)) if terminated.any() else 0
    one = fn(obs[k], act[k], next_obs[k])
    assert one.shape == () and bool(one) == terminated[k]


def _random_states(env_id, base, rng, n):
    """Synthetic (qpos, qvel) around every threshold of the env's health rule."""
    qpos0, qvel0 = base.init_qpos, base.init_qvel
    z_idx = 2 if env_id == "Ant-v5" else 1
    thresholds = {"Hopper-v5": (0.7,), "Walker2d-v5": (0.8, 2.0), "Ant-v5": (0.2, 1.0)}[env_id]
    states = []
    for i in range(n):
        qpos = qpos0 + rng.normal(0.0, 0.05, qpos0.shape)
        qvel = qvel0 + rng.normal(0.0, 5.0, qvel0.shape)
        t = thresholds[i % len(thresholds)]
        qpos[z_idx] = t if i % 17 == 0 else t + rng.uniform(-0.1, 0.1)
        if env_id in ("Hopper-v5", "Walker2d-v5"):
            lim = 0.2 if env_id == "Hopper-v5" else 1.0
            qpos[2] = rng.choice([-lim, lim]) if i % 13 == 0 else rng.uniform(-1.5 * lim, 1.5 * lim)
        if i % 11 == 0:  # a huge joint position (Hopper's state bound is on qpos[2:])
            qpos[rng.integers(3, len(qpos))] = rng.choice([-1, 1]) * rng.uniform(50, 150)
        if i % 7 == 0:
            qpos[rng.integers(z_idx, len(qpos))] = rng.choice([np.nan, np.inf, -np.inf])
        if i % 9 == 0:
            qvel[rng.integers(0, len(qvel))] = rng.choice([np.nan, np.inf])
        if env_id == "Hopper-v5":  # beyond +-100 is the documented blind spot, tested below
            qvel = np.clip(qvel, -99.0, 99.0)
        states.append((qpos, qvel))
    return states


@pytest.mark.timeout(120)
@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_matches_gymnasium_health_rule_on_edge_states(env_id):
    """Thresholds, NaN and inf: our function vs gymnasium's own ``is_healthy``."""
    task = next(ts for ts in TASK_SETS.values() if ts.env_id == env_id).task(1.0)
    env = make_env(task)
    env.reset(seed=0)
    base = env.unwrapped
    rng = np.random.default_rng(1)
    obs_l, healthy_l = [], []
    for qpos, qvel in _random_states(env_id, base, rng, 600):
        base.data.qpos[:] = qpos
        base.data.qvel[:] = qvel
        obs_l.append(base._get_obs())
        healthy_l.append(bool(base.is_healthy))
    obs = np.array(obs_l)
    healthy = np.array(healthy_l)
    assert 100 < healthy.sum() < len(healthy) - 100  # both outcomes well represented
    done = np.asarray(get_termination_fn(env_id)(obs, np.zeros((len(obs), 1)), obs))
    bad = np.flatnonzero(done != ~healthy)
    assert bad.size == 0, f"{env_id}: disagree at {bad[:5]}, obs={obs[bad[0]]}"


@pytest.mark.timeout(60)
def test_hopper_unclipped_velocity_blind_spot():
    """Gymnasium bounds Hopper's unclipped qvel by 100; the observation clips it to 10."""
    env = make_env(get_task_set("hopper-gravity").task(1.0))
    env.reset(seed=0)
    base = env.unwrapped
    qpos, qvel = base.init_qpos.copy(), base.init_qvel.copy()
    qvel[3] = 150.0
    base.data.qpos[:] = qpos
    base.data.qvel[:] = qvel
    obs = base._get_obs()
    assert not base.is_healthy and obs[5 + 3] == 10.0
    fn = get_termination_fn("Hopper-v5")
    assert not bool(fn(obs, None, obs))  # cannot be seen from the observation
    qvel[3] = np.nan  # ... but a non-finite velocity can
    base.data.qvel[:] = qvel
    assert bool(fn(obs, None, base._get_obs()))


@pytest.mark.timeout(60)
def test_hand_checked_values():
    ip = get_termination_fn("InvertedPendulum-v5")
    x = jnp.array([[0.0, 0.2, 0.0, 0.0], [0.0, -0.21, 0.0, 0.0], [0.0, 0.0, jnp.nan, 0.0],
                   [jnp.inf, 0.0, 0.0, 0.0], [1.0, 0.1, -5.0, 5.0]])
    np.testing.assert_array_equal(ip(x, None, x), [False, True, True, True, False])

    ant = get_termination_fn("Ant-v5")
    z = jnp.array([0.2, 1.0, 0.19, 1.01, 0.5, 0.5])
    x = jnp.zeros((6, 27)).at[:, 0].set(z).at[5, 20].set(jnp.nan)
    np.testing.assert_array_equal(ant(x, None, x), [False, False, True, True, False, True])
    x105 = jnp.zeros((2, 105)).at[:, 0].set(jnp.array([0.5, 0.1]))
    np.testing.assert_array_equal(ant(x105, None, x105), [False, True])

    walker = get_termination_fn("Walker2d-v5")
    x = jnp.zeros((5, 17)).at[:, 0].set(jnp.array([1.2, 0.8, 2.0, 1.2, 1.2]))
    x = x.at[:, 1].set(jnp.array([0.0, 0.0, 0.0, 1.0, -0.99]))
    x = x.at[4, 10].set(1e6)  # walker v5 has no state bound
    np.testing.assert_array_equal(walker(x, None, x), [False, True, True, True, False])

    hopper = get_termination_fn("Hopper-v5")
    x = jnp.zeros((4, 11)).at[:, 0].set(1.25).at[1, 0].set(0.7).at[2, 3].set(-100.0)
    x = x.at[3, 1].set(0.19)
    np.testing.assert_array_equal(hopper(x, None, x), [False, True, True, False])

    cheetah = get_termination_fn("HalfCheetah-v5")
    x = jnp.full((2, 3, 17), 1e9)
    out = cheetah(x, None, x)
    assert out.shape == (2, 3) and out.dtype == jnp.bool_ and not out.any()


@pytest.mark.timeout(30)
def test_lookup_errors():
    assert set(TERMINATION_FNS) == {"Hopper-v5", "Walker2d-v5", "Ant-v5", "HalfCheetah-v5",
                                    "InvertedPendulum-v5"}
    for ts in TASK_SETS.values():
        assert ts.termination_fn is get_termination_fn(ts.env_id)
    with pytest.raises(ValueError) as e:
        get_termination_fn("Hopper-v2")
    assert "Hopper-v2" in str(e.value)
    for env_id in TERMINATION_FNS:
        assert env_id in str(e.value)
    with pytest.raises(ValueError, match="12"):  # x position included: wrong layout
        get_termination_fn("Hopper-v5")(None, None, np.zeros((3, 12)))
