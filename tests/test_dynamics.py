"""Gaussian dynamics ensembles: the pieces against hand-computed values, learning on a
smooth synthetic system, early-stopping bookkeeping, padding and vmapping."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.algos import dynamics as D
from reda_jax.configs import DynamicsConfig
from reda_jax.networks.ensemble import GaussianEnsemble, soft_bound

DS, DA = 3, 2
CFG = DynamicsConfig(num_models=3, hidden_dims=(32, 32), weight_decay=(2.5e-5, 5e-5, 1e-4),
                     batch_size=256, patience=3)


def make_data(n: int, seed: int, gain: float = 1.0, noise: float = 0.01):
    """s' = s + 0.1 sin(s) + 0.05 gain * B a + noise: inputs (n, 5), targets s' - s (n, 3)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, DS)) * 1.5
    a = rng.uniform(-1, 1, (n, DA))
    delta = 0.1 * np.sin(s) + 0.05 * gain * np.stack([a[:, 0], a[:, 1], a[:, 0] - a[:, 1]], -1)
    delta += noise * rng.normal(size=delta.shape)
    return np.concatenate([s, a], -1).astype(np.float32), delta.astype(np.float32)


def tree_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


# ----------------------------------------------------------------------------- pieces
def test_gaussian_nll_matches_hand_computation():
    mean = jnp.array([[[0.0, 1.0], [2.0, 0.0]]])
    log_std = jnp.array([[[0.0, np.log(2.0)], [np.log(0.5), 0.0]]])
    target = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    # Terms (mu - y)^2 / sigma^2 + 2 log sigma: 1 + 0, 0 + 2 log 2, 4 - 2 log 2, 0 + 0.
    np.testing.assert_allclose(D.gaussian_nll(mean, log_std, target), [1.25], rtol=1e-6)


def test_loss_is_summed_member_nll_plus_log_std_bound_penalty():
    fns = D.make_gaussian_ensemble(CFG, DS + DA, DS, 3, CFG.hidden_dims)
    params = jax.jit(fns.module.init)(jax.random.key(0), jnp.zeros((1, DS + DA)))
    x, y = make_data(64, 0)
    total, nll = jax.jit(fns.loss)(params, x, y)
    mean, log_std = jax.jit(fns.module.apply)(params, x)
    np.testing.assert_allclose(nll, D.gaussian_nll(mean, log_std, y), rtol=1e-6)
    # Bounds start at 0.25 and -5 for 3 members x 3 dims: 0.01 * 9 * 5.25.
    np.testing.assert_allclose(total - nll.sum(), 0.01 * 9 * 5.25, rtol=1e-4)


def test_log_std_soft_bounds_keep_outputs_in_learned_range():
    module = GaussianEnsemble(2, (16,), 4)
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 3)))
    hi = jnp.array([[0.5], [1.0]]) * jnp.ones((2, 4))
    lo = jnp.array([[-3.0], [-4.0]]) * jnp.ones((2, 4))
    params = {"params": {**params["params"], "max_log_std": hi, "min_log_std": lo}}
    x = jax.random.normal(jax.random.key(1), (4000, 3)) * jnp.logspace(0, 3, 4000)[:, None]
    _, log_std = jax.jit(module.apply)(params, x)                        # (2, 4000, 4)
    assert log_std.shape == (2, 4000, 4)
    # The second softplus may overshoot the upper bound by at most log(1 + exp(lo - hi)).
    slack = jnp.log1p(jnp.exp(lo - hi))[:, None]
    assert bool(jnp.all(log_std <= hi[:, None] + slack + 1e-5))
    assert bool(jnp.all(log_std >= lo[:, None]))
    assert float(slack.max()) < 0.05
    # The whole range is reached, i.e. the bounds are soft clamps, not a squashing.
    assert float(jnp.max(log_std[0] - hi[0])) > -0.05
    assert float(jnp.min(log_std[1] - lo[1])) < 0.05
    # Inside the bounds the clamp is nearly the identity.
    np.testing.assert_allclose(soft_bound(jnp.array([0.0, 1.0]), -6.0, 6.0), [0.0, 1.0],
                               atol=0.01)


def test_weight_decay_is_per_layer_on_kernels_only():
    opt = D.make_optimizer(CFG, 3)
    module = GaussianEnsemble(3, CFG.hidden_dims, DS)
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, DS + DA)))
    zero = jax.tree.map(jnp.zeros_like, params)                    # Adam direction 0
    updates, _ = opt.update(zero, opt.init(params), params)
    p, u = params["params"], updates["params"]
    for i, rate in enumerate(CFG.weight_decay):
        np.testing.assert_allclose(u[f"layer_{i}"]["kernel"],
                                   -CFG.learning_rate * rate * p[f"layer_{i}"]["kernel"],
                                   rtol=1e-5)
        assert not np.any(np.asarray(u[f"layer_{i}"]["bias"]))
    assert not np.any(np.asarray(u["max_log_std"])) and not np.any(np.asarray(u["min_log_std"]))


