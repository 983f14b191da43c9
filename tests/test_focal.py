"""FOCAL and the transition encoders: transitions from tokens, the per-transition MLP, the
masked mean and the metric loss against hand-computed values, and a short training run
that separates two tasks whose dynamics differ."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.algos import contrastive as C
from reda_jax.baselines import focal as F
from reda_jax.configs import FocalConfig
from reda_jax.data.context import make_device_dataset, sample_context_windows, stack_datasets
from reda_jax.networks import transition_encoder as TE
from reda_jax.types import Transitions

DS, DA = 2, 2


def toy_tasks(seed=0, drifts=(0.3, -0.3), n_eps=40, ep_len=10, ds=DS, da=DA):
    """Stacked DeviceDatasets of len(drifts) tasks: episodes of ep_len steps from
    s_0 ~ N(0, I), a ~ U(-1, 1), s' = s + 0.1 a[:ds] + drift (a gravity-like offset)."""
    rng = np.random.default_rng(seed)
    tasks = []
    for drift in drifts:
        obs, act, nxt = [], [], []
        for _ in range(n_eps):
            s = rng.normal(size=ds)
            for _ in range(ep_len):
                a = rng.uniform(-1, 1, size=da)
                s_next = s + 0.1 * a[:ds] + drift
                obs.append(s), act.append(a), nxt.append(s_next)
                s = s_next
        n = len(obs)
        trunc = np.zeros(n)
        trunc[ep_len - 1::ep_len] = 1.0
        tasks.append(make_device_dataset(Transitions(
            np.array(obs), np.array(act), np.zeros(n), np.array(nxt), np.zeros(n), trunc)))
    return stack_datasets(tasks)


def window_tokens(data, key, n, K):
    """n windows of K tokens per task: tokens (T, n, K, D), mask (T, n, K), query (T, n, D)."""
    T = data.size.shape[0]
    batch = jax.vmap(lambda d, k: sample_context_windows(d, k, n, K))(
        data, jax.random.split(key, T))
    return C.tokens_from_context(batch, "state")


# ----------------------------------------------------------------------- transition encoder

def test_transitions_from_tokens_by_hand():
    ds, da = 2, 1
    # Window 0: tokens (s_j, a_{j-1}) = ([10j, 10j+1], [-j]) at j = 1..3, position 0 padded.
    # Window 1: only the newest token is valid -> no transition.
    tokens = np.zeros((2, 4, 3), np.float32)
    for j in range(1, 4):
        tokens[0, j] = [10 * j, 10 * j + 1, -j]
    tokens[0, 0] = [7.0, 7.0, 7.0]                       # junk in a padded token
    tokens[1] = np.arange(12).reshape(4, 3)
    mask = np.array([[0, 1, 1, 1], [0, 0, 0, 1]], np.float32)
    trans, tmask = TE.transitions_from_tokens(jnp.asarray(tokens), jnp.asarray(mask), ds, da)
    assert trans.shape == (2, 3, 2 * ds + da) and tmask.shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(tmask), [[0, 1, 1], [0, 0, 0]])
    # transition j = (s_j, a_j = prev action of token j+1, s_{j+1})
    np.testing.assert_array_equal(np.asarray(trans[0]), [[0, 0, 0, 0, 0],
                                                         [10, 11, -2, 20, 21],
                                                         [20, 21, -3, 30, 31]])
    np.testing.assert_array_equal(np.asarray(trans[1]), np.zeros((3, 5)))
    # Leading dims are arbitrary.
    t3, m3 = TE.transitions_from_tokens(jnp.asarray(tokens)[None], jnp.asarray(mask)[None], ds, da)
    np.testing.assert_array_equal(np.asarray(t3[0]), np.asarray(trans))


def _mlp_params(output, key=0, hidden=(8, 8), z=3, d_in=5):
    module = TE.TransitionMLP(hidden, z, output)
    return module, module.init(jax.random.key(key), jnp.zeros((1, d_in)))


