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
