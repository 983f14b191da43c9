"""ReDA's stages on a toy task family where the sign of the adversarial reward is visible.

Toy tasks: 2-d state, 2-d action, s' = s + 0.5 a + (0, g_i * 0.5 * [s_0 > 0]) with drifts
g = (-1, 0, 1). The task shows only where s_0 > 0; for s_0 < 0 all tasks are identical.
A uniform random rollout policy spends about half its steps in the informative region; an
adversary rewarded with the right sign (a lower InfoNCE score of the true task is a
reward) learns to steer into s_0 < 0, so the encoder identifies its rollouts' tasks less
often. With the sign flipped it would steer the other way.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax import configs
from reda_jax.algos import adversarial
from reda_jax.algos.dynamics_data import make_dynamics_data
from reda_jax.algos.reda import make_reda
from reda_jax.data.context import stack_datasets

GAINS = (-1.0, 0.0, 1.0)


def toy_data(gain: float, n: int = 6000, episode: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    obs = np.zeros((n, 2), np.float32)
    act = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    nxt = np.zeros_like(obs)
    s = rng.normal(size=2)
    for i in range(n):
        if i % episode == 0:
            s = rng.normal(size=2)
        obs[i] = s
        s = s + 0.5 * act[i] + np.array([0.0, gain * 0.5 * (s[0] > 0)])
        nxt[i] = s
    trunc = np.zeros(n, np.float32)
    trunc[episode - 1::episode] = 1.0
    return dict(observations=obs, actions=act, rewards=np.zeros(n, np.float32),
                next_observations=nxt, terminals=np.zeros(n, np.float32), truncations=trunc)


def toy_config(augmentation: str) -> configs.TrainConfig:
    small = configs.SACConfig(hidden_dims=(64, 64), batch_size=128)
    return configs.TrainConfig(
        num_seeds=1,
        dynamics=configs.DynamicsConfig(num_models=2, hidden_dims=(64, 64),
                                        weight_decay=(0.0, 0.0, 0.0),
                                        reward_hidden_dims=(64, 64), batch_size=256,
                                        max_epochs=15, patience=15),
        encoder=configs.EncoderConfig(ff_dim=64, batch_size=64),
        representation=configs.RepresentationConfig(
            augmentation=augmentation, num_epochs=16, encoder_updates=150,
            adversary_updates=200, rollout_batch=256, horizon=3, lambda1=0.0, lambda2=0.0,
            real_fraction=1.0, buffer_epochs=3, adversary=small),
    )


never = lambda o, a, n: jnp.zeros(n.shape[:-1], bool)


def train_toy_models(arrays, config):
    """Stage 1 on the toy data -> (reda, dynamics data, models, last metrics, (rows per
    dynamics ensemble, reward rows))."""
    dyn_data = make_dynamics_data(arrays, config.dynamics, seed=0)
    n_train = int(np.max(np.asarray(dyn_data.train_size)))
    reda = make_reda(config, 2, 2, len(GAINS), never, -(-n_train // 256),
                     -(-int(dyn_data.reward_train_size) // 256))
    models = reda.init_models(jax.random.key(0), dyn_data)
    epoch = jax.jit(reda.dynamics_epoch)
    for e in range(config.dynamics.max_epochs):
        models, metrics = epoch(models, dyn_data, jax.random.key(100 + e))
    return reda, dyn_data, models, metrics, (n_train, int(dyn_data.reward_train_size))


@pytest.fixture(scope="module")
def toy_models():
    arrays = [toy_data(g, seed=i) for i, g in enumerate(GAINS)]
    return (arrays,) + train_toy_models(arrays, toy_config("adversarial"))[1:]


def test_toy_dynamics_learn_each_tasks_gain(toy_models):
    arrays, dyn_data, models, metrics, _ = toy_models
    # Held-out one-step error far below the variance of the state change.
    var = np.asarray(dyn_data.holdout_targets).var(axis=1).mean(-1)     # (T,)
    mse = np.asarray(metrics["dynamics/holdout_mse"]).mean(-1)           # (T,)
    assert np.all(mse < 0.2 * var), (mse, var)


def _stage2(augmentation, toy_models, **rep):
    import dataclasses
    arrays, dyn_data, models, _, (n_train, n_rew) = toy_models
    config = toy_config(augmentation)
    config = dataclasses.replace(config, representation=dataclasses.replace(
        config.representation, **rep))
    reda = make_reda(config, 2, 2, len(GAINS), never, -(-n_train // 256), -(-n_rew // 256))
    data = stack_datasets(arrays)
    state = reda.init_representation(jax.random.key(1))
    epoch = jax.jit(reda.representation_epoch)
    accs = []
    for e in range(config.representation.num_epochs):
        state, m = epoch(state, models, data, jax.random.key(200 + e))
        accs.append(float(m["rollout/task_id_accuracy"]))
    a0 = reda.adversary.act(state.adversary.actor_params, data.transitions.observations[0, :500],
                            None, deterministic=True)[:, 0]
    return np.array(accs), float(a0.mean())


@pytest.mark.timeout(600)
def test_trained_adversary_lowers_task_identification_and_the_sign_matters(toy_models, monkeypatch):
    acc_random, _ = _stage2("random", toy_models)
    acc_adv, a0_adv = _stage2("adversarial", toy_models)
    flipped = adversarial.adversarial_reward
    monkeypatch.setattr(adversarial, "adversarial_reward", lambda scores: -flipped(scores))
    acc_flip, a0_flip = _stage2("adversarial", toy_models)
    late = lambda a: a[-4:].mean()
    # The encoder (trained on real windows only in all three runs) identifies random
    # rollouts well above chance (1/3) ...
    assert late(acc_random) > 0.55, acc_random
    # ... the adversary steers into the uninformative region s_0 < 0 and is identified
    # less often than a random policy; rewarded with the opposite sign it steers the
    # other way and is identified more often.
    assert a0_adv < -0.3 < 0.3 < a0_flip, (a0_adv, a0_flip)
    assert late(acc_adv) < late(acc_random) - 0.03, (acc_adv, acc_random)
    assert late(acc_flip) > late(acc_adv) + 0.1, (acc_flip, acc_adv)


@pytest.mark.timeout(600)
def test_reference_adversary_imitates_task_k_in_the_other_models(toy_models, monkeypatch):
    """adversary_reward='reference': rolled out in another task's model and rewarded for
    raising task k's score, the adversary also steers into s_0 < 0, where every task looks
    like task k; with the reward's sign flipped it steers into s_0 > 0, where the other
    task's drift gives it away."""
    _, a0 = _stage2("adversarial", toy_models, adversary_reward="reference")
    flipped = adversarial.imitation_reward
    monkeypatch.setattr(adversarial, "imitation_reward", lambda scores: -flipped(scores))
    _, a0_flip = _stage2("adversarial", toy_models, adversary_reward="reference")
    assert a0 < -0.3 < 0.3 < a0_flip, (a0, a0_flip)