def test_transition_mlp_outputs_and_rlkit_init():
    x = 3.0 * jax.random.normal(jax.random.key(1), (6, 5))
    lin, params = _mlp_params("linear")
    y = np.asarray(lin.apply(params, x), np.float64)
    tanh, _ = _mlp_params("tanh")
    l2, _ = _mlp_params("l2")
    # The same params give tanh(y) and y / |y|.
    np.testing.assert_allclose(np.asarray(tanh.apply(params, x)), np.tanh(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(l2.apply(params, x)),
                               y / np.linalg.norm(y, axis=-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(l2.apply(params, x)), axis=-1), 1.0,
                               rtol=1e-5)
    # rlkit init: hidden biases 0.1, kernels U(+-1/sqrt(out width)); last layer U(+-3e-3).
    p = params["params"]["mlp"]
    for name in ("Dense_0", "Dense_1"):
        np.testing.assert_array_equal(np.asarray(p[name]["bias"]), np.float32(0.1))
        kern = np.asarray(p[name]["kernel"])
        assert np.abs(kern).max() <= 1 / np.sqrt(8) and np.abs(kern).max() > 0.5 / np.sqrt(8)
    assert np.abs(np.asarray(p["Dense_2"]["kernel"])).max() <= 3e-3
    assert 0 < np.abs(np.asarray(p["Dense_2"]["bias"])).max() <= 3e-3
    # l2 of an all-zero output has a finite gradient.
    g = jax.grad(lambda v: TE.l2_normalize(v).sum())(jnp.zeros(3))
    assert np.all(np.isfinite(np.asarray(g)))
    with pytest.raises(ValueError):
        TE.TransitionMLP((4,), 2, "relu").init(jax.random.key(0), jnp.zeros((1, 3)))


def test_masked_mean_by_hand_and_ignores_padding():
    e = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]],
                  [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]], np.float32)
    mask = np.array([[0, 1, 1], [0, 0, 0]], np.float32)
    z = np.asarray(TE.masked_mean(jnp.asarray(e), jnp.asarray(mask)))
    np.testing.assert_allclose(z, [[4.0, 6.5], [0.0, 0.0]])
    e_bad = e.copy()
    e_bad[0, 0] = [np.nan, np.inf]
    e_bad[1] = 1e30
    z_bad = TE.masked_mean(jnp.asarray(e_bad), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(z_bad), z)


# ------------------------------------------------------------------------------ metric loss

def _np_focal(z, ids, w, pe, ne):
    """The loops of FOCAL-ICLR sac.py z_loss, with pair weights w_i w_j."""
    z = np.asarray(z, np.float64)
    pos = neg = n_pos = n_neg = 0.0
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            d = np.mean((z[i] - z[j]) ** 2)
            wij = w[i] * w[j]
            if ids[i] == ids[j]:
                pos += wij * np.sqrt(d + pe)
                n_pos += wij
            else:
                neg += wij / (d + ne)
                n_neg += wij
    return pos / (n_pos + 1e-3) + neg / (n_neg + 1e-3)


