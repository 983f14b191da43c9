"""Tests for reda_jax.data.context: device datasets and context-window sampling."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.data.context import (DeviceDataset, make_device_dataset, sample_context_windows,
                                   sample_transitions, stack_datasets, take_previous)
from reda_jax.types import ContextBatch, Transitions

K = 4
# episode lengths: 5 (terminal), 2 (truncation, shorter than K), 9 (truncation),
# 1 (terminal, shorter than K), 4 (terminal, exactly K)
LENGTHS = (5, 2, 9, 1, 4)
ENDS = ("term", "trunc", "trunc", "term", "term")


def hand_built(lengths=LENGTHS, ends=ENDS, offset=0.0):
    """Row i has reward i+1 (0 marks padding), observations [i, episode, step + offset],
    actions [i + 0.5, -i]; next_observations continue the episode, or are a distinct
    'terminal' observation at an episode's last step."""
    obs, nobs, act, rew, term, trunc, ep_of, start_of = [], [], [], [], [], [], [], []
    i = 0
    for e, (L, end) in enumerate(zip(lengths, ends)):
        s0 = i
        for s in range(L):
            obs.append([i, e, s])
            nobs.append([i + 1, e, s + 1] if s < L - 1 else [1000 + i, e, -1])
            act.append([i + 0.5, -i])
            rew.append(i + 1)
            term.append(end == "term" and s == L - 1)
            trunc.append(end == "trunc" and s == L - 1)
            ep_of.append(e)
            start_of.append(s0)
            i += 1
    f = lambda x: np.asarray(x, np.float32)
    shift = np.asarray([0, 0, offset], np.float32)  # marks which task a row comes from
    tr = Transitions(observations=f(obs) + shift, actions=f(act), rewards=f(rew),
                     next_observations=f(nobs) + shift, terminals=f(term),
                     truncations=f(trunc))
    return tr, np.asarray(ep_of), np.asarray(start_of)


def check_windows(cb: ContextBatch, tr: Transitions, ep_of, start_of, window=K):
    """Checks every window against the hand-built data; returns the end indices."""
    cb = jax.tree.map(np.asarray, cb)
    n = len(ep_of)
    mask = cb.mask
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    assert (mask[:, -1] == 1).all()
    t = cb.rewards[:, -1].astype(int) - 1                      # end index of each window
    assert ((t >= 0) & (t < n)).all()
    idx = t[:, None] + np.arange(1 - window, 1)[None, :]       # expected source rows
    expected_mask = idx >= start_of[t][:, None]
    np.testing.assert_array_equal(mask, expected_mask.astype(np.float32))
    m = expected_mask
    src = np.where(m, idx, 0)
    # contents: real rows are exactly the source rows, padding is exactly zero
    for name, data in (("observations", tr.observations), ("actions", tr.actions),
                       ("next_observations", tr.next_observations),
                       ("rewards", tr.rewards), ("terminals", tr.terminals)):
        got = getattr(cb, name)
        want = np.where(m.reshape(m.shape + (1,) * (got.ndim - 2)), np.asarray(data)[src], 0)
        np.testing.assert_array_equal(got, want, err_msg=name)
    # same episode as the end index, contiguous steps
    assert (cb.observations[..., 1][m] == ep_of[t][:, None].repeat(window, 1)[m]).all()
    steps = cb.observations[..., 0]
    both = m[:, :-1] & m[:, 1:]
    assert (np.diff(steps, axis=1)[both] == 1).all()
    # next_observations[k] == observations[k+1] inside a window
    np.testing.assert_array_equal(cb.next_observations[:, :-1][both], cb.observations[:, 1:][both])
    # prev_actions: previous row's action in the same episode, zero at the episode start
    first = src == start_of[t][:, None]
    want_prev = np.where((m & ~first)[..., None], np.asarray(tr.actions)[np.maximum(src - 1, 0)], 0)
    np.testing.assert_array_equal(cb.prev_actions, want_prev)
    np.testing.assert_array_equal(cb.prev_actions[:, 1:][both], cb.actions[:, :-1][both])
    # prev_rewards / prev_observations likewise (the transition that led to the row's state)
    np.testing.assert_array_equal(cb.prev_rewards[:, 1:][both], cb.rewards[:, :-1][both])
    np.testing.assert_array_equal(cb.prev_observations[:, 1:][both],
                                  cb.observations[:, :-1][both])
    assert (cb.prev_rewards[first | ~m] == 0).all()
    assert (cb.prev_observations[first | ~m] == 0).all()
    return t


