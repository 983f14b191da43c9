"""Evaluation protocols: returns vs hand-stepped envs, on-/off-policy windows, summaries."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.data.context import make_device_dataset
from reda_jax.envs.tasks import get_task_set
from reda_jax.eval import EvalResult, env_seed, evaluate, format_table, summarize
from reda_jax.types import History

pytestmark = pytest.mark.timeout(300)

PENDULUM = get_task_set("inverted-pendulum-gravity")  # obs 4, act 1; tasks x1.0, x2.0
HOPPER = get_task_set("hopper-gravity")


class Recorder:
    """A host act_fn that copies its inputs and returns known, step- and env-dependent
    actions (small, so the pendulum stays up)."""

    def __init__(self, act_dim):
        self.act_dim = act_dim
        self.queries, self.contexts, self.masks, self.actions = [], [], [], []

    def __call__(self, params, query, context, mask):
        n = len(self.queries)
        s, m, _ = query.shape
        self.queries.append(np.array(query))
        self.contexts.append(np.array(context))
        self.masks.append(np.array(mask))
        idx = np.arange(s * m * self.act_dim, dtype=np.float32).reshape(s, m, self.act_dim)
        a = (0.05 * np.sin(1.3 * n + idx)).astype(np.float32)
        self.actions.append(a)
        return a


def replay_observations(task, reset_seed, actions):
    """Observations (float32) of an env reset with reset_seed and driven by actions."""
    env = task.make_env()
    obs = [np.float32(env.reset(seed=reset_seed)[0])]
    for a in actions[:-1]:
        obs.append(np.float32(env.step(a)[0]))
    return np.stack(obs)


# (task set, features f(obs) of act_dim, per-seed gains): a = clip(g_s * f(obs), -1, 1).
HAND_CASES = {
    # Hopper: falls after ~57 steps / survives past 120
    "hopper": (HOPPER, lambda o: o[..., 1:4], [2.0, -0.5]),
    # InvertedPendulum: pushing the cart away from the tilt drops the pole within a few
    # dozen steps; towards it (angle + 0.1 angular velocity) keeps it up past the cut
    "inverted-pendulum": (PENDULUM, lambda o: o[..., 1:2] + 0.1 * o[..., 3:4], [-2.0, 3.0]),
}


@pytest.mark.parametrize("case", sorted(HAND_CASES))
def test_returns_equal_hand_stepped_envs(case):
    """A known jitted policy a = clip(g_s * obs[...]): evaluate's returns and lengths equal
    stepping one gymnasium env per episode by hand from the same reset seed, exactly (==);
    episodes end at termination or max_steps, and a finished env adds no reward."""
    task_set, features, gains = HAND_CASES[case]
    tasks = task_set.train_tasks[:2]
    gains = np.array(gains, np.float32)
    max_steps, E = 120, 3

    @jax.jit
    def act(g, q, c, m):
        return jnp.clip(g[:, None, None] * features(q), -1.0, 1.0)

    res = evaluate(tasks, act, jnp.asarray(gains), 2, 3, "on_policy", E, seed=7,
                   max_steps=max_steps)
    assert res.returns.shape == res.lengths.shape == (2, 2, E)
    assert res.returns.dtype == np.float64
    assert res.task_names == tuple(t.name for t in tasks) and res.protocol == "on_policy"
    np.testing.assert_array_equal(
        res.env_seeds, [[env_seed(7, t, e) for e in range(E)] for t in range(2)])
    assert len(np.unique(res.env_seeds)) == 2 * E

    hand_ret, hand_len = np.zeros((2, 2, E)), np.zeros((2, 2, E), int)
    for s, g in enumerate(gains):
        for t, task in enumerate(tasks):
            for e in range(E):
                env = task.make_env()
                obs, _ = env.reset(seed=int(res.env_seeds[t, e]))
                while True:
                    a = np.clip(g * features(np.float32(obs)), -1.0, 1.0)
                    obs, r, term, trunc, _ = env.step(a)
                    hand_ret[s, t, e] += r
                    hand_len[s, t, e] += 1
                    if term or trunc or hand_len[s, t, e] == max_steps:
                        break
    np.testing.assert_array_equal(res.lengths, hand_len)
    np.testing.assert_array_equal(res.returns, hand_ret)
    assert res.env_steps == hand_len.sum()
    # both kinds of episode ends happen in one batch: early terminations and the cut
    assert (res.lengths[0] < 80).all() and (res.lengths[1] == max_steps).all()
    assert res.wall_time_s > 0


def test_reused_simulators_give_the_same_results():
    """Simulators passed back to evaluate: a call after one with other reset seeds and
    longer episodes returns exactly what the first call returned (every simulator is reset
    in full); simulators of other sizes or tasks are refused."""
    from reda_jax.eval.protocols import make_simulators
    tasks = HOPPER.all_tasks[1:3]
    act = jax.jit(lambda g, q, c, m: jnp.clip(g[:, None, None] * q[..., 1:4], -1.0, 1.0))
    gains = jnp.asarray([1.0, -0.5], jnp.float32)
    sims = make_simulators(tasks, 2, 2)
    first = evaluate(tasks, act, gains, 2, 2, "on_policy", 2, seed=11, max_steps=30)
    other = evaluate(tasks, act, gains, 2, 2, "on_policy", 2, seed=12, max_steps=60,
                     simulators=sims)
    again = evaluate(tasks, act, gains, 2, 2, "on_policy", 2, seed=11, max_steps=30,
                     simulators=sims)
    assert not np.array_equal(other.returns, first.returns)
    np.testing.assert_array_equal(again.returns, first.returns)
    np.testing.assert_array_equal(again.lengths, first.lengths)
    with pytest.raises(ValueError, match="simulators were made for"):
        evaluate(tasks, act, gains, 2, 2, "on_policy", 3, seed=11, max_steps=30,
                 simulators=sims)
    with pytest.raises(ValueError, match="simulators were made for"):
        evaluate(HOPPER.all_tasks[0:2], act, gains, 2, 2, "on_policy", 2, seed=11,
                 max_steps=30, simulators=sims)


def test_on_policy_window_is_the_episode_so_far():
    """Context = the policy's last K tokens (s_t, a_{t-1}) right-aligned with the current
    token at K-1; mask grows by one per step from 1 at the episode start up to K; a_{t-1}
    is the previous action (0 at the start); observations are the env's."""
    K, S, E, steps = 3, 2, 2, 7
    tasks = PENDULUM.train_tasks
    rec = Recorder(act_dim=1)
    res = evaluate(tasks, rec, jnp.zeros((S, 1)), S, K, "on_policy", E, seed=3,
                   max_steps=steps)
    assert (res.lengths == steps).all()  # small actions: the pendulum stays up
    assert len(rec.queries) == steps  # one act_fn call per env step, all envs at once
    q, c, m, a = map(np.stack, (rec.queries, rec.contexts, rec.masks, rec.actions))
    M = len(tasks) * E
    assert q.shape == (steps, S, M, 5) and c.shape == (steps, S, M, K, 5)
    assert m.shape == (steps, S, M, K)
    for n in range(steps):
        expected_mask = (np.arange(K) >= K - 1 - n).astype(np.float32)
        np.testing.assert_array_equal(m[n], np.broadcast_to(expected_mask, (S, M, K)))
        np.testing.assert_array_equal(c[n][:, :, -1], q[n])  # current token at K-1
        for k in range(K):
            lag = K - 1 - k
            if lag <= n:
                np.testing.assert_array_equal(c[n][:, :, k], q[n - lag])
            else:
                assert (c[n][:, :, k] == 0).all()
        prev = np.zeros((S, M, 1)) if n == 0 else a[n - 1]
        np.testing.assert_array_equal(q[n][..., 4:], prev)
    # the observation part is the env's own trajectory from the reset seed
    for s in range(S):
        for t, task in enumerate(tasks):
            for e in range(E):
                mi = t * E + e
                obs = replay_observations(task, int(res.env_seeds[t, e]), a[:, s, mi])
                np.testing.assert_array_equal(q[:, s, mi, :4], obs)
    # every policy seed starts from the same states; episodes of a task start differently
    np.testing.assert_array_equal(q[0, 0], q[0, 1])
    assert not np.array_equal(q[0, 0, 0], q[0, 0, 1])


