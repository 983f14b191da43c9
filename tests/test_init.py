"""Network initialisations: 'pytorch' against PyTorch nn.Linear's numbers, 'lecun' unchanged."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reda_jax.configs import SACConfig
from reda_jax.networks.mlp import MLP
from reda_jax.networks.policies import TanhGaussianActor, TwinCritic

FAN_IN, WIDTH = 1000, 3000


def _layer(params, i):
    return params["params"][f"Dense_{i}"]


def test_pytorch_init_matches_nn_linear_variance_and_bound():
    # nn.Linear: kaiming_uniform(a=sqrt(5)) weights and U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    # biases, i.e. variance 1/(3 fan_in) for both. Flax's lecun_normal has 1/fan_in (3x),
    # zero biases would have 0; a bias drawn with fan_in = its own size would have 1/(3 WIDTH).
    params = MLP((WIDTH,), 1, network_init="pytorch").init(jax.random.key(0), jnp.zeros((1, FAN_IN)))
    w = np.asarray(_layer(params, 0)["kernel"])
    b = np.asarray(_layer(params, 0)["bias"])
    bound, var = 1 / np.sqrt(FAN_IN), 1 / (3 * FAN_IN)
    assert w.shape == (FAN_IN, WIDTH) and b.shape == (WIDTH,)
    assert w.var() == pytest.approx(var, rel=0.01)  # 3M samples
    assert b.var() == pytest.approx(var, rel=0.1)  # 3000 samples
    assert abs(w.mean()) < 1e-4 and abs(b.mean()) < 3 * np.sqrt(var / WIDTH)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.99 * bound  # uniform up to the bound, not a narrower law
    # The output layer's fan-in is the hidden width.
    w_out = np.asarray(_layer(params, 1)["kernel"])
    assert np.abs(w_out).max() <= 1 / np.sqrt(WIDTH) < 2 * np.abs(w_out).max()


def test_default_init_is_unchanged_lecun_normal_with_zero_bias():
    key, x = jax.random.key(1), jnp.zeros((1, FAN_IN))
    params = MLP((WIDTH,), 2).init(key, x)
    w = np.asarray(_layer(params, 0)["kernel"])
    assert w.var() == pytest.approx(1 / FAN_IN, rel=0.01)
    assert np.all(np.asarray(_layer(params, 0)["bias"]) == 0)

    class OldMLP(nn.Module):  # the MLP before the init option, verbatim
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(WIDTH, kernel_init=nn.initializers.lecun_normal())(x))
            return nn.Dense(2, kernel_init=nn.initializers.lecun_normal())(x)

    old = OldMLP().init(key, x)
    jax.tree.map(np.testing.assert_array_equal, params, old)


def test_policies_pass_the_init_through():
    obs, act = jnp.zeros((1, 11)), jnp.zeros((1, 3))
    for init, zero_bias in (("lecun", True), ("pytorch", False)):
        actor = TanhGaussianActor((256, 256), 3, network_init=init).init(jax.random.key(2), obs)
        critic = TwinCritic((256, 256), network_init=init).init(jax.random.key(3), obs, act)
        for tree in (actor, critic):
            biases = [np.asarray(p["bias"]) for p in jax.tree.leaves(
                tree, is_leaf=lambda t: isinstance(t, dict) and "bias" in t)]
            assert len(biases) == 3
            assert all(np.all(b == 0) == zero_bias for b in biases)
    # The critics' first layer sees obs and action: fan-in 14.
    critic = TwinCritic((256, 256), network_init="pytorch").init(jax.random.key(3), obs, act)
    w = np.asarray(critic["params"]["VmapMLP_0"]["Dense_0"]["kernel"])
    assert w.shape == (2, 14, 256) and np.abs(w).max() <= 1 / np.sqrt(14)
    assert not np.allclose(w[0], w[1])  # independent heads


def test_unknown_init_is_rejected_and_sac_default():
    with pytest.raises(ValueError, match="unknown init"):
        MLP((4,), 1, network_init="xavier").init(jax.random.key(0), jnp.zeros((1, 3)))
    assert SACConfig().network_init == "lecun"


def test_make_sac_uses_the_configured_init():
    from reda_jax.algos.sac import make_sac

    sac = make_sac(SACConfig(hidden_dims=(32,), network_init="pytorch"), 5, 2)
    assert sac.actor.network_init == "pytorch" and sac.critic.network_init == "pytorch"
    state = sac.init(jax.random.key(0))
    assert np.any(np.asarray(state.actor_params["params"]["MLP_0"]["Dense_0"]["bias"]) != 0)
