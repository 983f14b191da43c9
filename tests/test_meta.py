"""The shared stage-3 learner (reda_jax.algos.meta): SAC+BC on a fixed encoder equals plain
SAC+BC on precomputed features; OM-BC's loss is the hand-computed BC error and its encoder,
trained through that loss, learns to tell the tasks apart; OM-SAC's encoder steps along the
critic loss's gradient alone."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reda_jax.algos import meta as meta_lib
from reda_jax.algos.contrastive import make_encoder_learner
from reda_jax.algos.sac import make_sac
from reda_jax.configs import EncoderConfig, MetaPolicyConfig, SACConfig
from reda_jax.data.context import sample_context_windows, stack_datasets

DS, DA, K = 2, 1, 3
SMALL = SACConfig(hidden_dims=(32, 32), batch_size=64)
ENC = EncoderConfig(embed_dim=16, ff_dim=32, z_dim=4)


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
    enc = make_encoder_learner(ENC, DS + DA, K)
    frozen = enc.init(jax.random.key(1)).params
    cfg = MetaPolicyConfig(sac=SMALL, normalize_states=False)
    learner = meta_lib.make_meta_learner(
        cfg, DS, DA, 2, K, ENC.z_dim, encode=lambda f, t, q, tok, m: enc.encode(f, q, tok, m),
        reward_range=(-1.0, 2.0))
    state = learner.init(jax.random.key(2))
    batch = _windows(jax.random.key(3))
    new, info = learner.update(state, frozen, batch, jax.random.key(4))

    sac = make_sac(cfg.sac, DS + ENC.z_dim, DA, q_weight=cfg.q_weight, bc_weight=cfg.bc_weight,
                   actor_entropy=cfg.actor_entropy, target_bounds=(-100.0, 200.0),
                   bc_on_mean=cfg.bc_on_mean)
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
    enc = make_encoder_learner(ENC, DS + DA, K)
    learner = meta_lib.make_meta_learner(
        MetaPolicyConfig(sac=SMALL, normalize_states=False), DS, DA, 2, K, ENC.z_dim,
        encode=lambda f, t, q, tok, m: enc.encode(t, q, tok, m),
        init_trainable=lambda k: enc.init(k).params, objective="bc", reward_range=(0.0, 1.0))
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
    enc = make_encoder_learner(ENC, DS + DA, K)
    cfg = MetaPolicyConfig(sac=SMALL, normalize_states=False, updates_per_epoch=updates)
    learner = meta_lib.make_meta_learner(
        cfg, DS, DA, 2, K, ENC.z_dim, encode=lambda f, t, q, tok, m: enc.encode(t, q, tok, m),
        init_trainable=lambda k: enc.init(k).params, encoder_lr=1e-3, objective=objective,
        reward_range=(-5.0, 5.0))
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
    enc = make_encoder_learner(ENC, DS + DA, K)
    learner = meta_lib.make_meta_learner(
        MetaPolicyConfig(sac=SMALL, normalize_states=False, clip_td_target=False), DS, DA, 2, K, ENC.z_dim,
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


def _sanity_learner(kind: str, updates: int = 1000):
    """`bc` (no context) or `oracle` (z = the task's multiplier) trained on DATA, whose two
    tasks differ only in the behavior action (+0.5 / -0.5). A low initial temperature lets
    the BC term win quickly (at alpha ~1 the entropy bonus keeps the actor wide for
    thousands of updates)."""
    sac = SACConfig(hidden_dims=(32, 32), batch_size=64, init_temperature=0.01)
    cfg = MetaPolicyConfig(sac=sac, normalize_states=False, updates_per_epoch=updates)
    if kind == "bc":
        learner = meta_lib.make_meta_learner(cfg, DS, DA, 2, K, 0, encode=meta_lib.no_context,
                                             objective="bc", reward_range=(-5.0, 5.0))
    else:
        learner = meta_lib.make_meta_learner(cfg, DS, DA, 2, K, 1, encode=meta_lib.no_context,
                                             reward_range=(-5.0, 5.0),
                                             task_features=np.array([[1.0], [2.0]]))
    state, _ = jax.jit(learner.epoch)(learner.init(jax.random.key(0)), {}, DATA,
                                      jax.random.key(1))
    return learner, state


def test_oracle_acts_on_the_true_task_and_bc_on_no_context():
    batch = _windows(jax.random.key(5), 64)
    tokens = jnp.concatenate([batch.observations, batch.prev_actions], -1)
    query = tokens[:, :, -1]
    learner, state = _sanity_learner("oracle")
    task = jnp.array([[1.0], [2.0]])[:, None].repeat(64, 1)                   # (2, 64, 1)
    a = learner.act(state.policy.actor_params, {}, {}, query, tokens, batch.mask, task)
    # The actor reads [s, multiplier]: the true task's multiplier gives that task's action.
    np.testing.assert_allclose(np.asarray(a[0]).mean(), 0.5, atol=0.1)
    np.testing.assert_allclose(np.asarray(a[1]).mean(), -0.5, atol=0.1)
    swapped = learner.act(state.policy.actor_params, {}, {}, query, tokens, batch.mask,
                          task[::-1])
    np.testing.assert_allclose(np.asarray(swapped[0]).mean(), -0.5, atol=0.1)
    with pytest.raises(ValueError, match="pass task"):
        learner.act(state.policy.actor_params, {}, {}, query, tokens, batch.mask)
    # Training windows of task t carry z = its features (and z' the same).
    tr, z = meta_lib.window_features(meta_lib.no_context, {}, {}, batch,
                                     jnp.array([[1.0], [2.0]]))
    np.testing.assert_array_equal(np.asarray(z)[:, 0], np.repeat([1.0, 2.0], 64))
    np.testing.assert_array_equal(tr.next_observations[:, -1], tr.observations[:, -1])

    learner, state = _sanity_learner("bc")
    a = learner.act(state.policy.actor_params, {}, {}, query, tokens, batch.mask)
    # Without context both tasks get the same action: the mean of +-0.5.
    np.testing.assert_allclose(np.asarray(a), np.asarray(
        learner.act(state.policy.actor_params, {}, {}, query, tokens * 0, batch.mask * 0)))
    assert abs(float(np.asarray(a).mean())) < 0.15
    with pytest.raises(ValueError, match="task_features must be"):
        meta_lib.make_meta_learner(MetaPolicyConfig(sac=SMALL, normalize_states=False), DS, DA, 2, K, 1,
                                   encode=meta_lib.no_context, reward_range=(0.0, 1.0),
                                   task_features=np.ones((3, 1)))


def test_oracle_task_code_standardises_by_the_training_tasks():
    from reda_jax.methods import task_features
    # Training gravity x1 / x2 (mean 1.5, std 0.5): -1 / +1; unseen x1.5 and x3 sit at 0, +3.
    np.testing.assert_allclose(task_features([1.0, 2.0, 1.5, 3.0], [1.0, 2.0]),
                               [[-1.0], [1.0], [0.0], [3.0]])
    np.testing.assert_allclose(task_features([0.5, 2.0], [1.0, 2.0], "multiplier"),
                               [[0.5], [2.0]])
    # One training task: centred, unit scale.
    np.testing.assert_allclose(task_features([1.0, 1.5], [1.0]), [[0.0], [0.5]])
    with pytest.raises(ValueError, match="oracle_code"):
        MetaPolicyConfig(oracle_code="onehot")


def _narrow_task_data(seed: int, n: int = 3000, episode: int = 50) -> dict:
    """Pendulum-like narrow data: reward 1 every step, episodes end by termination, the
    behavior action a deterministic, nearly linear function of the state spanning ~+-0.2
    (the didactic datasets' shape, where SAC+BC once fell below BC)."""
    rng = np.random.default_rng(seed)
    obs = (rng.normal(size=(n, 4)) * 0.3).astype(np.float32)
    act = np.tanh(obs @ np.array([[0.3], [-0.2], [0.25], [0.1]], np.float32))
    term = np.zeros(n, np.float32)
    term[episode - 1::episode] = 1.0
    return {"observations": obs, "actions": act, "rewards": np.ones(n, np.float32),
            "next_observations": obs + 0.05 * rng.normal(size=obs.shape).astype(np.float32),
            "terminals": term, "truncations": np.zeros(n, np.float32)}


def _narrow_oracle(cfg: MetaPolicyConfig) -> tuple[float, float]:
    """(squared action error of the deterministic policy, largest batch Q seen) of an oracle
    trained for one epoch on two narrow tasks."""
    data = stack_datasets([_narrow_task_data(0), _narrow_task_data(1)])
    obs = np.asarray(data.transitions.observations).reshape(-1, 4)
    acts = np.asarray(data.transitions.actions).reshape(-1, 1)
    learner = meta_lib.make_meta_learner(cfg, 4, 1, 2, K, 1, encode=meta_lib.no_context,
                                         reward_range=(1.0, 1.0),
                                         task_features=np.array([[1.0], [2.0]]),
                                         state_stats=(obs.mean(0), obs.std(0)),
                                         action_std=acts.std(0))
    state, metrics = jax.jit(learner.epoch)(learner.init(jax.random.key(0)), {}, data,
                                            jax.random.key(1))
    batch = jax.vmap(lambda d, k: sample_context_windows(d, k, 256, K))(
        data, jax.random.split(jax.random.key(2), 2))
    tokens = jnp.concatenate([batch.observations, batch.prev_actions], -1)
    task = jnp.array([[1.0], [2.0]])[:, None].repeat(256, 1)
    a = learner.act(state.policy.actor_params, {}, {}, tokens[:, :, -1], tokens, batch.mask, task)
    err = float(((a - batch.actions[:, :, -1]) ** 2).sum(-1).mean())
    return err, float(metrics["meta/q_max"].max())


@pytest.mark.timeout(300)
def test_default_offline_learner_stays_at_bc_level_on_narrow_data():
    """The regression behind the stage-3 defaults (docs/notebook.md, 2026-11-30): on narrow
    single-policy data the old recipe (TD3+BC's q_weight 2.5, no target clip) lets the
    critic's extrapolated slope drag the actor off the data; the defaults keep the actor as
    close to it as BC alone (q_weight 0) gets and Q inside r_max / (1 - gamma) = 100."""
    fast = SACConfig(hidden_dims=(64, 64), batch_size=64, tau=0.1)   # quick target updates
    default_err, default_q = _narrow_oracle(MetaPolicyConfig(sac=fast, updates_per_epoch=2000))
    bc_err, _ = _narrow_oracle(MetaPolicyConfig(sac=fast, updates_per_epoch=2000,
                                                q_weight=0.0))     # the same actor, BC alone
    old_err, _ = _narrow_oracle(MetaPolicyConfig(sac=fast, updates_per_epoch=2000,
                                                 q_weight=2.5, clip_td_target=False,
                                                 bc_on_mean=False, normalize_states=False))
    action_var = float(np.var(_narrow_task_data(0)["actions"]))        # ~0.02
    assert default_q <= 100.0 + 1e-3
    assert default_err < 1.25 * bc_err and default_err < 0.15 * action_var, (
        default_err, bc_err, action_var)
    assert old_err > 2.0 * default_err, (old_err, default_err)


@pytest.mark.timeout(300)
def test_standardized_bc_error_holds_the_actor_on_narrow_data_under_a_strong_q_term():
    """bc_error 'standardized' divides the BC error by the data's action variance (~0.02
    here), so under TD3+BC's q_weight 2.5, which drags the raw-error actor off the data, the
    actor stays close to it; it needs the data's action std."""
    fast = SACConfig(hidden_dims=(64, 64), batch_size=64, tau=0.1)
    strong = dict(sac=fast, updates_per_epoch=2000, q_weight=2.5)
    raw_err, _ = _narrow_oracle(MetaPolicyConfig(**strong))
    std_err, std_q = _narrow_oracle(MetaPolicyConfig(**strong, bc_error="standardized"))
    action_var = float(np.var(_narrow_task_data(0)["actions"]))
    assert std_err < 0.5 * raw_err and std_err < 0.15 * action_var, (std_err, raw_err)
    assert std_q <= 100.0 + 1e-3
    with pytest.raises(ValueError, match="action_std"):
        meta_lib.make_meta_learner(MetaPolicyConfig(sac=fast, bc_error="standardized"), 4, 1,
                                   2, K, 1, encode=meta_lib.no_context, reward_range=(1.0, 1.0),
                                   task_features=np.array([[1.0], [2.0]]),
                                   state_stats=(np.zeros(4), np.ones(4)))
    with pytest.raises(ValueError, match=r"action_std must have shape \(1,\), got \(2,\)"):
        meta_lib.make_meta_learner(MetaPolicyConfig(sac=fast, bc_error="standardized"), 4, 1,
                                   2, K, 1, encode=meta_lib.no_context, reward_range=(1.0, 1.0),
                                   task_features=np.array([[1.0], [2.0]]),
                                   state_stats=(np.zeros(4), np.ones(4)), action_std=np.ones(2))
    with pytest.raises(ValueError, match="bc_error"):
        MetaPolicyConfig(bc_error="scaled")


def _copycat_data(seed: int, n: int = 2000, episode: int = 20) -> dict:
    """Each episode repeats one random action (a_t = a_{t-1}); states are noise, so a z that
    carries the window's previous action predicts the transition's action exactly."""
    data = _task_data(0.0, seed, n, episode)
    rng = np.random.default_rng(seed + 100)
    data["actions"] = np.repeat(rng.uniform(-0.8, 0.8, (n // episode, DA)), episode,
                                0).astype(np.float32)
    return data


@pytest.mark.parametrize("source", ["transition", "independent"])
def test_independent_context_windows_carry_no_copy_of_the_transition(source):
    # z = the query's previous action: from the transition's own window it gives the action
    # away (a copycat can fit it); from an independent window of the task it is unrelated.
    data = stack_datasets([_copycat_data(0), _copycat_data(1)])
    prev_action = lambda f, t, query, tok, m: query[..., DS:]
    cfg = MetaPolicyConfig(sac=SMALL, normalize_states=False, updates_per_epoch=400, context_source=source)
    learner = meta_lib.make_meta_learner(cfg, DS, DA, 2, K, DA, prev_action, objective="bc",
                                         reward_range=(-1.0, 1.0))
    state = learner.init(jax.random.key(0))
    _, metrics = jax.jit(learner.epoch)(state, {}, data, jax.random.key(1))
    final_mse = float(metrics["meta/bc_mse"][-50:].mean())
    variance = float(data.transitions.actions[0].var())      # ~0.21: uniform(-0.8, 0.8)
    if source == "transition":
        assert final_mse < 0.15 * variance
    else:
        assert final_mse > 0.8 * variance


def test_context_source_is_checked():
    with pytest.raises(ValueError, match="context_source"):
        MetaPolicyConfig(context_source="window")
    with pytest.raises(ValueError, match="acting_query"):
        MetaPolicyConfig(acting_query="newest")


@pytest.mark.parametrize("acting_query", ["current", "window"])
def test_acting_query_decides_what_the_encoder_reads(acting_query):
    # An encoder that returns its query's previous action: with 'window' z comes from the
    # context's newest token (as in every training window), with 'current' from the agent's
    # own token, which an off-policy context does not contain.
    query_prev_action = lambda f, t, query, tok, m: query[..., DS:]
    cfg = MetaPolicyConfig(sac=SMALL, normalize_states=False, acting_query=acting_query)
    learner = meta_lib.make_meta_learner(cfg, DS, DA, 2, K, DA, query_prev_action,
                                         objective="bc", reward_range=(-1.0, 1.0))
    params = learner.init(jax.random.key(0)).policy.actor_params
    batch = _windows(jax.random.key(1))
    context = jnp.concatenate([batch.observations, batch.prev_actions], -1)   # (2, 32, K, D)
    query = context[:, :, 0]                          # the agent's token: not the newest one
    a = learner.act(params, {}, {}, query, context, batch.mask)
    z = context[:, :, -1, DS:] if acting_query == "window" else query[..., DS:]
    expected = jnp.tanh(meta_lib.TanhGaussianActor(SMALL.hidden_dims, DA, SMALL.log_std_min,
                                                   SMALL.log_std_max).apply(
        params, jnp.concatenate([query[..., :DS], z], -1))[0])
    np.testing.assert_allclose(np.asarray(a), np.asarray(expected), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(context[:, :, -1, DS:] - query[..., DS:]).max()) > 0.1


def test_sac_bc_without_context_equals_sac_bc_on_the_bare_states():
    # z of size 0 (a context-free SAC+BC) must train exactly like SAC+BC on s alone.
    cfg = MetaPolicyConfig(sac=SMALL, normalize_states=False)
    learner = meta_lib.make_meta_learner(cfg, DS, DA, 2, K, 0, meta_lib.no_context,
                                         reward_range=(-1.0, 2.0))
    state = learner.init(jax.random.key(2))
    batch = _windows(jax.random.key(3))
    new, _ = learner.update(state, {}, batch, jax.random.key(4))
    sac = make_sac(cfg.sac, DS, DA, q_weight=cfg.q_weight, bc_weight=cfg.bc_weight,
                   actor_entropy=cfg.actor_entropy, target_bounds=(-100.0, 200.0),
                   bc_on_mean=cfg.bc_on_mean)
    features, z = meta_lib.window_features(meta_lib.no_context, {}, {}, batch)
    assert z.shape == (64, 0) and features.observations.shape == (64, DS)
    ref, _ = sac.update(state.policy, features, jax.random.key(4))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                 new.policy, ref)


def _scaled(data, scale: float, shift: float):
    """The same dataset with every state (and next state) mapped to scale * s + shift."""
    tr = data.transitions
    return data.replace(transitions=tr.replace(
        observations=tr.observations * scale + shift,
        next_observations=tr.next_observations * scale + shift))


@pytest.mark.parametrize("normalize", [True, False])
def test_normalized_states_make_the_learner_blind_to_the_states_units(normalize):
    # With normalize_states, rescaling and shifting every state (stats computed from the data
    # each learner sees) leaves the whole SAC+BC update and the acting policy unchanged.
    prev_action = lambda f, t, query, tok, m: query[..., DS:]       # z ignores the states
    cfg = MetaPolicyConfig(sac=SMALL, normalize_states=normalize)
    results = []
    for scale, shift in ((1.0, 0.0), (50.0, -3.0)):
        data = _scaled(DATA, scale, shift)
        obs = np.asarray(data.transitions.observations).reshape(-1, DS)
        learner = meta_lib.make_meta_learner(cfg, DS, DA, 2, K, DA, prev_action,
                                             reward_range=(-1.0, 1.0),
                                             state_stats=(obs.mean(0), obs.std(0)))
        state = learner.init(jax.random.key(0))
        state, _ = jax.jit(learner.update)(state, {}, jax.vmap(
            lambda d, k: sample_context_windows(d, k, 32, K))(data, jax.random.split(
                jax.random.key(1), 2)), jax.random.key(2))
        batch = jax.vmap(lambda d, k: sample_context_windows(d, k, 32, K))(
            data, jax.random.split(jax.random.key(3), 2))
        tokens = jnp.concatenate([batch.observations, batch.prev_actions], -1)
        results.append(learner.act(state.policy.actor_params, {}, {}, tokens[:, :, -1],
                                   tokens, batch.mask))
    gap = float(jnp.abs(results[0] - results[1]).max())
    if normalize:
        assert gap < 1e-4, gap
    else:
        assert gap > 1e-2, gap


def test_normalize_states_needs_the_data_statistics():
    with pytest.raises(ValueError, match="state_stats"):
        meta_lib.make_meta_learner(MetaPolicyConfig(sac=SMALL, normalize_states=True), DS, DA,
                                   2, K, 0, meta_lib.no_context, reward_range=(-1.0, 1.0))
