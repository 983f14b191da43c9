"""The encoder read-out on synthetic embeddings whose answers are known by construction."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.data.context import make_device_dataset, stack_datasets
from reda_jax.eval.metrics import (centroid_representation_metric, mean_pairwise_sq_distance,
                                   relative_representation_metric, spread_decomposition)
from reda_jax.algos.contrastive import nearest_prototype_hits
from reda_jax.eval.readout import encoder_readout, linear_probe_accuracy, readout_from_embeddings


def _cloud(centre, n, spread, seed):
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.asarray(centre, np.float32) + spread * rng.standard_normal(
        (n, len(centre))).astype(np.float32))


def test_spread_decomposition_sums_to_the_mean_pairwise_distance():
    a, b = _cloud([1.0, -2.0], 50, 0.7, 0), _cloud([0.0, 3.0], 40, 1.3, 1)
    parts = spread_decomposition(a, b)
    brute = np.mean([[np.sum((np.asarray(x) - np.asarray(y)) ** 2) for y in b] for x in a])
    assert float(sum(parts.values())) == pytest.approx(brute, rel=1e-5)
    assert float(mean_pairwise_sq_distance(a, b)) == pytest.approx(brute, rel=1e-5)
    centre = np.sum((np.asarray(a).mean(0) - np.asarray(b).mean(0)) ** 2)
    assert float(parts["centre"]) == pytest.approx(centre, rel=1e-5)
    assert float(parts["spread_b"]) == pytest.approx(np.asarray(b).var(0).sum(), rel=1e-5)


def test_d_phi_and_accuracy_disagree_when_task_2_is_spread_and_the_centroid_metric_agrees():
    """Task 1's training z sit tightly at (0, 0), task 2's at (4, 0) but spread +-10 along
    y; the test windows of task 1 sit at (3.5, 0): every one is nearest task 2's prototype
    (accuracy 0), yet Eq. 8 reads about 12.25 / (0.25 + 100) ~ 0.12, 'recognised as task 1',
    because the denominator carries task 2's spread. The centroid metric says 49."""
    n = 400
    t1 = jnp.zeros((n, 2))
    t2 = jnp.asarray(np.stack([np.full(n, 4.0), 10.0 * np.resize([-1.0, 1.0], n)], -1),
                     jnp.float32)
    test = jnp.tile(jnp.asarray([[3.5, 0.0]]), (n, 1))
    z_train = jnp.stack([t1, t2])
    d_phi = float(relative_representation_metric(t1, t2, test))
    assert d_phi == pytest.approx(12.25 / (0.25 + 100.0), rel=0.05)
    protos = z_train.mean(1)
    assert float(nearest_prototype_hits(test, protos, 0).mean()) == 0.0
    assert float(centroid_representation_metric(z_train, test, 0)) == pytest.approx(
        12.25 / 0.25, rel=0.05)
    w = jnp.ones((2, n))
    out = readout_from_embeddings(z_train, w, z_train, w, jnp.stack([test, test]), w)
    assert float(out["d_phi_median"]) == pytest.approx(12.25 / 0.25, rel=0.05)
    assert float(out["unseen_checkpoint_accuracy"]) == pytest.approx(0.5)  # task 2's are right
    assert float(out["task1_unseen_checkpoint_accuracy"]) == 0.0


def test_the_window_median_follows_the_majority_where_outliers_pull_the_centre():
    """Training prototypes at 0 (task 1) and 4 (task 2). 70% of task 1's test windows
    sit at 3 (nearer task 2), 30% far out at -20: the test centre (-3.9) is nearer task
    1's, so Eq. 8 and its centroid form read 'task 1', while most windows are task 2's."""
    n = 100
    z_train = jnp.stack([jnp.zeros((n, 1)), jnp.full((n, 1), 4.0)])
    test = jnp.concatenate([jnp.full((70, 1), 3.0), jnp.full((30, 1), -20.0)])
    w = jnp.ones((2, n))
    out = readout_from_embeddings(z_train, w, z_train, w, jnp.stack([test, test]), w)
    assert float(out["d_phi"]) < 1.0 and float(out["d_phi_centroid"]) < 1.0
    assert float(out["d_phi_median"]) == pytest.approx(9.0)     # 3^2 / 1^2
    assert float(out["task1_unseen_checkpoint_accuracy"]) == pytest.approx(0.3)
    acc_task1 = float(nearest_prototype_hits(test, z_train.mean(1), 0).mean())
    assert acc_task1 == pytest.approx(0.3)


