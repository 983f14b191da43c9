"""Context encoder and InfoNCE: the pieces against hand-computed values, the encoder's
masking and position behaviour, and learning on windows with a known task signal."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.algos import contrastive as C
from reda_jax.configs import EncoderConfig
from reda_jax.networks.encoder import ContextEncoder
from reda_jax.types import ContextBatch

# A small encoder with 2 layers and 2 heads, so that the masking tests cover both.
SMALL = EncoderConfig(embed_dim=16, num_layers=2, num_heads=2, ff_dim=32, z_dim=4)
K = 3  # tokens per context window
D = 5


def _np_info_nce(z, perm, weights, temperature):
    """Loop-by-loop InfoNCE: per anchor, -log(exp(l_pos) / sum_{kept j} exp(l_j))."""
    z = np.asarray(z, np.float64)
    T, B, _ = z.shape
    w = np.ones((T, B)) if weights is None else np.asarray(weights, np.float64)
    total, norm = 0.0, 0.0
    for i in range(T):
        for b in range(B):
            pw = w[i, b] * w[i, perm[b]]
            # direction 1: anchor (i, b), candidates (j, perm[b]); direction 2: swapped.
            for a_idx, c_idx in ((b, perm[b]), (perm[b], b)):
                anchor = z[i, a_idx]
                logits = {j: anchor @ z[j, c_idx] / temperature for j in range(T)
                          if j == i or w[j, c_idx] > 0}
                top = max(logits.values())
                lse = top + np.log(sum(np.exp(v - top) for v in logits.values()))
                total += 0.5 * pw * (lse - logits[i])
            norm += pw
    return total / norm


def test_info_nce_matches_hand_computation():
    z = np.array([[[1.0, 0.5], [0.2, -1.0]],
                  [[-0.3, 0.8], [1.5, 0.1]],
                  [[0.0, -0.7], [-1.2, 0.4]]], np.float32)         # (T=3, B=2, d=2)
    perm = np.array([1, 0])
    # Fully by hand for anchor (0, 0), direction 1: logits <z[0,0], z[j,1]> / 0.5.
    l = np.array([1.0 * 0.2 + 0.5 * -1.0, 1.0 * 1.5 + 0.5 * 0.1, 1.0 * -1.2 + 0.5 * 0.4]) / 0.5
    assert l[0] == pytest.approx(-0.6)
    nll_00 = -np.log(np.exp(l[0]) / np.exp(l).sum())
    single = np.zeros((3, 2), np.float32)
    single[0, 0] = single[0, 1] = 1.0
    # Direction 2 of the same pair, by hand: anchor z[0,1] against candidates z[j,0].
    l2 = np.array([0.2 * 1.0 + -1.0 * 0.5, 0.2 * -0.3 + -1.0 * 0.8, 0.2 * 0.0 + -1.0 * -0.7]) / 0.5
    nll_01 = -np.log(np.exp(l2[0]) / np.exp(l2).sum())
    loss, m = C.info_nce_with_permutation(jnp.asarray(z), jnp.asarray(perm), temperature=0.5)
    np.testing.assert_allclose(float(loss), _np_info_nce(z, perm, None, 0.5), rtol=1e-5)
    # Non-uniform weights: the loop reference weights each anchor by w[i,b] * w[i,perm[b]].
    w = np.where(single > 0, 1.0, 0.3).astype(np.float32)
    loss_w, _ = C.info_nce_with_permutation(jnp.asarray(z), jnp.asarray(perm), jnp.asarray(w), 0.5)
    np.testing.assert_allclose(float(loss_w), _np_info_nce(z, perm, w, 0.5), rtol=1e-5)
    # With the other tasks' weights -> 0 (but > 0, so still negatives), the loss tends to
    # the mean of task 0's two anchors, each averaging the two hand-computed directions.
    tiny = np.where(single > 0, 1.0, 1e-12).astype(np.float32)
    loss_t, _ = C.info_nce_with_permutation(jnp.asarray(z), jnp.asarray(perm), jnp.asarray(tiny), 0.5)
    np.testing.assert_allclose(float(loss_t), 0.5 * (nll_00 + nll_01), rtol=1e-5)
    # Accuracy: share of the 12 anchors whose argmax is their own task.
    hits = 0
    for i in range(3):
        for b in range(2):
            hits += np.argmax([z[i, b] @ z[j, perm[b]] for j in range(3)]) == i
            hits += np.argmax([z[i, perm[b]] @ z[j, b] for j in range(3)]) == i
    assert float(m["accuracy"]) == pytest.approx(hits / 12)
    assert float(m["loss"]) == float(loss)


def test_info_nce_zero_weight_windows_are_neither_anchors_nor_negatives():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 4, 2)).astype(np.float32)
    perm = np.array([2, 3, 1, 0])
    w = np.ones((3, 4), np.float32)
    w[1, 3] = 0.0
    loss, _ = C.info_nce_with_permutation(jnp.asarray(z), jnp.asarray(perm), jnp.asarray(w))
    np.testing.assert_allclose(float(loss), _np_info_nce(z, perm, w, 1.0), rtol=1e-5)
    garbage = z.copy()
    garbage[1, 3] = [1e6, -1e6]
    loss_g, _ = C.info_nce_with_permutation(jnp.asarray(garbage), jnp.asarray(perm), jnp.asarray(w))
    assert float(loss_g) == pytest.approx(float(loss), rel=1e-6)


def test_info_nce_loss_uses_a_random_cycle():
    key = jax.random.key(3)
    perm = np.asarray(C.random_cyclic_permutation(key, 7))
    assert sorted(perm.tolist()) == list(range(7)) and np.all(perm != np.arange(7))
    # one 7-cycle: following perm from 0 visits every index
    seen, b = set(), 0
    for _ in range(7):
        seen.add(b)
        b = perm[b]
    assert len(seen) == 7 and b == 0
    z = jax.random.normal(jax.random.key(4), (3, 7, 2))
    loss, _ = C.info_nce_loss(z, key)
    expected, _ = C.info_nce_with_permutation(z, jnp.asarray(perm))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_info_nce_is_stable_for_huge_logits():
    # All z equal with |z|^2 = 1e4: every logit is 1e4, the loss is exactly log T.
    z = jnp.full((3, 4, 2), 100.0 / np.sqrt(2.0))
    loss, _ = C.info_nce_loss(z, jax.random.key(0))
    assert float(loss) == pytest.approx(np.log(3.0), abs=1e-4)
    # Tasks 120 degrees apart with |z| = 100: positives 1e4, negatives -5e3, loss -> 0.
    ang = np.array([0.0, 2.0, 4.0]) * np.pi / 3
    z = jnp.asarray(100.0 * np.stack([np.cos(ang), np.sin(ang)], -1)[:, None, :].repeat(4, 1),
                    jnp.float32)
    loss, m = C.info_nce_loss(z, jax.random.key(0))
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(m["accuracy"]) == 1.0
    # Generic z with temperature 1e-4 (logits ~ 1e4): the float64 stable reference.
    z = jax.random.normal(jax.random.key(1), (3, 5, 2))
    perm = np.array([1, 2, 3, 4, 0])
    loss, _ = C.info_nce_with_permutation(z, jnp.asarray(perm), temperature=1e-4)
    ref = _np_info_nce(np.asarray(z), perm, None, 1e-4)
    assert ref > 1000.0 and float(loss) == pytest.approx(ref, rel=1e-4)
    grads = jax.jit(jax.grad(lambda x: C.info_nce_with_permutation(
        x, jnp.asarray(perm), temperature=1e-4)[0]))(z)
    assert np.all(np.isfinite(np.asarray(grads)))


def test_prototypes_task_score_and_accuracy_by_hand():
    z = jnp.array([[[2.0, 0.0], [0.0, 1.0]],
                   [[0.0, 3.0], [0.0, 1.0]]])                        # (T=2, B=2, 2)
    protos = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    # argmax tasks: [[0, 1], [1, 1]]: 3 of 4 own.
    assert float(C.task_id_accuracy(z, protos)) == pytest.approx(0.75)
    assert float(C.task_id_accuracy(z, protos, jnp.array([[1.0, 0.0], [1.0, 1.0]]))) == 1.0
    assert float(C.task_id_accuracy(z, protos, jnp.array([[0.0, 1.0], [1.0, 1.0]]))) == pytest.approx(2 / 3)
    np.testing.assert_allclose(np.asarray(C.prototypes(z)), [[1.0, 0.5], [0.0, 2.0]])
    np.testing.assert_allclose(np.asarray(C.prototypes(z, jnp.array([[3.0, 1.0], [0.0, 1.0]]))),
                               [[1.5, 0.25], [0.0, 1.0]])

    rng = np.random.default_rng(1)
    zz = rng.normal(size=(4, 6, 3)).astype(np.float32)
    pp = rng.normal(size=(5, 3)).astype(np.float32)
    task = rng.integers(0, 5, size=(4, 6))
    scores = (zz.astype(np.float64) @ pp.T.astype(np.float64)) / 0.7   # (4, 6, 5)
    logp = scores - np.log(np.exp(scores).sum(-1, keepdims=True))
    np.testing.assert_allclose(np.asarray(C.task_log_prob(jnp.asarray(zz), jnp.asarray(pp), 0.7)),
                               logp, rtol=1e-5, atol=1e-5)
    expected = np.take_along_axis(logp, task[..., None], -1)[..., 0]
    got = C.task_score(jnp.asarray(zz), jnp.asarray(pp), jnp.asarray(task), 0.7)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    # A task index broadcast from (4, 1) over the windows.
    got = C.task_score(jnp.asarray(zz), jnp.asarray(pp), jnp.arange(4)[:, None], 0.7)
    np.testing.assert_allclose(np.asarray(got), logp[np.arange(4), :, np.arange(4)], rtol=1e-5,
                               atol=1e-5)


def test_tokens_from_context():
    B, K, ds, da = 2, 3, 2, 1
    obs = jnp.arange(B * K * ds, dtype=jnp.float32).reshape(B, K, ds)
    prev = -jnp.arange(B * K * da, dtype=jnp.float32).reshape(B, K, da) - 1
    mask = jnp.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    zeros = jnp.zeros((B, K))
    prev_rew = jnp.arange(B * K, dtype=jnp.float32).reshape(B, K) / 10
    batch = ContextBatch(observations=obs, actions=prev * 7, rewards=zeros,
                         next_observations=obs * 9, prev_actions=prev, prev_rewards=prev_rew, prev_observations=obs + 100,
                         terminals=zeros, mask=mask)
    tokens, m, query = C.tokens_from_context(batch, "state")
    assert tokens.shape == (B, K, ds + da)
    np.testing.assert_array_equal(np.asarray(tokens[1, 2]), [10.0, 11.0, -6.0])
    np.testing.assert_array_equal(np.asarray(query), np.asarray(tokens[:, -1]))
    np.testing.assert_array_equal(np.asarray(m), np.asarray(mask))
    # Transition tokens: (s_t, a_{t-1}, r_{t-1}, s_{t-1}), the state token's columns first.
    tokens, _, query = C.tokens_from_context(batch, "transition")
    assert tokens.shape == (B, K, 2 * ds + da + 1)
    np.testing.assert_allclose(np.asarray(tokens[1, 2]), [10.0, 11.0, -6.0, 0.5, 110.0, 111.0])
    np.testing.assert_array_equal(np.asarray(query), np.asarray(tokens[:, -1]))
    with pytest.raises(ValueError, match="token must be one of"):
        C.tokens_from_context(batch, "states")


class _Jitted:
    """A ContextEncoder with a jitted apply (eager flax is slow on a busy CPU)."""

    def __init__(self, cfg):
        self.module = ContextEncoder(cfg)
        self.apply = jax.jit(self.module.apply, static_argnames=("deterministic",))


def _encoder(cfg=SMALL, seed=0):
    enc = _Jitted(cfg)
    params = enc.module.init(jax.random.key(seed), jnp.zeros((1, D)),
                             jnp.zeros((1, K, D)), jnp.ones((1, K)))
    return enc, params


def test_encoder_ignores_padded_tokens():
    module, params = _encoder()
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    query = jax.random.normal(k1, (4, D))
    tokens = jax.random.normal(k2, (4, 3, D))
    mask = jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    z = module.apply(params, query, tokens, mask)
    assert z.shape == (4, SMALL.z_dim)
    garbage = 1e6 * jax.random.normal(k3, tokens.shape)
    garbage = garbage.at[3, 0, 0].set(jnp.nan).at[2, 1, 1].set(jnp.inf)
    z_garbage = module.apply(params, query, jnp.where(mask[..., None] > 0, tokens, garbage), mask)
    np.testing.assert_array_equal(np.asarray(z_garbage), np.asarray(z))
    # ... while a valid token does change z (the encoder reads its context).
    z_changed = module.apply(params, query, tokens.at[:, 2].add(1.0), mask)
    assert np.all(np.abs(np.asarray(z_changed - z))[:3].max(-1) > 1e-3)
    np.testing.assert_array_equal(np.asarray(z_changed[3]), np.asarray(z[3]))


def test_encoder_all_padded_window_is_finite_and_query_only():
    module, params = _encoder()
    query = jnp.ones((2, D))
    tokens = jnp.stack([jnp.zeros((3, D)), 1e30 * jnp.ones((3, D))])
    z = module.apply(params, query, tokens, jnp.zeros((2, 3)))
    assert np.all(np.isfinite(np.asarray(z)))
    np.testing.assert_array_equal(np.asarray(z[0]), np.asarray(z[1]))
    # One valid token gives a different z for the same query.
    z_one = module.apply(params, query[:1], tokens[:1] + 1.0, jnp.array([[0.0, 0.0, 1.0]]))
    assert np.abs(np.asarray(z_one[0] - z[0])).max() > 1e-3


def test_positional_encoding_learned_depends_on_order_none_does_not():
    k1, k2 = jax.random.split(jax.random.key(2))
    query = jax.random.normal(k1, (3, D))
    tokens = jax.random.normal(k2, (3, 3, D))
    mask = jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    reverse = lambda x: x[:, ::-1]
    for cfg_pe, same in (("none", True), ("learned", False)):
        module, params = _encoder(dataclasses.replace(SMALL, positional_encoding=cfg_pe))
        assert ("positions" in params["params"]) == (cfg_pe == "learned")
        z = module.apply(params, query, tokens, mask)
        z_rev = module.apply(params, query, reverse(tokens), reverse(mask))
        diff = np.abs(np.asarray(z - z_rev)).max(-1)
        if same:
            np.testing.assert_allclose(np.asarray(z_rev), np.asarray(z), atol=1e-5)
        else:
            assert np.all(diff > 1e-3), diff


def test_tanh_squash_is_the_linear_heads_z_through_tanh():
    # Same parameters (the squash adds none): z = tanh(linear z), inside (-1, 1) even for
    # tokens that drive the linear head far outside it.
    k1, k2 = jax.random.split(jax.random.key(3))
    query = 50.0 * jax.random.normal(k1, (5, D))
    tokens = 50.0 * jax.random.normal(k2, (5, 3, D))
    mask = jnp.ones((5, 3))
    linear, params = _encoder()
    squashed, params_tanh = _encoder(dataclasses.replace(SMALL, z_squash="tanh"))
    assert jax.tree.structure(params) == jax.tree.structure(params_tanh)
    z = np.asarray(linear.apply(params, query, tokens, mask))
    z_tanh = np.asarray(squashed.apply(params, query, tokens, mask))
    assert np.abs(z).max() > 1.5
    np.testing.assert_allclose(z_tanh, np.tanh(z), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(z_tanh) < 1.0)
    with pytest.raises(ValueError, match="z_squash must be 'none' or 'tanh'"):
        EncoderConfig(z_squash="l2")


def test_dropout_is_active_only_in_training():
    cfg = dataclasses.replace(SMALL, dropout=0.5)
    module, params = _encoder(cfg)
    query, tokens, mask = jnp.ones((2, D)), jnp.ones((2, 3, D)), jnp.ones((2, 3))
    det = module.apply(params, query, tokens, mask)
    np.testing.assert_array_equal(
        np.asarray(module.apply(params, query, tokens, mask, deterministic=True)), np.asarray(det))
    a, b = (module.apply(params, query, tokens, mask, deterministic=False,
                         rngs={"dropout": jax.random.key(s)}) for s in (0, 1))
    assert np.abs(np.asarray(a - b)).max() > 1e-3


def _task_windows(key, n, T=3, K=3, obs_dim=3, act_dim=2):
    """Windows of T tasks: feature 0 of every token is +-m_task (random sign, m = 0.5, 1.5,
    2.5; small noise), so the task-wise token means are equal; the other features are noise.
    Each window has 1..K valid (right-aligned) tokens; padding holds large junk."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    Dt = obs_dim + act_dim
    tokens = jax.random.normal(k1, (T, n, K, Dt))
    sign = jnp.where(jax.random.bernoulli(k2, 0.5, (T, n, K)), 1.0, -1.0)
    m = jnp.array([0.5, 1.5, 2.5])[:T, None, None]
    tokens = tokens.at[..., 0].set(sign * m + 0.1 * tokens[..., 0])
    length = jax.random.randint(k3, (T, n, 1), 1, K + 1)
    mask = (jnp.arange(K) >= K - length).astype(jnp.float32)
    junk = 50.0 * jax.random.normal(k4, tokens.shape)
    tokens = jnp.where(mask[..., None] > 0, tokens, junk)
    return tokens[..., -1, :], tokens, mask