def test_focal_metric_loss_by_hand():
    z = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    ids = np.array([0, 1, 0, 1])
    # By hand, all weights 1: positive pairs (0,2): D = 2, (1,3): D = 0.5; negative pairs
    # (0,1): 0.5, (0,3): 1, (1,2): 2.5, (2,3): 1.
    pos = np.sqrt(2 + 1e-3) + np.sqrt(0.5 + 1e-3)
    neg = 1 / 0.6 + 1 / 1.1 + 1 / 2.6 + 1 / 1.1
    expected = pos / 2.001 + neg / 4.001
    loss, m = F.focal_metric_loss(jnp.asarray(z), jnp.asarray(ids))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(m["loss"]) == float(loss)
    assert float(m["positive_distance"]) == pytest.approx(1.25)
    assert float(m["negative_distance"]) == pytest.approx(5.0 / 4)
    # Weight 0 drops entry 3 (its pairs vanish); weight 0.5 halves entry 1's pairs.
    w = np.array([1.0, 0.5, 1.0, 0.0], np.float32)
    loss_w, m_w = F.focal_metric_loss(jnp.asarray(z), jnp.asarray(ids), jnp.asarray(w), 1e-3, 0.1)
    by_hand = np.sqrt(2.001) / 1.001 + (0.5 / 0.6 + 0.5 / 2.6) / 1.001
    assert float(loss_w) == pytest.approx(by_hand, rel=1e-6)
    assert float(m_w["negative_distance"]) == pytest.approx((0.5 * 0.5 + 0.5 * 2.5) / 1.0)
    garbage = z.copy()
    garbage[3] = [1e3, -1e3]
    loss_g, _ = F.focal_metric_loss(jnp.asarray(garbage), jnp.asarray(ids), jnp.asarray(w))
    assert float(loss_g) == pytest.approx(float(loss_w), rel=1e-6)
    # Random z, three tasks, other eps: the loop reference.
    rng = np.random.default_rng(0)
    zr = rng.normal(size=(7, 3)).astype(np.float32)
    idr = np.array([0, 2, 1, 0, 2, 2, 1])
    wr = rng.uniform(0, 1, size=7).astype(np.float32)
    got, _ = F.focal_metric_loss(jnp.asarray(zr), jnp.asarray(idr), jnp.asarray(wr), 0.01, 0.5)
    assert float(got) == pytest.approx(_np_focal(zr, idr, wr, 0.01, 0.5), rel=1e-5)
    # No positive pair at all: only the negative term; eps = 0 keeps finite gradients.
    g = jax.grad(lambda x: F.focal_metric_loss(x, jnp.arange(4), None, 0.0, 0.1)[0])(jnp.asarray(z))
    assert np.all(np.isfinite(np.asarray(g)))


def test_nearest_prototype_accuracy_by_hand():
    z = jnp.array([[[0.0, 0.0], [1.2, 0.0]],
                   [[1.0, 0.0], [2.0, 0.0]]])                      # (T=2, B=2, 2)
    protos = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    # nearest: (0,0)->0 hit, (0,1)->1 miss, (1,0)->1 hit, (1,1)->1 hit
    assert float(F.nearest_prototype_accuracy(z, protos=protos)) == pytest.approx(0.75)
    w = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    assert float(F.nearest_prototype_accuracy(z, w, protos)) == 1.0
    # Default prototypes: weighted task means [0, 0] and [1.5, 0]: every weighted window hits.
    assert float(F.nearest_prototype_accuracy(z, w)) == 1.0
    # Unweighted means [0.6, 0] and [1.5, 0]: (0,1) at 1.2 -> task 1, (1,0) at 1.0 -> task 0.
    assert float(F.nearest_prototype_accuracy(z)) == pytest.approx(0.5)


# -------------------------------------------------------------------------------- learner

TINY = dataclasses.replace(FocalConfig(), hidden_dims=(32, 32), z_dim=4, contexts_per_task=16,
                           updates_per_epoch=300, learning_rate=3e-3)