def test_transition_tokens_carry_the_previous_step():
    """token='transition': (s_t, a_{t-1}, r_{t-1}, s_{t-1}); the first five columns are the
    state token's, the reward is the env's (1 per step alive on the pendulum) and s_{t-1} the
    previous query's state; zeros at the episode start."""
    K, S, E, steps = 2, 1, 2, 5
    tasks = PENDULUM.train_tasks
    runs = {}
    for token in ("state", "transition"):
        rec = Recorder(act_dim=1)
        evaluate(tasks, rec, jnp.zeros((S, 1)), S, K, "on_policy", E, seed=3, max_steps=steps,
                 token=token)
        runs[token] = np.stack(rec.queries), np.stack(rec.contexts)
    q, c = runs["transition"]
    assert q.shape[-1] == 2 * 4 + 1 + 1 and c.shape[-1] == 10
    np.testing.assert_array_equal(q[..., :5], runs["state"][0])
    np.testing.assert_array_equal(c[:, :, :, -1], q)
    assert (q[0, ..., 5:] == 0).all()
    for n in range(1, steps):
        assert (q[n, ..., 5] == 1.0).all()
        np.testing.assert_array_equal(q[n, ..., 6:], q[n - 1, ..., :4])


def make_test_data(task_code, n=60, lengths=(1, 2, 5, 12, 40)):
    """Rows whose observations encode (row index, task code, step in episode, 0) and whose
    actions are 0.01 * row + task code; episodes of the given lengths (terminal ends)."""
    rows, steps, ends = [], [], []
    while len(rows) < n:
        for L in lengths:
            for k in range(L):
                rows.append(len(rows))
                steps.append(k)
                ends.append(k == L - 1)
    rows, steps, ends = (np.asarray(x[:n]) for x in (rows, steps, ends))
    ends[-1] = True
    obs = np.stack([rows, np.full(n, task_code), steps, np.zeros(n)], 1).astype(np.float32)
    return dict(observations=obs, actions=(0.01 * rows + task_code)[:, None].astype(np.float32),
                rewards=np.zeros(n, np.float32), next_observations=obs + 1,
                terminals=ends, truncations=np.zeros(n, bool))