@pytest.mark.timeout(60)
def test_make_device_dataset_precompute():
    tr, ep_of, start_of = hand_built()
    ds = make_device_dataset(tr, pad_to=30)
    assert int(ds.size) == 21 and ds.episode_start.shape == (30,)
    np.testing.assert_array_equal(
        np.asarray(ds.episode_start)[:21],
        [0] * 5 + [5] * 2 + [7] * 9 + [16] + [17] * 4)
    np.testing.assert_array_equal(np.asarray(ds.episode_start)[21:], np.arange(21, 30))
    assert ds.episode_start.dtype == jnp.int32
    assert (np.asarray(ds.transitions.rewards)[21:] == 0).all()
    # The previous step of every row (one-row windows over all 30, padding invalid): the
    # row before in the same episode, zeros at an episode's first row and on padding.
    rows = jnp.arange(30)[:, None]
    valid = rows < 21
    previous = lambda x: np.asarray(take_previous(x, rows, valid, ds.episode_start))[:, 0]
    pa, pr, po = (previous(getattr(ds.transitions, f))
                  for f in ("actions", "rewards", "observations"))
    for i in range(21):
        start = i == start_of[i]
        np.testing.assert_array_equal(pa[i], np.zeros(2) if start
                                      else np.asarray(tr.actions)[i - 1])
        assert pr[i] == (0.0 if start else np.asarray(tr.rewards)[i - 1])
        np.testing.assert_array_equal(po[i], np.zeros(3) if start
                                      else np.asarray(tr.observations)[i - 1])
    assert (pa[21:] == 0).all() and (pr[21:] == 0).all() and (po[21:] == 0).all()
    # a dict from the store works too (bool masks)
    d = {k: np.asarray(getattr(tr, k)) for k in ("observations", "actions", "rewards",
                                                  "next_observations")}
    d.update(terminals=np.asarray(tr.terminals) > 0, truncations=np.asarray(tr.truncations) > 0)
    np.testing.assert_array_equal(make_device_dataset(d).episode_start, ds.episode_start[:21])
    with pytest.raises(ValueError, match="pad_to"):
        make_device_dataset(tr, pad_to=10)


@pytest.mark.timeout(120)
def test_context_windows_respect_episodes_under_jit():
    tr, ep_of, start_of = hand_built()
    ds = make_device_dataset(tr, pad_to=32)
    sample = jax.jit(sample_context_windows, static_argnames=("batch_size", "window"))
    cb = sample(ds, jax.random.key(0), batch_size=4000, window=K)
    assert cb.observations.shape == (4000, K, 3) and cb.actions.shape == (4000, K, 2)
    assert cb.rewards.shape == cb.mask.shape == cb.terminals.shape == (4000, K)
    t = check_windows(cb, tr, ep_of, start_of)
    assert set(t) == set(range(21))  # every end index, never a padding row
    # the length-1 episode (row 16) gives a single real row; row 20 (last of a K-long
    # episode) gives a full window; row 7 (first of an episode) only itself
    cbn = jax.tree.map(np.asarray, cb)
    for row, n_real in ((16, 1), (20, 4), (7, 1), (6, 2), (15, 4), (2, 3)):
        assert (cbn.mask[t == row].sum(axis=1) == n_real).all(), row
    # jit and eager agree exactly
    eager = sample_context_windows(ds, jax.random.key(0), 4000, K)
    jax.tree.map(np.testing.assert_array_equal, eager, cb)