def test_focal_encode_is_the_masked_mean_of_transition_embeddings():
    K = 4
    focal = F.make_focal(TINY, DS, DA, num_tasks=2, window=K)
    params = focal.init(jax.random.key(0)).params
    encode = jax.jit(focal.encode)
    k1, k2 = jax.random.split(jax.random.key(1))
    tokens = jax.random.normal(k1, (3, K, DS + DA))
    mask = jnp.array([[1.0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    z = encode(params, jnp.zeros((3, DS + DA)), tokens, mask)
    trans, _ = TE.transitions_from_tokens(tokens, mask, DS, DA)
    e = np.asarray(focal.module.apply(params, trans))
    np.testing.assert_allclose(np.asarray(z[0]), e[0].mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(z[1]), e[1, 2], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(z[2]), 0.0)
    # Padded tokens and the query never change z.
    junk = jnp.where(mask[..., None] > 0, tokens, 1e6 * jax.random.normal(k2, tokens.shape))
    z_junk = encode(params, jnp.full((3, DS + DA), 5.0), junk, mask)
    np.testing.assert_array_equal(np.asarray(z_junk), np.asarray(z))


def test_focal_update_minimises_the_weighted_metric_loss():
    K = 3
    focal = F.make_focal(TINY, DS, DA, num_tasks=2, window=K)
    state = focal.init(jax.random.key(0))
    tokens, mask, _ = window_tokens(toy_tasks(), jax.random.key(1), 4, K)
    # Window (1, 0) has a single valid token: no transition, weight 0, junk contents.
    mask = mask.at[1, 0].set(jnp.array([0.0, 0.0, 1.0]))
    tokens = tokens.at[1, 0, :2].set(1e3)
    new, metrics = jax.jit(focal.update)(state, tokens, mask, jax.random.key(2))
    encode = jax.jit(lambda p: focal.encode(p, None, tokens, mask).reshape(8, -1))
    z = encode(state.params)
    w = (mask[..., :-1] * mask[..., 1:]).max(-1).reshape(8)
    assert float(w[4]) == 0.0
    expected, m = F.focal_metric_loss(z, jnp.repeat(jnp.arange(2), 4), w)
    assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(metrics["negative_distance"]) == pytest.approx(float(m["negative_distance"]),
                                                                rel=1e-5)
    assert int(new.step) == 1
    # The step lowers the loss on the same batch.
    z_new = encode(new.params)
    assert float(F.focal_metric_loss(z_new, jnp.repeat(jnp.arange(2), 4), w)[0]) < float(expected)
    with pytest.raises(ValueError):
        focal.update(state, tokens[..., :-1], mask, jax.random.key(2))


def test_focal_training_separates_two_tasks_vmapped_over_seeds():
    """Tasks with s' = s + 0.1 a +- 0.3: after 300 updates the windows of a task collapse
    together and the two tasks move apart (D_pos / D_neg -> ~0, nearest-prototype accuracy
    on fresh windows -> 1), for both of two seeds trained in one vmapped scan."""
    K, S = 4, 2
    data = toy_tasks()
    focal = F.make_focal(TINY, DS, DA, num_tasks=2, window=K)

    @jax.jit
    @jax.vmap
    def evaluate(params):
        k1, k2 = jax.random.split(jax.random.key(7))
        tok, m, q = window_tokens(data, k1, 128, K)
        w1 = (m[..., :-1] * m[..., 1:]).max(-1)
        protos = C.prototypes(focal.encode(params, q, tok, m), w1)
        tok, m, q = window_tokens(data, k2, 128, K)
        w2 = (m[..., :-1] * m[..., 1:]).max(-1)
        z = focal.encode(params, q, tok, m)
        _, met = F.focal_metric_loss(z.reshape(256, -1), jnp.repeat(jnp.arange(2), 128),
                                     w2.reshape(-1))
        ratio = met["positive_distance"] / met["negative_distance"]
        return F.nearest_prototype_accuracy(z, w2, protos), ratio

    state = jax.jit(jax.vmap(focal.init))(jax.random.split(jax.random.key(0), S))
    acc0, ratio0 = map(np.asarray, evaluate(state.params))
    state, metrics = jax.jit(jax.vmap(focal.epoch, in_axes=(0, None, 0)))(
        state, data, jax.random.split(jax.random.key(1), S))
    acc1, ratio1 = map(np.asarray, evaluate(state.params))
    assert metrics["loss"].shape == (S, TINY.updates_per_epoch)
    assert np.all(np.asarray(state.step) == TINY.updates_per_epoch)
    assert np.all(ratio0 > 0.2), ratio0          # at init the tasks overlap
    assert np.all(acc0 < 0.95), acc0
    assert np.all(ratio1 < 0.01), ratio1
    assert np.all(acc1 > 0.99), acc1
    loss = np.asarray(metrics["loss"])
    assert np.all(loss[:, -20:].mean(1) < 0.5 * loss[:, :20].mean(1))