def test_off_policy_context_is_a_fixed_window_of_the_tasks_test_data():
    K, S, E, steps = 4, 2, 3, 5
    tasks = PENDULUM.train_tasks
    data = {tasks[0].name: make_test_data(100.0),                       # a dict of arrays
            tasks[1].name: make_device_dataset(make_test_data(200.0)),  # a DeviceDataset
            "other_task": make_test_data(300.0)}
    rec = Recorder(act_dim=1)
    res = evaluate(tasks, rec, {"w": jnp.zeros((S, 2))}, S, K, "off_policy", E, seed=5,
                   max_steps=steps, context_data=data)
    assert (res.lengths == steps).all() and len(rec.contexts) == steps
    c, m, q, a = (np.stack(x) for x in (rec.contexts, rec.masks, rec.queries, rec.actions))
    # fixed for the whole episode
    assert (c == c[0]).all() and (m == m[0]).all()
    c, m = c[0], m[0]
    assert c.shape == (S, len(tasks) * E, K, 5) and m.shape == (S, len(tasks) * E, K)
    for t, task in enumerate(tasks):
        d = make_test_data(100.0 * (t + 1))
        ends = np.zeros((S, E), int)
        for s in range(S):
            for e in range(E):
                ctx, mk = c[s, t * E + e], m[s, t * E + e]
                r = int(ctx[-1, 0])  # the window's end row
                ends[s, e] = r
                step = int(d["observations"][r, 2])
                n_valid = min(K, step + 1)  # full unless the episode started inside it
                np.testing.assert_array_equal(mk, np.arange(K) >= K - n_valid)
                for k in range(K):
                    row = r - (K - 1 - k)
                    if mk[k]:
                        np.testing.assert_array_equal(ctx[k, :4], d["observations"][row])
                        prev = d["actions"][row - 1] if d["observations"][row, 2] > 0 else 0.0
                        np.testing.assert_array_equal(ctx[k, 4:], prev)
                    else:
                        assert (ctx[k] == 0).all()
        # the draws differ across policy seeds and across episodes
        assert not np.array_equal(ends[0], ends[1])
        assert all(len(set(row)) > 1 for row in ends)
    # the query is the current on-policy token (s_t, a_{t-1})
    np.testing.assert_array_equal(q[0][..., 4:], 0.0)
    for n in range(1, steps):
        np.testing.assert_array_equal(q[n][..., 4:], a[n - 1])
    obs = replay_observations(tasks[1], int(res.env_seeds[1, 2]), a[:, 1, 5])
    np.testing.assert_array_equal(q[:, 1, 5, :4], obs)
    # seeded: the same seed draws the same windows, another seed other windows
    again, other = Recorder(1), Recorder(1)
    evaluate(tasks, again, None, S, K, "off_policy", E, seed=5, max_steps=1, context_data=data)
    evaluate(tasks, other, None, S, K, "off_policy", E, seed=6, max_steps=1, context_data=data)
    np.testing.assert_array_equal(np.asarray(again.contexts[0]), c)
    assert not np.array_equal(np.asarray(other.contexts[0]), c)


