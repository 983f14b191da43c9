"""Representation metrics: the relative representation metric d(phi) of the paper's Eq. 8."""
from __future__ import annotations

import jax.numpy as jnp


def mean_pairwise_sq_distance(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """a (n, Z), b (m, Z) -> (): mean over all n * m pairs of |a_i - b_j|^2, computed as
    mean|a|^2 + mean|b|^2 - 2 <mean a, mean b> (no n x m matrix)."""
    return ((a ** 2).sum(-1).mean() + (b ** 2).sum(-1).mean()
            - 2.0 * jnp.dot(a.mean(0), b.mean(0)))


def relative_representation_metric(z_train1: jnp.ndarray, z_train2: jnp.ndarray,
                                   z_test1: jnp.ndarray) -> jnp.ndarray:
    """d(phi) of Eq. 8: z_train1 (n1, Z), z_train2 (n2, Z), z_test1 (m, Z) -> ().

    Eq. 8 is |D2| sum_{x1 in D1, x in D1test} |z1 - z|^2 / (|D1| sum_{x2 in D2, x in D1test}
    |z2 - z|^2), i.e. the mean squared distance of test-task-1 representations to
    training-task-1 ones over their mean squared distance to training-task-2 ones. Near 0:
    the test contexts are recognised as task 1; about 1 or more: they are not."""
    return (mean_pairwise_sq_distance(z_train1, z_test1)
            / mean_pairwise_sq_distance(z_train2, z_test1))


def centroid_representation_metric(z_train: jnp.ndarray, z_test: jnp.ndarray,
                                   task: int = 0, weights=None) -> jnp.ndarray:
    """z_train (T, n, Z), z_test (m, Z) of training task `task`'s unseen checkpoint -> ():
    |mu_task - mu_test|^2 / mean_{j != task} |mu_j - mu_test|^2 with mu_t task t's mean
    training z (weights (T, n) | None). Eq. 8 without the spread terms (see
    `spread_decomposition`): near 0 when the test windows' centre sits on their task's."""
    w = jnp.ones(z_train.shape[:2]) if weights is None else weights
    mu = (z_train * w[..., None]).sum(1) / jnp.maximum(w.sum(1), 1e-8)[:, None]   # (T, Z)
    d2 = jnp.sum(jnp.square(mu - z_test.mean(0)), -1)                                # (T,)
    others = jnp.arange(z_train.shape[0]) != task
    return d2[task] / (jnp.where(others, d2, 0.0).sum() / others.sum())


def spread_decomposition(a: jnp.ndarray, b: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """a (n, Z), b (m, Z) -> {'centre', 'spread_a', 'spread_b'}: the three terms of
    mean_pairwise_sq_distance(a, b) = |mean a - mean b|^2 + mean|a - mean a|^2
    + mean|b - mean b|^2. Eq. 8 is a ratio of two such sums, so a wide training cloud of
    task 2 (spread_a of the denominator) lowers d(phi) as a closer centre would, while a
    test window's nearest prototype depends on the centres alone."""
    ma, mb = a.mean(0), b.mean(0)
    return {"centre": jnp.sum(jnp.square(ma - mb)),
            "spread_a": jnp.sum(jnp.square(a - ma), -1).mean(),
            "spread_b": jnp.sum(jnp.square(b - mb), -1).mean()}
