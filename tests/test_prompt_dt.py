"""Prompt-DT: returns-to-go and timesteps, segment sampling, causal/padding masks, the masked
loss, warm-up, learning a prompt-identified task, and act() == the training prediction."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.baselines.prompt_dt import DTBatch, make_dt_data, make_prompt_dt, masked_mse
from reda_jax.data.stats import state_stats
from reda_jax.configs import PromptDTConfig
from reda_jax.envs.tasks import get_task_set
from reda_jax.eval import evaluate
from reda_jax.types import History

pytestmark = pytest.mark.timeout(300)

CFG = PromptDTConfig(embed_dim=16, num_layers=2, num_heads=2, ff_dim=32, dropout=0.1,
                     history=4, max_timestep=50, rtg_scale=10.0, learning_rate=3e-3,
                     weight_decay=1e-4, warmup_steps=10, grad_clip=1.0, segments_per_task=16,
                     updates_per_epoch=100)
K, DS, DA = 3, 4, 1        # obs / act dims of the inverted pendulum
MEAN, STD, TARGET = np.linspace(-1, 1, DS), np.linspace(0.5, 2, DS), 42.0


@functools.lru_cache(maxsize=None)
def shared():
    """One model for all tests (compiled once): (dt, jitted init, predict, loss, act vmapped
    over seeds)."""
    dt = make_prompt_dt(CFG, DS, DA, 2, K, MEAN, STD, TARGET)
    return (dt, jax.jit(dt.init), jax.jit(dt.predict), jax.jit(dt.loss),
            jax.jit(jax.vmap(dt.act)))


def seed_params(init, num_seeds):
    """Params of num_seeds seeds stacked on a leading axis."""
    ps = [init(jax.random.key(s)).params for s in range(num_seeds)]
    return jax.tree.map(lambda *x: jnp.stack(x), *ps)


def task_arrays(rewards, terminals, truncations, obs_dim=DS, act_dim=DA, code=0.0):
    """Row i: observations [i, code, ...], actions 0.1 * i + code, given rewards and ends."""
    n = len(rewards)
    rows = np.arange(n, dtype=np.float32)
    obs = np.zeros((n, obs_dim), np.float32)
    obs[:, 0], obs[:, 1] = rows, code
    return dict(observations=obs, actions=np.tile((0.1 * rows + code)[:, None], (1, act_dim)),
                rewards=np.asarray(rewards, np.float32), next_observations=obs + 1,
                terminals=np.asarray(terminals, np.float32),
                truncations=np.asarray(truncations, np.float32))


def test_rtg_and_timesteps_by_hand():
    """Task 0: episodes rows 0-2 (terminal), 3-4 (truncated), 5-6 (cut by the data's end);
    task 1: rows 0 (terminal), 1-2 (cut), padded to 7 rows with rtg 0 and timestep 0."""
    a = task_arrays([1, 2, 3, 4, 5, 6, 7], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0])
    b = task_arrays([10, 20, 30], [1, 0, 0], [0, 0, 0], code=5.0)
    data = make_dt_data([a, b])
    np.testing.assert_array_equal(data.rtg[0], [6, 5, 3, 9, 5, 13, 7])
    np.testing.assert_array_equal(data.timestep[0], [0, 1, 2, 0, 1, 0, 1])
    np.testing.assert_array_equal(data.rtg[1], [10, 50, 30, 0, 0, 0, 0])
    np.testing.assert_array_equal(data.timestep[1], [0, 0, 1, 0, 0, 0, 0])
    assert data.rtg.dtype == jnp.float32 and data.timestep.dtype == jnp.int32
    np.testing.assert_array_equal(data.dataset.size, [7, 3])
    np.testing.assert_array_equal(data.dataset.episode_start[0], [0, 0, 0, 3, 3, 5, 5])
    np.testing.assert_array_equal(data.dataset.transitions.observations[1, :3, 1], 5.0)
    mean, std = state_stats([a, b])
    obs = np.concatenate([a["observations"], b["observations"]])
    np.testing.assert_allclose(mean, obs.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, obs.std(0) + 1e-6, rtol=1e-6)


def episodic_arrays(rng, n, length, code, obs_dim=DS):
    """n rows, episodes of `length` (terminal ends; the last one cut), random rewards."""
    ends = (np.arange(n) % length) == length - 1
    return task_arrays(rng.normal(size=n), ends, np.zeros(n), obs_dim=obs_dim, code=code)


def test_segments_and_prompts_come_from_the_right_rows():
    rng = np.random.default_rng(0)
    arrays = [episodic_arrays(rng, 40, 6, 0.0), episodic_arrays(rng, 25, 4, 100.0)]
    data = make_dt_data(arrays)
    dt = make_prompt_dt(dataclasses.replace(CFG, segments_per_task=64), DS, DA, 2, K,
                        MEAN, STD, TARGET)
    b = jax.jit(dt.sample_batch)(data, jax.random.key(0))
    B, H = 128, CFG.history
    assert b.observations.shape == (B, H, DS) and b.prompt.shape == (B, K, DS + DA)
    assert b.timesteps.dtype == jnp.int32
    b = jax.tree.map(np.asarray, b)
    for i in range(B):
        t, length = (0, 6) if i < 64 else (1, 4)
        code = 100.0 * t
        end = int(b.observations[i, -1, 0])           # the segment's last row
        n_valid = min(H, end % length + 1)             # never crosses the episode start
        np.testing.assert_array_equal(b.mask[i], np.arange(H) >= H - n_valid)
        for j in range(H):
            row = end - (H - 1 - j)
            if b.mask[i, j]:
                assert b.observations[i, j, 0] == row and b.observations[i, j, 1] == code
                np.testing.assert_allclose(b.actions[i, j], 0.1 * row + code, rtol=1e-6)
                assert b.rtg[i, j] == pytest.approx(float(data.rtg[t, row]))
                assert b.timesteps[i, j] == row % length
            else:
                assert b.observations[i, j].sum() == 0 and b.rtg[i, j] == 0
                assert b.timesteps[i, j] == 0
        # the prompt: K tokens (s, a_prev) of the same task, right-aligned, its own draw
        assert b.prompt_mask[i, -1] == 1 and (b.prompt[i, b.prompt_mask[i] > 0, 1] == code).all()
        for j in range(K):
            if b.prompt_mask[i, j]:
                row = int(b.prompt[i, j, 0])
                prev = 0.0 if row % length == 0 else 0.1 * (row - 1) + code
                np.testing.assert_allclose(b.prompt[i, j, DS], prev, rtol=1e-6, atol=1e-6)
    assert len({int(x) for x in b.observations[:64, -1, 0]}) > 20
    assert not np.array_equal(b.prompt[:, -1, 0], b.observations[:, -1, 0])


def random_batch(key, B=3, H=CFG.history, ds=DS, da=DA):
    ks = jax.random.split(key, 5)
    mask = jnp.ones((B, H)).at[0, :2].set(0.0)                  # segment 0 starts late
    pmask = jnp.ones((B, K)).at[1, 0].set(0.0)                  # prompt 1 is left-padded
    return DTBatch(prompt=jax.random.normal(ks[0], (B, K, ds + da)), prompt_mask=pmask,
                   observations=jax.random.normal(ks[1], (B, H, ds)),
                   actions=jax.random.uniform(ks[2], (B, H, da), minval=-1, maxval=1),
                   rtg=jax.random.normal(ks[3], (B, H)) * 10,
                   timesteps=jax.random.randint(ks[4], (B, H), 0, 40), mask=mask)


def test_causal_and_padding_masks():
    _, init, pred, _, _ = shared()
    params = init(jax.random.key(1)).params
    batch = random_batch(jax.random.key(2))
    base = np.asarray(pred(params, batch))    # deterministic: no key, no dropout
    assert base.shape == (3, CFG.history, 1) and np.abs(base).max() < 1

    def changed(**fields):
        return np.abs(np.asarray(pred(params, batch.replace(**fields))) - base).max(-1)  # (B, H)

    # a_1 is read after s_1: steps 0 and 1 unchanged, later steps change
    d = changed(actions=batch.actions.at[:, 1].add(0.7))
    assert (d[1:, :2] == 0).all() and (d[1:, 2:] > 1e-7).all()
    # s_2, R_2 and the timestep of step 2 change step 2 on, never steps 0-1
    for field in (dict(observations=batch.observations.at[:, 2].add(1.0)),
                  dict(rtg=batch.rtg.at[:, 2].add(5.0)),
                  dict(timesteps=batch.timesteps.at[:, 2].add(3))):
        d = changed(**field)
        assert (d[:, :2] == 0).all() and (d[:, 2:] > 1e-7).all()
    # padded steps (segment 0, steps 0-1) and a padded prompt token change nothing
    d = changed(observations=batch.observations.at[0, :2].set(1e3),
                actions=batch.actions.at[0, :2].set(jnp.nan), rtg=batch.rtg.at[0, :2].set(1e4),
                timesteps=batch.timesteps.at[0, :2].set(7),
                prompt=batch.prompt.at[1, 0].set(jnp.nan))
    assert (d == 0).all()
    # the same padded rows carry real data when unmasked: then they matter
    assert (changed(mask=jnp.ones_like(batch.mask))[0, 2:] > 1e-7).all()
    # a valid prompt token changes every prediction (the whole prompt precedes step 0)
    d = changed(prompt=batch.prompt.at[:, -1].add(1.0))
    assert (d[batch.mask > 0] > 1e-7).all()
    # each segment is independent of the others in the batch
    d = changed(observations=batch.observations.at[2].add(1.0))
    assert (d[:2] == 0).all()
    # dropout (config.dropout 0.1) acts only when predict gets a key
    np.testing.assert_array_equal(pred(params, batch), base)
    assert not np.allclose(pred(params, batch, jax.random.key(3)), base)


def test_masked_loss_by_hand():
    pred = jnp.array([[[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.0], [0.0, 0.0]]])
    target = jnp.zeros((2, 2, 2)).at[1, 0].set(jnp.array([0.0, 1.0]))
    mask = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    # valid rows: (1, 2) vs 0 -> 1 + 4; (0.5, 0) vs (0, 1) -> 0.25 + 1; over 2 rows x 2 dims
    assert float(masked_mse(pred, target, mask)) == pytest.approx((5 + 1.25) / 4)
    # the model's loss: the mean over valid (step, dim) of the squared error, padding ignored
    _, init, pred, loss, _ = shared()
    params = init(jax.random.key(3)).params
    batch = random_batch(jax.random.key(4))
    p = np.asarray(pred(params, batch))
    m = np.asarray(batch.mask) > 0
    hand = ((p - np.asarray(batch.actions)) ** 2)[m].mean()
    assert float(loss(params, batch)) == pytest.approx(hand, rel=1e-5)
    other = batch.replace(actions=batch.actions.at[0, :2].set(5.0))   # padded targets
    assert float(loss(params, other)) == pytest.approx(hand, rel=1e-5)


def toy_tasks(rng, n=300, length=10):
    """Two tasks with constant actions +0.5 / -0.5, zero rewards and task-independent
    random states: only the prompt's prev_actions tell the task at an episode's start."""
    out = []
    for code in (0.5, -0.5):
        obs = rng.normal(size=(n, DS)).astype(np.float32)
        ends = (np.arange(n) % length) == length - 1
        out.append(dict(observations=obs, actions=np.full((n, DA), code, np.float32),
                        rewards=np.zeros(n, np.float32), next_observations=obs,
                        terminals=ends.astype(np.float32), truncations=np.zeros(n, np.float32)))
    return out


def test_training_learns_the_task_from_the_prompt():
    rng = np.random.default_rng(0)
    data = make_dt_data(toy_tasks(rng))
    dt, init, _, _, act = shared()
    state = init(jax.random.key(0))

    # evaluation: an episode's first step (only the current token valid), a random state,
    # and a full prompt of task i (prev_actions = its action)
    M, H = 64, CFG.history
    hist = History(tokens=np.zeros((1, M, H, DS + DA), np.float32),
                   mask=np.broadcast_to(np.arange(H) == H - 1, (1, M, H)).astype(np.float32),
                   returns_before=np.zeros((1, M, H), np.float32),
                   timesteps=np.zeros((1, M, H), np.int32))
    hist.tokens[0, :, -1, :DS] = rng.normal(size=(M, DS))

    def errors(params):
        errs = []
        for code in (0.5, -0.5):
            prompt = np.concatenate([rng.normal(size=(1, M, K, DS)),
                                     np.full((1, M, K, DA), code)], -1).astype(np.float32)
            a = act(jax.tree.map(lambda x: x[None], params), hist.tokens[:, :, -1], prompt,
                    np.ones((1, M, K), np.float32), hist)
            errs.append(np.abs(np.asarray(a) - code).mean())
        return np.array(errs)

    before = errors(state.params)
    epoch = jax.jit(dt.epoch)
    state, metrics = epoch(state, data, jax.random.key(10))
    # linear warm-up: lr * min((t + 1) / warmup_steps, 1)
    np.testing.assert_allclose(metrics["learning_rate"][:12],
                               3e-3 * np.minimum(np.arange(1, 13) / 10, 1), rtol=1e-6)
    first_loss = float(metrics["loss"][:10].mean())
    for e in range(2):
        state, metrics = epoch(state, data, jax.random.key(11 + e))
    after = errors(state.params)
    assert metrics["loss"].shape == metrics["grad_norm"].shape == (100,)
    assert int(state.step) == 300
    assert float(metrics["loss"][-10:].mean()) < 0.1 * first_loss, first_loss
    assert (after < 0.08).all() and (after < 0.25 * before).all(), (before, after)


def test_act_reproduces_the_training_prediction_and_vmaps_over_seeds():
    """hist built from a data segment (returns_before = target - rtg, tokens = (s_j, a_{j-1}))
    gives the model's training-time prediction at the segment's last step, per seed."""
    rng = np.random.default_rng(2)
    data = make_dt_data([episodic_arrays(rng, 50, 7, 0.0), episodic_arrays(rng, 50, 9, 3.0)])
    dt, init, pred, _, act = shared()
    S = 2
    params = seed_params(init, S)
    batch = jax.jit(dt.sample_batch)(data, jax.random.key(5))            # B = 16
    B, H = batch.mask.shape
    assert (np.asarray(batch.mask)[:, 0] == 0).any()                    # some padded segments
    prev = jnp.concatenate([jnp.asarray(rng.normal(size=(B, 1, DA)), jnp.float32),  # unused
                            batch.actions[:, :-1]], 1)
    hist = History(tokens=jnp.concatenate([batch.observations, prev], -1) * batch.mask[..., None],
                   mask=batch.mask, returns_before=(TARGET - batch.rtg) * batch.mask,
                   timesteps=batch.timesteps)
    tile = lambda x: jnp.broadcast_to(x, (S,) + x.shape)
    got = act(params, tile(hist.tokens[:, -1]), tile(batch.prompt), tile(batch.prompt_mask),
              jax.tree.map(tile, hist))
    assert got.shape == (S, B, DA)
    for s in range(S):
        p = jax.tree.map(lambda x: x[s], params)
        np.testing.assert_allclose(got[s], pred(p, batch)[:, -1], atol=1e-5)
    assert not np.allclose(got[0], got[1])                                # seeds differ


def test_act_inside_evaluate():
    """The evaluate loop's History feeds jit(vmap(act)): the first action of every env is
    act on a hand-built first-step history (current token only, return 0, timestep 0)."""
    tasks = get_task_set("inverted-pendulum-gravity").train_tasks           # obs 4, act 1
    _, init, _, _, act = shared()
    S, H, M = 2, CFG.history, len(tasks)
    params = seed_params(init, S)
    seen = []

    def act_fn(p, q, c, m, hist):
        a = np.asarray(act(p, q, c, m, hist))
        seen.append((np.array(q), np.array(c), np.array(m), a))
        return a

    res = evaluate(tasks, act_fn, params, S, K, "on_policy", 1, seed=0, max_steps=3, history=H)
    assert (res.lengths == 3).all() and len(seen) == 3
    q, c, m, a = seen[0]
    tokens = np.zeros((S, M, H, DS + DA), np.float32)
    tokens[:, :, -1] = q
    hist = History(tokens=tokens, mask=np.broadcast_to(np.arange(H) == H - 1, (S, M, H)) * 1.0,
                   returns_before=np.zeros((S, M, H), np.float32),
                   timesteps=np.zeros((S, M, H), np.int32))
    np.testing.assert_allclose(a, act(params, q, c, m, hist), atol=1e-6)
    assert not np.allclose(seen[1][3], a)  # the history (and the state) moved on