def test_split_holdout_is_a_padded_partition():
    cfg = DynamicsConfig(holdout_fraction=0.1, max_holdout=30)
    tr, ho, n_tr, n_ho = D.split_holdout(0, 200, 260, cfg)
    assert (n_ho, n_tr) == (21, 179)                               # int(0.1 * 200) + 1
    assert tr.shape == (260,) and ho.shape == (27,)                # padded: holdout of 260
    assert sorted(np.concatenate([tr[:n_tr], ho[:n_ho]]).tolist()) == list(range(200))
    assert not tr[n_tr:].any() and not ho[n_ho:].any()
    assert D.split_holdout(0, 2000, 2000, cfg)[3] == 30            # capped at max_holdout


def test_sample_next_obs_uses_each_rows_member():
    mean = jnp.arange(3 * 4 * 5 * 2, dtype=jnp.float32).reshape(3, 4, 5, 2)  # (E, 4, 5, ds)
    members = jax.random.randint(jax.random.key(0), (4, 5), 0, 3)
    rows = np.indices((4, 5))
    chosen = mean[members, rows[0], rows[1]]                                   # (4, 5, 2)
    out = D.sample_next_obs(mean, jnp.zeros_like(mean), members, jax.random.key(1))
    np.testing.assert_array_equal(out, chosen)
    # With noise: standardised by the chosen member's std, the draws are N(0, 1).
    std = jnp.broadcast_to(jnp.array([0.1, 1.0, 10.0])[:, None, None], (3, 20000, 1))
    mu = jnp.broadcast_to(jnp.array([-5.0, 0.0, 5.0])[:, None, None], (3, 20000, 1))
    m = jnp.arange(20000) % 3
    z = (D.sample_next_obs(mu, std, m, jax.random.key(2))[:, 0] - mu[m, 0, 0]) / std[m, 0, 0]
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.05


def test_uncertainty_is_max_over_members_of_std_norm():
    std = jnp.array([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 1.0], [6.0, 8.0]]])  # (E=2, 2, ds=2)
    np.testing.assert_allclose(D.uncertainty(std), [5.0, 10.0])