def test_nearest_prototype_hits_use_euclidean_distance_not_the_dot_product():
    # z = (1, 0) is nearer p0 = (1, 0) than p1 = (3, 0), though <z, p1> > <z, p0>.
    protos = jnp.asarray([[1.0, 0.0], [3.0, 0.0]])
    z = jnp.asarray([[1.0, 0.0], [2.9, 0.1]])
    np.testing.assert_array_equal(nearest_prototype_hits(z, protos, jnp.asarray([0, 0])),
                                  [1.0, 0.0])


def test_linear_probe_finds_a_direction_the_prototypes_miss():
    """The tasks' centres differ by (2, 0.4); every window is spread +-3 along x and only
    +-0.02 along y. The nearest-prototype rule splits at x = 1 and is fooled by the x
    spread; the only clean direction is y, which the probe finds. Classes swapped in the
    evaluation windows: the probe gets every one wrong."""
    n = 400

    def windows(cy0, cy1, seed):
        r = np.random.default_rng(seed)
        make = lambda cx, cy: np.stack([cx + r.choice([-3.0, 3.0], n),
                                        cy + 0.02 * r.standard_normal(n)], -1)
        return jnp.asarray(np.stack([make(0.0, cy0), make(2.0, cy1)]), jnp.float32)

    w = jnp.ones((2, n))
    z_fit, z_eval = windows(-0.2, 0.2, 1), windows(-0.2, 0.2, 2)
    assert float(linear_probe_accuracy(z_fit, w, z_eval, w)) == 1.0
    out = readout_from_embeddings(z_fit, w, z_fit, w, z_eval, w)
    assert 0.3 < float(out["unseen_checkpoint_accuracy"]) < 0.7    # the x spread decides
    assert float(out["linear_probe_accuracy"]) == 1.0
    swapped = windows(0.2, -0.2, 3)
    assert float(linear_probe_accuracy(z_fit, w, swapped, w)) == 0.0


def test_unseen_task_accuracy_scores_only_the_unseen_tasks_windows():
    n = 100
    z_train = jnp.stack([_cloud([0.0], n, 0.1, 0), _cloud([10.0], n, 0.1, 1)])
    w = jnp.ones((2, n))
    # all tasks: two training tasks (collapsed onto one point: would score 0.5 if counted)
    # and one unseen task with a region of its own at 5.
    z_all = jnp.stack([jnp.zeros((n, 1)), jnp.zeros((n, 1)), _cloud([5.0], n, 0.1, 2)])
    w_all = jnp.ones((3, n))
    out = readout_from_embeddings(z_train, w, z_train, w, z_train, w, z_all, w_all, z_all,
                                  w_all)
    assert float(out["unseen_task_accuracy"]) == 1.0
    z_all_bad = z_all.at[2].set(_cloud([10.0], n, 0.1, 3))   # the unseen task on task 2's
    z_all_bad = z_all_bad.at[1].set(_cloud([10.0], n, 0.1, 4))
    out = readout_from_embeddings(z_train, w, z_train, w, z_train, w, z_all_bad, w_all,
                                  z_all_bad, w_all)
    assert 0.3 < float(out["unseen_task_accuracy"]) < 0.7     # coin flip between the two
    assert "unseen_task_accuracy" not in readout_from_embeddings(z_train, w, z_train, w,
                                                                  z_train, w)