def test_reference_adversary_rolls_out_in_the_other_tasks_models(toy_models):
    """The adversary's transitions for task k (its buffer, task-major) follow another
    task's drift where the task shows; with 'paper' they follow task k's own."""
    import dataclasses
    arrays, _, models, _, (n_train, n_rew) = toy_models
    own = {}
    for mode in ("paper", "reference"):
        config = toy_config("adversarial")
        config = dataclasses.replace(config, representation=dataclasses.replace(
            config.representation, adversary_reward=mode, encoder_updates=1,
            adversary_updates=1))
        reda = make_reda(config, 2, 2, len(GAINS), never, -(-n_train // 256), -(-n_rew // 256))
        state = reda.init_representation(jax.random.key(1))
        state, _ = jax.jit(reda.representation_epoch)(state, models, stack_datasets(arrays),
                                                       jax.random.key(5))
        n = config.representation.rollout_batch * config.representation.horizon
        tr = jax.tree.map(lambda x: np.asarray(x[:len(GAINS) * n]).reshape(
            (len(GAINS), n) + x.shape[1:]), state.adversary_buffer.data)
        ok = np.asarray(state.adversary_buffer.weights[:len(GAINS) * n]).reshape(len(GAINS), n)
        shares = []
        for k, g in enumerate(GAINS):
            rows = (ok[k] > 0) & (tr.observations[k][:, 0] > 0.3)
            drift = (tr.next_observations[k][rows, 1] - tr.observations[k][rows, 1]
                     - 0.5 * tr.actions[k][rows, 1])
            nearest = np.abs(drift[:, None] - 0.5 * np.array(GAINS)[None]).argmin(1)
            shares.append((nearest == k).mean())
        own[mode] = np.array(shares)
    assert np.all(own["paper"] > 0.8), own
    assert np.all(own["reference"] < 0.3), own


def _model_windows(toy_models, simulator=None, **rep):
    """One stage-2 epoch with a random rollout policy -> the stored model windows of each
    task: tokens (T, n, K, D), mask (T, n, K) (the rows pushed this epoch)."""
    import dataclasses
    arrays, dyn_data, models, _, (n_train, n_rew) = toy_models
    config = toy_config("random")
    config = dataclasses.replace(config, representation=dataclasses.replace(
        config.representation, encoder_updates=1, **rep))
    reda = make_reda(config, 2, 2, len(GAINS), never, -(-n_train // 256), -(-n_rew // 256),
                     simulator)
    state = reda.init_representation(jax.random.key(1))
    state, _ = jax.jit(reda.representation_epoch)(state, models, stack_datasets(arrays),
                                                   jax.random.key(5))
    n = config.representation.rollout_batch * config.representation.horizon
    (tokens, mask), w = state.model_windows.data, state.model_windows.weights
    keep = np.asarray(w[:, :n]) > 0
    return np.asarray(tokens[:, :n]), np.asarray(mask[:, :n]) * keep[..., None]


def _real_start_share(tokens, mask, arrays):
    """Per task: the share of stored windows with an unmasked token whose state is,
    bit for bit, a state of task j's data, for each j -> (T, T). Model states are
    continuous draws, so such a token is a rollout's real start token."""
    T = len(arrays)
    out = np.zeros((T, T))
    for k in range(T):
        for j, a in enumerate(arrays):
            real = {tuple(s) for s in a["observations"]}
            hit = [any(m > 0 and tuple(tok[:2]) in real for tok, m in zip(win, msk))
                   for win, msk in zip(tokens[k], mask[k])]
            out[k, j] = np.mean(hit)
    return out


def test_rollout_start_joint_draws_every_tasks_states_and_own_only_the_tasks(toy_models):
    arrays = toy_models[0]
    joint = _real_start_share(*_model_windows(toy_models), arrays)
    own = _real_start_share(*_model_windows(toy_models, rollout_start="own"), arrays)
    # With h = K = 3, windows ending at tokens 1 and 2 hold the start token: 2/3 of them.
    np.testing.assert_allclose(own.sum(1), 2 / 3, atol=0.01)
    np.testing.assert_allclose(np.diag(own), 2 / 3, atol=0.01)
    # 'joint': the start states come from each of the three tasks about equally often.
    np.testing.assert_allclose(joint, 2 / 9, atol=0.04)


def test_masked_start_token_leaves_no_real_token_in_the_model_windows(toy_models):
    arrays = toy_models[0]
    tokens, mask = _model_windows(toy_models, start_token="masked")
    assert _real_start_share(tokens, mask, arrays).max() == 0.0
    assert np.all(tokens[mask == 0] == 0.0)           # masked positions are zeroed too
    # What remains are the model's own tokens: windows ending at token 1 keep one.
    assert set(mask.sum(-1)[mask.sum(-1) > 0].astype(int).tolist()) == {1, 2, 3}


def test_mean_model_transitions_leave_out_the_models_noise(toy_models):
    """Consecutive model tokens: s_{t+1} - s_t - 0.5 a_t is the task drift plus the model's
    error; a member's mean removes the sampling noise, so the residual varies less."""
    def residual_var(**rep):
        tokens, mask = _model_windows(toy_models, **rep)
        both = (mask[..., 1:] > 0) & (mask[..., :-1] > 0)
        ds = tokens[..., 1:, :2] - tokens[..., :-1, :2] - 0.5 * tokens[..., 1:, 2:]
        return ds[..., 0][both].var()      # dimension 0 carries no drift in any task
    sampled, mean = residual_var(), residual_var(model_transition="mean")
    assert mean < 0.5 * sampled, (mean, sampled)


def test_simulator_rollout_physics_steps_every_task_in_its_own_physics(toy_models):
    """rollout_physics='simulator': the model windows follow the given physics (here a fake
    one whose drift, 3 (k + 1) in dimension 1, no learned model would produce), task k's
    in task k's windows, without the models' noise."""
    sim = lambda task, o, a: o + 0.5 * a + jnp.stack(
        [jnp.zeros(o.shape[:-1]), 3.0 * (jnp.asarray(task) + 1.0) * jnp.ones(o.shape[:-1])], -1)
    tokens, mask = _model_windows(toy_models, simulator=sim, rollout_physics="simulator")
    both = (mask[..., 1:] > 0) & (mask[..., :-1] > 0)
    drift = tokens[..., 1:, :2] - tokens[..., :-1, :2] - 0.5 * tokens[..., 1:, 2:]
    for k in range(len(GAINS)):
        assert both[k].sum() > 100
        d = drift[k][both[k]]
        np.testing.assert_allclose(d, np.broadcast_to([0.0, 3.0 * (k + 1)], d.shape), atol=1e-4)
    with pytest.raises(ValueError, match="simulator step"):
        _model_windows(toy_models, rollout_physics="simulator")


def test_uncertainty_quantile_keeps_the_more_certain_windows(toy_models):
    """u(s, a) per rollout step from the toy ensembles; a window is kept when the largest
    u of its rollout so far is within the epoch's quantile. Keeping the quantile-q part
    of the steps keeps at most that share of windows, fewer for a smaller q, and a window
    is never kept when an earlier window of its rollout was dropped."""
    counts = {}
    for q in (1.0, 0.5, 0.25):
        tokens, mask = _model_windows(toy_models, uncertainty_quantile=q)
        kept = mask.sum(-1) > 0                              # (T, R * h), rollout-major
        counts[q] = int(kept.sum())
        by_step = kept.reshape(kept.shape[0], -1, 3)         # (T, R, h)
        assert np.all(by_step[..., 1:] <= by_step[..., :-1])
    assert counts[1.0] > 0
    assert counts[0.25] < counts[0.5] <= 0.55 * counts[1.0], counts


def test_pooled_task_models_learn_every_tasks_drift_from_one_ensemble():
    """'pooled': one ensemble on all tasks' rows with a one-hot of the task appended to
    the input. The data carry task k's one-hot on task k's rows only, and task k's model
    (the ensemble given task k) predicts task k's drift 0.5 g_k where the task shows."""
    import dataclasses
    arrays = [toy_data(g, n=3000, seed=i) for i, g in enumerate(GAINS)]
    config = toy_config("random")
    config = dataclasses.replace(config, dynamics=dataclasses.replace(
        config.dynamics, task_models="pooled", max_epochs=20))
    reda, data, models, _, _ = train_toy_models(arrays, config)
    n = int(data.train_size[0])
    assert data.inputs.shape == (1, n, 2 + 2 + 3) and data.train_size.shape == (1,)
    assert n + int(data.holdout_size[0]) == 3 * 3000
    x, y = np.asarray(data.inputs[0]), np.asarray(data.targets[0])
    onehot = x[:, 4:]
    assert np.all(onehot.sum(1) == 1.0)
    drift = y[:, 1] - 0.5 * x[:, 3]                     # = 0.5 g_k where s_0 > 0
    for k, g in enumerate(GAINS):
        rows = (onehot[:, k] == 1) & (x[:, 0] > 0)
        np.testing.assert_allclose(drift[rows], 0.5 * g, atol=1e-5)

    # Task k's rows where the task shows (away from the step at s_0 = 0, which a smooth
    # network blurs): the pooled model given task k predicts a drift nearer 0.5 g_k than
    # any other task's, and given any other task it explains these rows worse.
    for k, g in enumerate(GAINS):
        a = arrays[k]
        rows = a["observations"][:, 0] > 0.3
        obs, act = a["observations"][rows], a["actions"][rows]
        errors, drifts = [], []
        for j in range(len(GAINS)):
            mean, _ = reda.task_models.next_state(models.dynamics, j, obs, act)  # (E, n, 2)
            mean = np.asarray(mean).mean(0)
            errors.append(((mean - a["next_observations"][rows]) ** 2).sum(-1).mean())
            drifts.append((mean[:, 1] - obs[:, 1] - 0.5 * act[:, 1]).mean())
        assert np.argmin(np.abs(drifts[k] - 0.5 * np.array(GAINS))) == k, (k, drifts)
        assert np.argmin(errors) == k and sorted(errors)[1] > 3 * errors[k], (k, errors)