class HistRecorder(Recorder):
    """A Recorder that also takes and copies the own-history argument."""

    def __init__(self, act_dim):
        super().__init__(act_dim)
        self.hists = []

    def __call__(self, params, query, context, mask, hist):
        assert isinstance(hist, History)
        self.hists.append(History(*(np.array(x) for x in hist)))
        return super().__call__(params, query, context, mask)


def replay_rewards(task, reset_seed, actions):
    """Rewards (float64) of an env reset with reset_seed and driven by actions."""
    env = task.make_env()
    env.reset(seed=reset_seed)
    return np.array([env.step(a)[1] for a in actions], np.float64)


def check_history(rec, res, tasks, E, H):
    """Every recorded History against the queries, actions and hand-replayed rewards: step
    n - lag at position H-1-lag (zeros, mask 0 before the episode start)."""
    q, a = np.stack(rec.queries), np.stack(rec.actions)
    steps, S, M = q.shape[:3]
    for n, hist in enumerate(rec.hists):
        assert hist.tokens.shape == (S, M, H, q.shape[-1]) and hist.tokens.dtype == np.float32
        assert hist.mask.shape == hist.returns_before.shape == hist.timesteps.shape == (S, M, H)
        assert hist.mask.dtype == hist.returns_before.dtype == np.float32
        assert hist.timesteps.dtype == np.int32
        np.testing.assert_array_equal(hist.tokens[:, :, -1], q[n])  # the current token
        for k in range(H):
            lag = H - 1 - k
            valid = lag <= n
            np.testing.assert_array_equal(hist.mask[:, :, k], float(valid))
            np.testing.assert_array_equal(hist.timesteps[:, :, k], n - lag if valid else 0)
            if valid:
                np.testing.assert_array_equal(hist.tokens[:, :, k], q[n - lag])
            else:
                assert (hist.tokens[:, :, k] == 0).all()
                assert (hist.returns_before[:, :, k] == 0).all()
    for s in range(S):
        for t, task in enumerate(tasks):
            for e in range(E):
                m = t * E + e
                r = replay_rewards(task, int(res.env_seeds[t, e]), a[:, s, m])
                before = np.concatenate([[0.0], np.cumsum(r)[:-1]])  # return before step j
                assert len(set(np.round(r, 6))) > 1  # rewards vary: not a step counter
                for n, hist in enumerate(rec.hists):
                    for k in range(max(0, H - 1 - n), H):
                        np.testing.assert_allclose(hist.returns_before[s, m, k],
                                                   before[n - (H - 1 - k)], rtol=1e-6)


def test_history_on_policy_equals_the_context_when_h_equals_k():
    """history = K: hist.tokens / mask are exactly the on-policy context and mask at every
    step; returns_before is the return collected before each step (hopper rewards vary),
    timesteps the step index; the history is passed as a fifth act_fn argument."""
    K, S, E, steps = 4, 2, 1, 7
    tasks = HOPPER.train_tasks[:2]
    rec = HistRecorder(act_dim=3)
    res = evaluate(tasks, rec, jnp.zeros((S, 1)), S, K, "on_policy", E, seed=4,
                   max_steps=steps, history=K)
    assert (res.lengths == steps).all() and len(rec.hists) == steps
    for hist, c, m in zip(rec.hists, rec.contexts, rec.masks):
        np.testing.assert_array_equal(hist.tokens, c)
        np.testing.assert_array_equal(hist.mask, m)
    check_history(rec, res, tasks, E, K)
    # the last step's history by hand for one env: returns before steps 3..6
    r = replay_rewards(tasks[1], int(res.env_seeds[1, 0]), np.stack(rec.actions)[:, 0, 1])
    np.testing.assert_allclose(rec.hists[-1].returns_before[0, 1],
                               [r[:3].sum(), r[:4].sum(), r[:5].sum(), r[:6].sum()], rtol=1e-6)
    np.testing.assert_array_equal(rec.hists[-1].timesteps[0, 1], [3, 4, 5, 6])