def test_update_best_bookkeeping_on_a_hand_made_sequence():
    fns = D.make_gaussian_ensemble(dataclasses.replace(CFG, patience=2), DS + DA, DS, 2, (8, 8))
    best = {"w": jnp.zeros((2, 3))}
    best_loss, since = jnp.full((2,), jnp.inf), jnp.zeros((), jnp.int32)
    losses = [[5.0, 7.0], [4.96, 6.0], [4.9, 6.5], [4.89, 5.95], [np.nan, 10.0]]
    expect_improved = [[1, 1], [0, 1], [1, 0], [0, 0], [0, 0]]
    expect_since = [0, 0, 0, 1, 2]
    expect_stop = [False, False, False, False, True]
    for epoch, loss in enumerate(losses, 1):
        params = {"w": jnp.full((2, 3), float(epoch))}
        best, best_loss, since, improved = D.update_best(best, best_loss, since, params,
                                                         jnp.array(loss), 0.01)
        np.testing.assert_array_equal(improved, expect_improved[epoch - 1])
        assert int(since) == expect_since[epoch - 1]
        state = D.EnsembleState(None, None, None, None, None, best_loss, since, epoch)
        assert bool(fns.should_stop(state)) == expect_stop[epoch - 1]
    # 4.96 is not 1% below 5 and 4.89 not 1% below 4.9: member 0 kept epoch 3, member 1
    # kept epoch 2 (5.95 is not 1% below 6); a NaN loss never counts as an improvement.
    np.testing.assert_array_equal(best["w"][:, 0], [3.0, 2.0])
    np.testing.assert_allclose(best_loss, [4.9, 6.0])


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained():
    x, y = make_data(5000, 0)
    tr, ho, n_tr, n_ho = D.split_holdout(0, 5000, 5000, CFG)
    steps = -(-n_tr // CFG.batch_size)
    fns = D.make_gaussian_ensemble(CFG, DS + DA, DS, CFG.num_models, CFG.hidden_dims, steps)
    data = (x[tr], y[tr], n_tr, x[ho], y[ho], n_ho)
    state0 = jax.jit(fns.init)(jax.random.key(0), x[tr], y[tr], n_tr)
    epoch = jax.jit(fns.train_epoch)
    state1, first = epoch(state0, *data, jax.random.key(1))
    state = state1
    for e in range(79):
        state, _ = epoch(state, *data, jax.random.key(e + 2))
    return dict(fns=fns, data=data, epoch=epoch, state0=state0, state1=state1, first=first,
                state=state, train_targets=y[tr[:n_tr]], train_inputs=x[tr[:n_tr]])


def test_trained_ensemble_beats_a_constant_predictor(trained):
    fns, state = trained["fns"], trained["state"]
    xt, yt = make_data(2000, seed=1)                               # fresh test data
    mean, std = fns.predict(state, xt)                             # (E, 2000, 3) raw units
    assert mean.shape == std.shape == (3, 2000, DS)
    mse = np.asarray(((mean - yt) ** 2).mean((1, 2)))
    nll = np.asarray((((mean - yt) / std) ** 2 + 2 * jnp.log(std)).mean((1, 2)))
    c_mean, c_std = trained["train_targets"].mean(0), trained["train_targets"].std(0)
    c_mse = ((c_mean - yt) ** 2).mean()
    c_nll = (((c_mean - yt) / c_std) ** 2 + 2 * np.log(c_std)).mean()
    assert np.all(mse < 0.1 * c_mse), (mse, c_mse)
    assert np.all(nll < c_nll - 2.0), (nll, c_nll)                 # std ~3x sharper at least
    # The predicted std is calibrated to the noise (0.01), not the spread of the targets.
    assert 0.005 < float(jnp.median(std)) < 0.03


def test_uncertainty_is_larger_far_from_the_data(trained):
    fns, state = trained["fns"], trained["state"]
    x = trained["train_inputs"]
    signs = np.sign(np.random.default_rng(3).normal(size=(500, DS + DA)))
    far = (x.mean(0) + 10 * x.std(0) * signs).astype(np.float32)
    u_on = D.uncertainty(fns.predict(state, x[:500])[1])           # (500,)
    u_far = D.uncertainty(fns.predict(state, far)[1])
    assert float(jnp.median(u_far)) > 3 * float(jnp.median(u_on)), (u_far, u_on)
    assert float(u_far.min()) > float(jnp.median(u_on))


def test_first_epoch_improves_every_member_from_infinity(trained):
    first, state0, state1 = trained["first"], trained["state0"], trained["state1"]
    assert bool(jnp.isinf(state0.best_holdout).all())
    assert bool(first["improved"].all()) and int(state1.epochs_since_improvement) == 0
    np.testing.assert_allclose(state1.best_holdout, first["holdout_mse"])
    assert tree_equal(state1.best_params, state1.params)
    assert not tree_equal(state1.params, state0.params)
    assert int(state1.epoch) == 1


def test_best_params_survive_epochs_that_worsen_the_holdout(trained):
    fns, state, epoch = trained["fns"], trained["state"], trained["epoch"]
    x, y, n_tr, hx, hy, n_ho = trained["data"]
    snapshot, best = state.best_params, state.best_holdout
    since = int(state.epochs_since_improvement)
    probe = make_data(100, seed=5)[0]
    before = fns.predict(state, probe)
    # Train on wrong targets (sign flipped): the true holdout gets worse every epoch.
    for e in range(CFG.patience):
        assert bool(fns.should_stop(state)) == (since + e >= CFG.patience)
        state, m = epoch(state, x, -y, n_tr, hx, hy, n_ho, jax.random.key(100 + e))
        assert not bool(m["improved"].any()) and np.all(np.asarray(m["holdout_mse"]) > best)
    assert int(state.epochs_since_improvement) == since + CFG.patience
    assert bool(fns.should_stop(state))
    assert tree_equal(state.best_params, snapshot)
    np.testing.assert_array_equal(state.best_holdout, best)
    after_best = fns.predict(state, probe)                          # use_best=True
    np.testing.assert_array_equal(after_best[0], before[0])
    np.testing.assert_array_equal(after_best[1], before[1])
    latest = fns.predict(state, probe, use_best=False)
    assert float(jnp.abs(latest[0] - before[0]).max()) > 1e-3


def test_next_state_distribution_adds_the_predicted_change(trained):
    fns, state = trained["fns"], trained["state"]
    x, _ = make_data(7, seed=6)
    obs, act = x[:, :DS], x[:, DS:]
    mean, std = D.next_state_distribution(fns, state, obs, act)
    delta, dstd = fns.predict(state, x)
    np.testing.assert_allclose(mean, obs + delta, rtol=1e-6)
    np.testing.assert_array_equal(std, dstd)
    inputs, targets = D.dynamics_arrays(
        dict(observations=obs, actions=act, next_observations=obs + 1.0, rewards=x[:, 0]))
    np.testing.assert_array_equal(inputs, x)
    np.testing.assert_allclose(targets, np.ones_like(obs), rtol=1e-6)
    r_in, r_out = D.reward_arrays(dict(observations=obs, actions=act, rewards=x[:, 0]))
    assert r_in.shape == (7, DS + DA) and r_out.shape == (7, 1)


# ----------------------------------------------------------------------------- batching
def test_vmap_over_seeds_and_tasks_matches_single_calls_and_ignores_padding():
    S, T, steps = 2, 2, 4
    cfg = dataclasses.replace(CFG, batch_size=64)
    fns = D.make_gaussian_ensemble(cfg, DS + DA, DS, 2, (16, 16))
    sizes, rows = (500, 420), 500
    xs, ys, hxs, hys, n_trs, n_hos = [], [], [], [], [], []
    for t, n in enumerate(sizes):
        x, y = make_data(n, seed=10 + t, gain=1.0 + 2 * t)
        tr, ho, n_tr, n_ho = D.split_holdout(t, n, rows, cfg)
        pad = lambda a, idx, k: np.where((np.arange(len(idx)) < k)[:, None], a[idx], np.nan)
        xs.append(pad(x, tr, n_tr)), ys.append(pad(y, tr, n_tr))    # NaN padding rows
        hxs.append(pad(x, ho, n_ho)), hys.append(pad(y, ho, n_ho))
        n_trs.append(n_tr), n_hos.append(n_ho)
    data = [np.stack(a).astype(np.float32) for a in (xs, ys)] + [np.array(n_trs)] + \
        [np.stack(a).astype(np.float32) for a in (hxs, hys)] + [np.array(n_hos)]
    keys = jax.random.split(jax.random.key(0), (S, T))
    init = jax.jit(jax.vmap(jax.vmap(fns.init), in_axes=(0, None, None, None)))
    states = init(keys, data[0], data[1], data[2])
    epoch = functools.partial(fns.train_epoch, steps=steps)
    batched = jax.jit(jax.vmap(jax.vmap(epoch), in_axes=(0,) + (None,) * 6 + (0,)))
    single = jax.jit(epoch)
    ref = [[jax.tree.map(lambda a: a[s, t], states) for t in range(T)] for s in range(S)]
    for e in range(2):
        ekeys = jax.random.split(jax.random.key(e + 1), (S, T))
        states, metrics = batched(states, *data, ekeys)
        for s in range(S):
            for t in range(T):
                ref[s][t], m = single(ref[s][t], *[d[t] for d in data], ekeys[s, t])
                assert np.isfinite(float(m["train_loss"]))
                assert np.all(np.isfinite(np.asarray(m["holdout_nll"])))
                for k in ("train_loss", "holdout_nll", "holdout_mse"):
                    np.testing.assert_allclose(metrics[k][s, t], m[k], rtol=1e-5, atol=1e-5)
                jax.tree.map(lambda a, b: np.testing.assert_allclose(
                    a[s, t], b, rtol=1e-5, atol=1e-5), states, ref[s][t])
    # Different seeds and tasks give different models.
    p = states.params["params"]["layer_0"]["kernel"]
    assert float(jnp.abs(p[0, 0] - p[1, 0]).max()) > 1e-3
    assert float(jnp.abs(p[0, 0] - p[0, 1]).max()) > 1e-3
    # Normalisers come from the training rows only (the NaN padding is ignored).
    np.testing.assert_allclose(states.input_norm.mean[0, 1], np.nanmean(data[0][1], 0),
                               rtol=1e-4, atol=1e-5)


def test_elites_are_the_members_best_on_holdout_and_only_they_predict():
    """With num_elites k, predict returns the k members of lowest best holdout MSE (best
    first), exactly their predictions under every member; without elites, all members in
    order; a bad k is refused."""
    fns_all = D.make_gaussian_ensemble(CFG, DS + DA, DS, 4, CFG.hidden_dims)
    fns = D.make_gaussian_ensemble(CFG, DS + DA, DS, 4, CFG.hidden_dims, num_elites=2)
    x, y = make_data(64, 0)
    state = fns.init(jax.random.key(0), x, y, 64)
    state = state.replace(best_holdout=jnp.array([0.3, 0.1, 0.4, 0.2]))
    mean_all, std_all = fns_all.predict(state, x[:5])
    mean, std = fns.predict(state, x[:5])
    assert mean.shape == (2, 5, DS) and mean_all.shape == (4, 5, DS)
    np.testing.assert_array_equal(mean, mean_all[jnp.array([1, 3])])
    np.testing.assert_array_equal(std, std_all[jnp.array([1, 3])])
    latest, _ = fns.predict(state, x[:5], use_best=False)   # the training view: every member
    assert latest.shape[0] == 4
    with pytest.raises(ValueError, match="num_elites"):
        D.make_gaussian_ensemble(CFG, DS + DA, DS, 2, CFG.hidden_dims, num_elites=3)
    with pytest.raises(ValueError, match="num_elites"):
        dataclasses.replace(CFG, num_models=5, num_elites=6)
