"""The shared stage-3 learner (reda_jax.algos.meta): SAC+BC on a fixed encoder equals plain
SAC+BC on precomputed features; OM-BC's loss is the hand-computed BC error and its encoder,
trained through that loss, learns to tell the tasks apart; OM-SAC's encoder steps along the
critic loss's gradient alone."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from reda_jax.algos import meta as meta_lib
from reda_jax.algos.contrastive import make_encoder_learner
from reda_jax.algos.sac import make_sac
from reda_jax.configs import EncoderConfig, MetaPolicyConfig, SACConfig
from reda_jax.data.context import sample_context_windows, stack_datasets

DS, DA, K = 2, 1, 3
SMALL = SACConfig(hidden_dims=(32, 32), batch_size=64)
ENC = EncoderConfig(embed_dim=16, ff_dim=32, z_dim=4, window=K)


def _task_data(action: float, seed: int, n: int = 2000, episode: int = 10) -> dict:
    """States reveal nothing about the task; the behavior action is the constant `action`,
    so only the context's previous actions identify the task."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, DS)).astype(np.float32)
    trunc = np.zeros(n, np.float32)
    trunc[episode - 1::episode] = 1.0
    return {"observations": obs, "actions": np.full((n, DA), action, np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": np.roll(obs, -1, 0), "terminals": np.zeros(n, np.float32),
            "truncations": trunc}


DATA = stack_datasets([_task_data(0.5, 0), _task_data(-0.5, 1)])


def _windows(key, per_task=32):
    return jax.vmap(lambda d, k: sample_context_windows(d, k, per_task, K))(
        DATA, jax.random.split(key, 2))


def test_fixed_encoder_update_equals_sac_bc_on_precomputed_features():
    enc = make_encoder_learner(ENC, DS, DA)
    frozen = enc.init(jax.random.key(1)).params
    cfg = MetaPolicyConfig(sac=SMALL)
    learner = meta_lib.make_meta_learner(
        cfg, DS, DA, 2, K, ENC.z_dim, encode=lambda f, t, q, tok, m: enc.encode(f, q, tok, m))
    state = learner.init(jax.random.key(2))
    batch = _windows(jax.random.key(3))
    new, info = learner.update(state, frozen, batch, jax.random.key(4))

    sac = make_sac(cfg.sac, DS + ENC.z_dim, DA, q_weight=cfg.q_weight, bc_weight=cfg.bc_weight)
    features, z = meta_lib.window_features(
        lambda f, t, q, tok, m: enc.encode(f, q, tok, m), frozen, {}, batch)
    assert z.shape == (64, ENC.z_dim)
    ref, ref_info = sac.update(state.policy, features, jax.random.key(4))
    chex_close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    jax.tree.map(chex_close, new.policy, ref)
    for k in ref_info:
        chex_close(info[k], ref_info[k])
    assert new.encoder == {}


def test_bc_objective_is_the_squared_error_of_the_deterministic_action():
    enc = make_encoder_learner(ENC, DS, DA)
    learner = meta_lib.make_meta_learner(
        MetaPolicyConfig(sac=SMALL), DS, DA, 2, K, ENC.z_dim,
        encode=lambda f, t, q, tok, m: enc.encode(t, q, tok, m),
        init_trainable=lambda k: enc.init(k).params, objective="bc")
    state = learner.init(jax.random.key(0))
    batch = _windows(jax.random.key(1))
    _, info = learner.update(state, {}, batch, jax.random.key(2))
    tokens = np.concatenate([batch.observations, batch.prev_actions], -1)
    pred = learner.act(state.policy.actor_params, {}, state.encoder, tokens[:, :, -1],
                       tokens, batch.mask)                                   # (2, 32, DA)
    expected = ((np.asarray(pred) - np.asarray(batch.actions[:, :, -1])) ** 2).sum(-1).mean()
    np.testing.assert_allclose(info["bc_mse"], expected, rtol=1e-5)


def _task_action_error(learner, state, key):
    """Mean |a - a_task| of the deterministic policy on fresh windows of each task."""
    batch = _windows(key, 256)
    tokens = jnp.concatenate([batch.observations, batch.prev_actions], -1)
    a = learner.act(state.policy.actor_params, {}, state.encoder, tokens[:, :, -1], tokens,
                    batch.mask)
    # Windows whose only valid token is an episode's first step carry no previous action.
    informative = batch.mask[:, :, -2] > 0
    err = jnp.abs(a[..., 0] - batch.actions[:, :, -1, 0])
    return float((err * informative).sum() / informative.sum())


def _trained_error(objective: str, updates: int) -> tuple[float, float]:
    """(error at init, error after `updates` steps) of a policy whose encoder is trained
    by `objective`."""
    enc = make_encoder_learner(ENC, DS, DA)
    cfg = MetaPolicyConfig(sac=SMALL, updates_per_epoch=updates)
    learner = meta_lib.make_meta_learner(
        cfg, DS, DA, 2, K, ENC.z_dim, encode=lambda f, t, q, tok, m: enc.encode(t, q, tok, m),
        init_trainable=lambda k: enc.init(k).params, encoder_lr=1e-3, objective=objective)
    state = learner.init(jax.random.key(0))
    before = _task_action_error(learner, state, jax.random.key(9))
    state, metrics = jax.jit(learner.epoch)(state, {}, DATA, jax.random.key(1))
    assert int(state.epoch) == 1 and all(v.shape[0] == updates for v in metrics.values())
    return before, _task_action_error(learner, state, jax.random.key(9))


def test_om_bc_encoder_learns_the_task_from_the_context():
    # A context-blind policy cannot beat an error of 0.5 (the tasks' actions are +-0.5).
    before, after = _trained_error("bc", 300)
    assert before > 0.3
    assert after < 0.1


def test_om_sac_trains_its_encoder_through_the_critics():
    enc = make_encoder_learner(ENC, DS, DA)
    learner = meta_lib.make_meta_learner(
        MetaPolicyConfig(sac=SMALL), DS, DA, 2, K, ENC.z_dim,
        encode=lambda f, t, q, tok, m: enc.encode(t, q, tok, m),
        init_trainable=lambda k: enc.init(k).params)
    state = learner.init(jax.random.key(0))
    batch = _windows(jax.random.key(1))
    new, _ = learner.update(state, {}, batch, jax.random.key(2))
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                                         state.encoder, new.encoder))
    assert max(moved) > 0
    # The encoder's step follows the critic loss alone: recompute its gradient.
    def critic_loss(trainable):
        tr, _ = meta_lib.window_features(lambda f, t, q, tok, m: enc.encode(t, q, tok, m),
                                         {}, trainable, batch)
        sac = make_sac(SMALL, DS + ENC.z_dim, DA, q_weight=2.5, bc_weight=1.0)
        k_critic, _ = jax.random.split(jax.random.key(2))
        return sac.critic_loss(state.policy.critic_params, state.policy, tr, k_critic)[0]

    grads = jax.grad(critic_loss)(state.encoder)
    updates, _ = optax.adam(3e-4).update(grads, optax.adam(3e-4).init(state.encoder))
    expected = optax.apply_updates(state.encoder, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 new.encoder, expected)