def test_history_is_the_own_episode_in_the_off_policy_protocol():
    """Off-policy with H > K: the context stays the fixed data window while hist holds the
    env's own last H steps (longer than the episode so far: left padding)."""
    K, H, S, E, steps = 2, 5, 2, 2, 4
    tasks = HOPPER.train_tasks[:2]
    D = 11 + 3
    data = {}
    for t, task in enumerate(tasks):
        d = make_test_data(100.0 * (t + 1))
        d["observations"] = np.tile(d["observations"], (1, 3))[:, :11]
        d["next_observations"] = d["observations"] + 1
        d["actions"] = np.tile(d["actions"], (1, 3))
        data[task.name] = d
    rec = HistRecorder(act_dim=3)
    res = evaluate(tasks, rec, None, S, K, "off_policy", E, seed=2, max_steps=steps,
                   context_data=data, history=H)
    assert (res.lengths == steps).all()
    c = np.stack(rec.contexts)
    assert c.shape == (steps, S, len(tasks) * E, K, D) and (c == c[0]).all()
    assert rec.hists[-1].mask[0, 0].tolist() == [0, 1, 1, 1, 1]
    check_history(rec, res, tasks, E, H)


def test_errors():
    tasks = PENDULUM.train_tasks
    ok = lambda p, q, c, m: np.zeros(q.shape[:2] + (1,), np.float32)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(tasks, ok, None, 1, 2, "iid", 1, 0, max_steps=2)
    with pytest.raises(ValueError, match="context_data"):
        evaluate(tasks, ok, None, 1, 2, "off_policy", 1, 0, max_steps=2)
    with pytest.raises(ValueError, match="gravity_x2.0"):
        evaluate(tasks, ok, None, 1, 2, "off_policy", 1, 0, max_steps=2,
                 context_data={tasks[0].name: make_test_data(1.0)})
    with pytest.raises(ValueError, match="shape"):
        evaluate(tasks, lambda p, q, c, m: q[..., :1].reshape(-1, 1), None, 2, 2, "on_policy",
                 1, 0, max_steps=2)
    with pytest.raises(ValueError, match="history"):
        evaluate(tasks, ok, None, 1, 2, "on_policy", 1, 0, max_steps=2, history=-1)
    with pytest.raises(ValueError, match="leading seed axis"):
        evaluate(tasks, ok, jnp.zeros((3, 4)), 2, 2, "on_policy", 1, 0, max_steps=2)
    with pytest.raises(ValueError, match="one family"):
        evaluate([tasks[0], HOPPER.train_tasks[0]], ok, None, 1, 2, "on_policy", 1, 0,
                 max_steps=2)


def test_summarize_and_table_by_hand():
    returns = np.array([[[1.0, 3.0], [10.0, 20.0], [0.0, 4.0]],
                        [[5.0, 5.0], [30.0, 30.0], [8.0, 8.0]]])  # (S=2, T=3, E=2)
    res = EvalResult(returns=returns, lengths=np.full((2, 3, 2), 7), task_names=("a", "b", "c"),
                     protocol="on_policy", env_seeds=np.zeros((3, 2), np.int64), env_steps=84,
                     wall_time_s=1.0)
    s = summarize(res, train_task_names=["a", "b"])
    json.dumps(s)
    # per seed: a (2, 5), b (15, 30), c (2, 8)
    assert s["tasks"]["a"] == {"mean": 3.5, "std": 1.5, "per_seed": [2.0, 5.0], "mean_length": 7.0}
    assert s["tasks"]["b"]["mean"] == 22.5 and s["tasks"]["b"]["std"] == 7.5
    assert s["tasks"]["c"]["mean"] == 5.0 and s["tasks"]["c"]["std"] == 3.0
    assert s["train_tasks"]["per_seed"] == [8.5, 17.5]  # (2+15)/2, (5+30)/2
    assert s["train_tasks"]["mean"] == 13.0 and s["train_tasks"]["std"] == 4.5
    assert s["unseen_tasks"]["per_seed"] == [2.0, 8.0]
    assert s["all_tasks"]["per_seed"] == [19 / 3, 43 / 3]
    assert s["mean_return"] == pytest.approx(31 / 3) and s["std_return"] == pytest.approx(4.0)
    assert "train_tasks" not in summarize(res)
    off = summarize(EvalResult(returns[:, :2], np.ones((2, 2, 2)), ("a", "b"), "off_policy",
                               np.zeros((2, 2), np.int64), 8, 1.0))
    table = format_table({"on_policy": s, "off_policy": off})
    lines = table.splitlines()
    assert lines[0] == "| task | on_policy | off_policy |"
    assert "| a | 3.5 ± 1.5 | 3.5 ± 1.5 |" in lines
    assert "| c | 5.0 ± 3.0 | - |" in lines
    assert "| train tasks (avg) | 13.0 ± 4.5 | - |" in lines
    assert "| all tasks (avg) | 10.3 ± 4.0 | 13.0 ± 4.5 |" in lines