def test_encoder_learns_to_identify_tasks_vmapped_over_seeds():
    """Two seeds trained in one vmapped scan (as the training loop does), with zero-weight
    junk windows; prototypes and accuracy come from separate fresh batches. (Both seeds
    pass 0.99 after ~200 steps; lr 1e-3 also works but can sit at 2/3 for a while.)"""
    S, T, B, steps = 2, 3, 64, 300
    cfg = EncoderConfig(ff_dim=64, batch_size=B, learning_rate=3e-3)
    learner = C.make_encoder_learner(cfg, token_dim=5, window=3)

    @jax.jit
    @jax.vmap
    def accuracy(params, key):
        k1, k2 = jax.random.split(key)
        protos = C.prototypes(learner.encode(params, *_task_windows(k1, 256)))
        return C.task_id_accuracy(learner.encode(params, *_task_windows(k2, 256)), protos)

    @jax.jit
    @jax.vmap
    def train(state, key):
        def step(s, k):
            k1, k2 = jax.random.split(k)
            query, tokens, mask = _task_windows(k1, B)
            weights = jnp.ones((T, B)).at[:, :4].set(0.0)   # 4 invalid windows per task
            tokens = tokens.at[:, :4].set(1e3)               # whose contents are junk
            return learner.update(s, query, tokens, mask, k2, weights)
        return jax.lax.scan(step, state, jax.random.split(key, steps))

    seeds = jax.random.split(jax.random.key(0), S)
    state = jax.jit(jax.vmap(learner.init))(seeds)
    eval_keys = jnp.stack([jax.random.key(9)] * S)
    before = np.asarray(accuracy(state.params, eval_keys))
    state, metrics = train(state, jax.random.split(jax.random.key(1), S))
    after = np.asarray(accuracy(state.params, eval_keys))
    assert np.all(before < 0.5), before          # chance is 1/3
    assert np.all(after > 0.9), after
    loss = np.asarray(metrics["loss"])           # (S, steps)
    assert np.all(np.isfinite(loss))
    assert np.all(loss[:, -20:].mean(1) < 0.5 * loss[:, :20].mean(1))
    assert np.all(np.asarray(state.step) == steps)
    # The seeds are independent runs.
    head = state.params["params"]["head"]["kernel"]
    assert np.abs(np.asarray(head[0] - head[1])).max() > 1e-2
