"""CORRO: InfoNCE, the CVAE's loss, the negative generators, the attention aggregator and
the bi-level encoder against hand-computed values; samplers' distributions; and short
training runs of the CVAE (reconstruction improves) and of E1 (InfoNCE accuracy rises)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.baselines import corro as CR
from reda_jax.configs import CorroConfig
from reda_jax.data.context import DeviceDataset
from reda_jax.networks import transition_encoder as TE
from reda_jax.types import Transitions
from tests.test_focal import DA, DS, toy_tasks

TINY = dataclasses.replace(
    CorroConfig(), hidden_dims=(32, 32), z_dim=8, batch_size=32, num_negatives=8,
    updates_per_epoch=600, learning_rate=3e-3, cvae_hidden=32, cvae_latent=4,
    cvae_batch_size=64, cvae_updates_per_epoch=300)


def _np_info_nce(q, k, negs, temperature):
    q, k, negs = (np.asarray(x, np.float64) for x in (q, k, negs))
    losses, hits = [], []
    for b in range(len(q)):
        logits = np.concatenate([[q[b] @ k[b]], negs[b] @ q[b]]) / temperature
        losses.append(-np.log(np.exp(logits[0]) / np.exp(logits).sum()))
        hits.append(logits[0] > logits[1:].max())
    return np.mean(losses), np.mean(hits)


def test_corro_info_nce_by_hand():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    k = np.array([[0.6, 0.8], [0.0, 1.0]], np.float32)
    negs = np.array([[[0.8, 0.6], [0.0, 1.0]],
                     [[1.0, 0.0], [0.6, -0.8]]], np.float32)       # (B=2, N=2, 2)
    # Row 0: logits [0.6, 0.8, 0] / 0.5 -> the positive is not the largest.
    l0 = np.array([0.6, 0.8, 0.0]) / 0.5
    l1 = np.array([1.0, 0.0, -0.8]) / 0.5
    expected = 0.5 * (np.log(np.exp(l0).sum()) - l0[0] + np.log(np.exp(l1).sum()) - l1[0])
    loss, m = CR.corro_info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(negs), 0.5)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(m["accuracy"]) == 0.5 and float(m["loss"]) == float(loss)
    assert float(m["spread"]) == pytest.approx(1.0)               # q rows orthogonal: cos 0
    # One embedding for every transition (E1 collapsed): spread 0 and loss log(N + 1).
    same = np.tile(np.array([[0.6, 0.8]], np.float32), (3, 1))
    loss, m = CR.corro_info_nce(jnp.asarray(same), jnp.asarray(same),
                                jnp.asarray(np.stack([same] * 4, 1)), 0.1)
    assert float(m["spread"]) == pytest.approx(0.0, abs=1e-6)
    assert float(loss) == pytest.approx(np.log(5.0), rel=1e-6) and float(m["accuracy"]) == 0.0
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    q, k, negs = (unit(rng.normal(size=s)).astype(np.float32) for s in ((5, 3), (5, 3), (5, 4, 3)))
    loss, m = CR.corro_info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(negs), 0.1)
    ref_loss, ref_acc = _np_info_nce(q, k, negs, 0.1)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5)
    assert float(m["accuracy"]) == pytest.approx(ref_acc)


def test_gaussian_kl_matches_the_closed_form():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(4, 3))
    logvar = rng.normal(size=(4, 3))
    sigma = np.exp(0.5 * logvar)
    # KL(N(mu, s^2) || N(0, 1)) = -log s + (s^2 + mu^2) / 2 - 1/2 per dim.
    closed = (-np.log(sigma) + (sigma ** 2 + mean ** 2) / 2 - 0.5).sum(-1)
    got = CR.gaussian_kl(jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), closed, rtol=1e-5)
    assert float(CR.gaussian_kl(jnp.zeros(3), jnp.zeros(3))) == 0.0


def _cvae(seed=0):
    corro = CR.make_corro(TINY, DS, DA, num_tasks=2, window=4)
    return corro, corro.init_generative(jax.random.key(seed)).params


def test_cvae_loss_is_weighted_kl_plus_mse_of_the_state_difference():
    corro, params = _cvae()
    k1, k2, k3, k_loss = jax.random.split(jax.random.key(3), 4)
    s = jax.random.normal(k1, (6, DS))
    a = jax.random.normal(k2, (6, DA))
    s_next = s + jax.random.normal(k3, (6, DS))
    loss, m = jax.jit(lambda p: CR.cvae_loss(p, s, a, s_next, k_loss, TINY))(params)
    # Recompute from the pieces: z = mean + std * eps with eps from the same key.
    eps = jax.random.normal(k_loss, (6, TINY.cvae_latent))
    apply = jax.jit(corro.cvae.apply, static_argnames="method")
    mean, logvar = apply(params, s, a, s_next, method=CR.CVAE.encode)
    pred = apply(params, s, a, mean + jnp.exp(0.5 * logvar) * eps, method=CR.CVAE.decode)
    mse = np.mean((np.asarray(pred) - np.asarray(s_next - s)) ** 2)
    m_np, lv = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    kl = np.mean(0.5 * (np.exp(lv) + m_np ** 2 - 1 - lv).sum(-1))
    assert float(m["mse"]) == pytest.approx(mse, rel=1e-5)
    assert float(m["kl"]) == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert float(loss) == pytest.approx(TINY.cvae_kl_weight * kl + mse, rel=1e-5)


def test_sample_negatives_share_s_a_and_come_from_the_prior():
    corro, params = _cvae()
    k1, k2, k3, k_neg = jax.random.split(jax.random.key(4), 4)
    s = jax.random.normal(k1, (5, DS))
    a = jax.random.normal(k2, (5, DA))
    neg = CR.sample_negatives(params, s, a, k_neg, 7, TINY)
    assert neg.shape == (5, 7, DS)
    z = jax.random.normal(k_neg, (5, 7, TINY.cvae_latent))
    s_rep = jnp.broadcast_to(s[:, None], (5, 7, DS))
    a_rep = jnp.broadcast_to(a[:, None], (5, 7, DA))
    expected = s_rep + corro.cvae.apply(params, s_rep, a_rep, z, method=CR.CVAE.decode)
    np.testing.assert_allclose(np.asarray(neg), np.asarray(expected), rtol=1e-5, atol=1e-6)
    # Different z give different s' for the same (s, a); each negative differs from s'.
    assert np.all(np.asarray(neg).std(1).max(-1) > 1e-4)
    s_next = s + 1.0
    assert np.all(np.abs(np.asarray(neg - s_next[:, None])).max(-1) > 1e-3)
    # No gradient reaches the CVAE.
    g = jax.grad(lambda p: CR.sample_negatives(p, s, a, k_neg, 7, TINY).sum())(params)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(g))


def test_noise_negatives_statistics():
    s_next = jnp.array([[1.0, -2.0], [0.0, 5.0]])
    delta_std = jnp.array([0.5, 2.0])
    neg = np.asarray(CR.noise_negatives(None, s_next, delta_std, jax.random.key(0), 20000, 0.3))
    assert neg.shape == (2, 20000, 2)
    np.testing.assert_allclose(neg.mean(1), np.asarray(s_next), atol=0.02)
    np.testing.assert_allclose(neg.std(1), np.array([[0.15, 0.6], [0.15, 0.6]]), rtol=0.03)


def test_transition_delta_std_excludes_padding():
    data = toy_tasks(n_eps=3, ep_len=5, drifts=(0.3, -0.3, 0.1))
    # Truncate task 1 to 7 rows (the rest becomes padding with junk contents).
    obs = data.transitions.observations.at[1, 7:].set(100.0)
    data = data.replace(transitions=data.transitions.replace(observations=obs),
                        size=data.size.at[1].set(7))
    tr = data.transitions
    rows = [np.asarray(tr.next_observations[t, :n] - tr.observations[t, :n])
            for t, n in enumerate([15, 7, 15])]
    np.testing.assert_allclose(np.asarray(CR.transition_delta_std(data)),
                               np.concatenate(rows).std(0), rtol=1e-5)


def _sized(sizes, length):
    """A DeviceDataset-shaped stand-in of len(sizes) tasks, row r of task t holding [t, r]."""
    T = len(sizes)
    obs = np.stack([np.stack([np.full(length, t), np.arange(length)], -1) for t in range(T)])
    obs = jnp.asarray(obs, jnp.float32)
    z = jnp.zeros((T, length))
    tr = Transitions(obs, jnp.zeros((T, length, 1)), z, obs + 0.5, z, z)
    return DeviceDataset(transitions=tr, episode_start=jnp.zeros((T, length), jnp.int32),
                         size=jnp.asarray(sizes, jnp.int32))


def test_row_samplers_respect_sizes():
    data = _sized([10, 30, 20], 30)
    task, row = map(np.asarray, jax.jit(CR.sample_pooled_rows, static_argnums=2)(
        data, jax.random.key(0), 60000))
    assert np.all(row >= 0) and np.all(row < np.array([10, 30, 20])[task])
    # Pooled uniform: task frequencies 1/6, 1/2, 1/3, rows uniform within a task.
    np.testing.assert_allclose(np.bincount(task, minlength=3) / 60000, [1 / 6, 1 / 2, 1 / 3],
                               atol=0.01)
    np.testing.assert_allclose(np.bincount(row[task == 0], minlength=10) / (task == 0).sum(),
                               0.1, atol=0.015)
    task, rq, rk = map(np.asarray, jax.jit(CR.sample_task_pairs, static_argnums=2)(
        data, jax.random.key(1), 60000))
    np.testing.assert_allclose(np.bincount(task, minlength=3) / 60000, 1 / 3, atol=0.01)
    sizes = np.array([10, 30, 20])[task]
    assert np.all(rq < sizes) and np.all(rk < sizes)
    assert 0.05 < np.mean(rq == rk) * 3 < 0.3     # independent: P(equal) = 1/size, not 1


def test_attention_aggregator_by_hand_and_ignores_padding():
    agg = TE.AttentionAggregator()
    e = jax.random.normal(jax.random.key(0), (3, 4, 5))
    mask = jnp.array([[1.0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
    params = agg.init(jax.random.key(1), e, mask)
    z = np.asarray(agg.apply(params, e, mask))
    kern = np.asarray(params["params"]["score"]["kernel"], np.float64)[:, 0]
    bias = float(params["params"]["score"]["bias"][0])
    assert np.abs(kern).max() <= 1 / np.sqrt(5)           # PyTorch nn.Linear init
    en = np.asarray(e, np.float64)
    for b, rows in ((0, [0, 1, 2, 3]), (1, [1, 3])):
        scores = en[b, rows] @ kern + bias
        w = np.exp(scores - scores.max())
        w /= w.sum()
        np.testing.assert_allclose(z[b], w @ en[b, rows], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(z[2], 0.0)
    junk = jnp.where(mask[..., None] > 0, e, jnp.nan)
    np.testing.assert_array_equal(np.asarray(agg.apply(params, junk, mask)), z)


def test_encode_stops_gradients_into_e1_and_ignores_padding():
    K = 4
    corro = CR.make_corro(TINY, DS, DA, num_tasks=2, window=K)
    e1 = corro.init(jax.random.key(0)).params
    e2 = corro.init_aggregator(jax.random.key(1))
    k1, k2 = jax.random.split(jax.random.key(2))
    tokens = jax.random.normal(k1, (3, K, DS + DA))
    mask = jnp.array([[1.0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    encode = jax.jit(corro.encode)
    z = encode(e1, e2, None, tokens, mask)
    assert z.shape == (3, TINY.z_dim)
    # Window 1 has one transition: z is its unit-norm E1 embedding (softmax weight 1).
    trans, _ = TE.transitions_from_tokens(tokens, mask, DS, DA)
    e_one = jax.jit(corro.e1.apply)(e1, trans[1, 2])
    np.testing.assert_allclose(np.asarray(z[1]), np.asarray(e_one),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(z[2]), 0.0)
    junk = jnp.where(mask[..., None] > 0, tokens, 1e6)
    np.testing.assert_array_equal(np.asarray(encode(e1, e2, None, junk, mask)), np.asarray(z))
    g1, g2 = jax.jit(jax.grad(lambda p1, p2: encode(p1, p2, None, tokens, mask).sum(),
                              argnums=(0, 1)))(e1, e2)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(g1))
    assert np.abs(np.asarray(g2["params"]["score"]["kernel"])).max() > 0


def test_make_corro_checks_its_inputs():
    with pytest.raises(ValueError):
        CR.make_corro(dataclasses.replace(TINY, negatives="noise"), DS, DA, 2, 4)
    with pytest.raises(ValueError):
        CR.make_corro(dataclasses.replace(TINY, negatives="noise"), DS, DA, 2, 4, jnp.ones(3))
    corro = CR.make_corro(TINY, DS, DA, 2, 4)
    with pytest.raises(ValueError):
        corro.epoch(corro.init(jax.random.key(0)), None, toy_tasks(drifts=(0.1,)),
                    jax.random.key(0))


def test_cvae_then_e1_with_generative_negatives_learns():
    """Stage 1: the CVAE (KL weight 0.02, so the latent carries the task on this toy)
    predicts s' - s far better than at init, and its prior samples for one (s, a) spread
    over the tasks' dynamics. Stage 2 with those samples as negatives raises E1's InfoNCE
    accuracy from ~0 (the negatives share the query's (s, a), so at init they are closer to
    it than the key is) to well above chance (1/9)."""
    data = toy_tasks()
    cfg = dataclasses.replace(TINY, cvae_kl_weight=0.02)
    corro = CR.make_corro(cfg, DS, DA, num_tasks=2, window=4)
    cvae, m_cvae = jax.jit(corro.generative_epoch)(corro.init_generative(jax.random.key(0)),
                                                    data, jax.random.key(1))
    mse, kl = np.asarray(m_cvae["mse"]), np.asarray(m_cvae["kl"])
    assert mse.shape == (cfg.cvae_updates_per_epoch,)
    # Predicting 0.1 a alone leaves the drift: MSE 0.09; at init about that.
    assert mse[:5].mean() > 0.07 and mse[-30:].mean() < 0.03, (mse[:5].mean(), mse[-30:].mean())
    assert kl[-30:].mean() > 0.1
    s, a = data.transitions.observations[0, :50], data.transitions.actions[0, :50]
    neg = np.asarray(jax.jit(CR.sample_negatives, static_argnums=(4, 5))(
        cvae.params, s, a, jax.random.key(5), 32, cfg))
    assert np.median(neg.std(1)) > 0.1             # the drift +-0.3 differs across z

    state, m = jax.jit(corro.epoch)(corro.init(jax.random.key(2)), cvae.params, data,
                                    jax.random.key(3))
    acc, loss = np.asarray(m["accuracy"]), np.asarray(m["loss"])
    assert acc.shape == (cfg.updates_per_epoch,) and int(state.step) == cfg.updates_per_epoch
    assert acc[:30].mean() < 0.1 and acc[-50:].mean() > 0.3, (acc[:30].mean(), acc[-50:].mean())
    assert loss[-50:].mean() < loss[:30].mean() - 0.3


def test_e1_with_noise_negatives_learns():
    data = toy_tasks()
    cfg = dataclasses.replace(TINY, negatives="noise", noise_std=2.0)
    corro = CR.make_corro(cfg, DS, DA, num_tasks=2, window=4,
                          delta_std=CR.transition_delta_std(data))
    _, m = jax.jit(corro.epoch)(corro.init(jax.random.key(2)), None, data, jax.random.key(3))
    acc = np.asarray(m["accuracy"])
    assert acc[:30].mean() < 0.1 and acc[-50:].mean() > 0.8, (acc[:30].mean(), acc[-50:].mean())
    # negative_spread: a query's N negatives are s' + noise_std * delta_std * N(0, 1), whose
    # population std (ddof 0) over N draws has mean sigma * sqrt(2/N) G(N/2) / G((N-1)/2).
    n = cfg.num_negatives
    c = math.sqrt(2.0 / n) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))
    expected = c * cfg.noise_std * float(np.mean(CR.transition_delta_std(data)))
    assert float(np.mean(m["negative_spread"])) == pytest.approx(expected, rel=0.03)
    # E1 has learnt: its embeddings of different transitions are spread apart.
    assert float(np.mean(m["spread"][-50:])) > 0.05