def _dataset(level, num_episodes=4, length=20):
    """One task's transitions whose observations all equal `level` (obs dim 2)."""
    N = num_episodes * length
    obs = np.full((N, 2), level, np.float32)
    return make_device_dataset({
        "observations": obs, "actions": np.zeros((N, 1), np.float32),
        "rewards": np.zeros(N, np.float32), "next_observations": obs,
        "terminals": np.zeros(N, np.float32),
        "truncations": np.tile(np.eye(1, length, length - 1, dtype=np.float32)[0],
                               num_episodes)})


def test_encoder_readout_end_to_end_with_an_encoder_that_reads_the_observation():
    """An 'encoder' that returns the window's mean observation: the training tasks at
    levels 0 and 4; their unseen checkpoints at 1 (task 1: still nearer its own) and 3.5
    (task 2's at 0.5: nearer task 1's prototype); an unseen task at 2.5."""
    train = stack_datasets([_dataset(0.0), _dataset(4.0)])
    ckpt = stack_datasets([_dataset(1.0), _dataset(0.5)])
    all_tasks = stack_datasets([_dataset(1.0), _dataset(0.5), _dataset(2.5)])

    def encode(batch):
        m = batch.mask[..., None]
        z = (batch.observations[..., :1] * m).sum(-2) / m.sum(-2)
        return z, batch.mask[..., -1]

    out = jax.jit(lambda k: encoder_readout(encode, train, ckpt, all_tasks, k, 64, 3))(
        jax.random.key(0))
    assert float(out["train_accuracy"]) == 1.0
    assert float(out["unseen_checkpoint_accuracy"]) == 0.5
    assert float(out["task1_unseen_checkpoint_accuracy"]) == 1.0
    # Eq. 8 for task 1: |0 - 1|^2 / |4 - 1|^2, no spread.
    assert float(out["d_phi"]) == pytest.approx(1.0 / 9.0, rel=1e-5)
    assert float(out["d_phi_centroid"]) == pytest.approx(1.0 / 9.0, rel=1e-5)
    assert float(out["d_phi_median"]) == pytest.approx(1.0 / 9.0, rel=1e-5)
    # The unseen task's own region (2.5) is nearest its own prototype.
    assert float(out["unseen_task_accuracy"]) == 1.0


def test_model_readout_on_models_with_a_known_bias():
    """Task k's data: s' = s + g_k with g = (0, 0) and (0, 1); task j's model predicts
    s + g_j + 0.1 with std 0.5. Own models explain their data best (accuracy 1); the own
    error is 0.1 in every dimension; the models differ by 1 in dimension 1 only."""
    from reda_jax.eval.readout import model_readout
    g = jnp.asarray([[0.0, 0.0], [0.0, 1.0]])

    def task_data(k, seed):
        rng = np.random.default_rng(seed)
        obs = rng.normal(size=(200, 2)).astype(np.float32)
        return make_device_dataset({
            "observations": obs, "actions": np.zeros((200, 1), np.float32),
            "rewards": np.zeros(200, np.float32), "next_observations": obs + np.asarray(g[k]),
            "terminals": np.zeros(200, np.float32), "truncations": np.ones(200, np.float32)})

    train = stack_datasets([task_data(0, 0), task_data(1, 1)])
    ckpt = stack_datasets([task_data(0, 2), task_data(1, 3)])

    def predict(obs, act):   # -> (Tm, E=2, T, n, ds)
        mean = obs[None, None] + g[:, None, None, None, :] + 0.1
        mean = jnp.broadcast_to(mean, (2, 2) + obs.shape)
        return mean, jnp.full_like(mean, 0.5)

    out = model_readout(predict, train, ckpt, jax.random.key(0), 64)
    assert float(out["model_train_accuracy"]) == 1.0
    assert float(out["model_unseen_checkpoint_accuracy"]) == 1.0
    assert float(out["model_error"]) == pytest.approx(0.1, rel=1e-4)
    assert float(out["model_gap"]) == pytest.approx(np.sqrt(0.5), rel=1e-4)
    assert float(out["model_gap_to_error"]) == pytest.approx(10.0, rel=1e-3)