@pytest.mark.timeout(120)
def test_window_longer_than_every_episode():
    tr, ep_of, start_of = hand_built()
    ds = make_device_dataset(tr)
    cb = jax.jit(sample_context_windows, static_argnums=(2, 3))(ds, jax.random.key(3), 2000, 12)
    check_windows(cb, tr, ep_of, start_of, window=12)
    assert float(np.asarray(cb.mask).sum(axis=1).max()) == 9.0  # longest episode


@pytest.mark.timeout(120)
def test_end_indices_and_transitions_are_uniform():
    tr, _, _ = hand_built()
    ds = make_device_dataset(tr, pad_to=40)
    n_draw = 200_000
    cb = jax.jit(sample_context_windows, static_argnums=(2, 3))(ds, jax.random.key(1), n_draw, 2)
    t = np.asarray(cb.rewards[:, -1]).astype(int) - 1
    freq = np.bincount(t, minlength=40) / n_draw
    assert (freq[21:] == 0).all()
    np.testing.assert_allclose(freq[:21], 1 / 21, atol=0.003)  # sd is about 0.0004
    b = jax.jit(sample_transitions, static_argnums=2)(ds, jax.random.key(2), n_draw)
    i = np.asarray(b.rewards).astype(int) - 1
    assert (i >= 0).all()
    np.testing.assert_allclose(np.bincount(i, minlength=21) / n_draw, 1 / 21, atol=0.003)
    # each sampled transition is a whole row
    np.testing.assert_array_equal(np.asarray(b.observations)[:, 0], i)
    np.testing.assert_array_equal(np.asarray(b.actions)[:, 1], -i)
    np.testing.assert_array_equal(np.asarray(b.terminals), np.asarray(tr.terminals)[i])


@pytest.mark.timeout(120)
def test_vmap_over_stacked_tasks_never_samples_padding():
    tr0, ep0, st0 = hand_built()
    tr1, ep1, st1 = hand_built(lengths=(3, 1, 4), ends=("trunc", "term", "term"), offset=0.25)
    stacked = stack_datasets([make_device_dataset(tr0), tr1])
    assert isinstance(stacked, DeviceDataset)
    np.testing.assert_array_equal(stacked.size, [21, 8])
    assert stacked.transitions.observations.shape == (2, 21, 3)
    assert stacked.episode_start.shape == (2, 21)

    keys = jax.random.split(jax.random.key(4), 2)
    win = jax.jit(jax.vmap(functools.partial(sample_context_windows, window=K),
                           in_axes=(0, 0, None)), static_argnums=2)
    cb = win(stacked, keys, 3000)
    assert cb.observations.shape == (2, 3000, K, 3)
    t0 = check_windows(jax.tree.map(lambda x: x[0], cb), tr0, ep0, st0)
    t1 = check_windows(jax.tree.map(lambda x: x[1], cb), tr1, ep1, st1)
    assert set(t0) == set(range(21)) and set(t1) == set(range(8))
    assert (np.asarray(cb.observations[1])[..., 2][np.asarray(cb.mask[1]) > 0] % 1 == 0.25).all()

    # the brief's form: in_axes=(0, 0, None, None) with ints passed through unbatched
    vm = jax.vmap(lambda d, k, b, w: sample_context_windows(d, k, b, w),
                  in_axes=(0, 0, None, None))
    cb2 = vm(stacked, keys, 3000, K)
    jax.tree.map(np.testing.assert_array_equal, cb2, cb)

    tb = jax.jit(jax.vmap(sample_transitions, in_axes=(0, 0, None)), static_argnums=2)(
        stacked, keys, 5000)
    r = np.asarray(tb.rewards)
    assert (r > 0).all()  # padding rows have reward 0
    assert r[1].max() == 8 and r[0].max() == 21
