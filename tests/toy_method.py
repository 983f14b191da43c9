"""A toy method for tests/test_methods_registry.py, written as a user adds one: this module
and one registry line. Stage 3 only: the policy is one action for every state, moved each
epoch halfway (in pre-tanh units) towards the mean action of the pooled training data."""
import flax.struct
import jax
import jax.numpy as jnp

from reda_jax.methods import Method, MethodInputs


@flax.struct.dataclass
class ToyState:
    pre_tanh: jax.Array   # (da,)
    step: jax.Array       # () int32


def data_mean_action(data) -> jax.Array:
    """Mean action over the valid rows of a stacked DeviceDataset (T, N, da) -> (da,)."""
    actions = data.transitions.actions
    valid = jnp.arange(actions.shape[1])[None, :] < data.size[:, None]
    return (actions * valid[..., None]).sum((0, 1)) / valid.sum()


def toy_method(inputs: MethodInputs) -> Method:
    da = inputs.act_dim

    def init(key):
        return ToyState(pre_tanh=jnp.zeros(da), step=jnp.zeros((), jnp.int32))

    def epoch(state, frozen, data, key):
        target = jnp.arctanh(jnp.clip(data_mean_action(data), -0.99, 0.99))
        pre_tanh = state.pre_tanh + 0.5 * (target - state.pre_tanh)
        return (ToyState(pre_tanh, state.step + 1),
                {"meta/gap": jnp.abs(target - pre_tanh).max()})

    def act(params, frozen, query, context, mask):
        return jnp.broadcast_to(jnp.tanh(params), query.shape[:-1] + (da,))

    return Method(**inputs.no_stages(), name="toy", init_meta=init, meta_epoch=epoch,
                  act_params=lambda s: s.pre_tanh, act=act, encode=None,
                  trainable_params=lambda s: {})
