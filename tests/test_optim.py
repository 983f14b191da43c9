import jax.numpy as jnp
import numpy as np
import optax

from reda_jax.optim import apply_gradients


def test_apply_gradients_is_one_step_of_the_transformation_and_passes_params():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.5])}
    sgd = optax.sgd(0.1)
    new, _ = apply_gradients(sgd, params, sgd.init(params), grads)
    np.testing.assert_allclose(new["w"], [0.95, -2.05], rtol=1e-6)
    # Decoupled weight decay reads the params: lr * (adam direction + wd * w); the first Adam
    # direction is sign(g) (bias-corrected m / sqrt(v)), so w - 0.1 * (1 + 0.5 w).
    adamw = optax.adamw(0.1, eps=0.0, weight_decay=0.5)
    new, state = apply_gradients(adamw, params, adamw.init(params), grads)
    np.testing.assert_allclose(new["w"], [1.0 - 0.1 * 1.5, -2.0 - 0.1 * 0.0], rtol=1e-6)
    assert int(state[0].count) == 1
