"""A toy method for tests/test_train.py, written as a user adds one: this module and one
registry line. Two stages: a 'representation' stage estimates the pre-tanh mean action of
the pooled training data, moving its estimate halfway to it each epoch (TOY_EPOCHS epochs);
the policy stage plays one action for every state, moved each epoch halfway (in pre-tanh
units) towards that stage's final estimate (its `output`)."""
import flax.struct
import jax
import jax.numpy as jnp

from reda_jax.methods import Method, MethodInputs, Stage

TOY_EPOCHS = 3


@flax.struct.dataclass
class ToyState:
    pre_tanh: jax.Array   # (da,): the estimate, or the policy's action before tanh
    step: jax.Array       # () int32


def data_mean_action(data) -> jax.Array:
    """Mean action over the valid rows of a stacked DeviceDataset (T, N, da) -> (da,)."""
    actions = data.transitions.actions
    valid = jnp.arange(actions.shape[1])[None, :] < data.size[:, None]
    return (actions * valid[..., None]).sum((0, 1)) / valid.sum()


def halfway(state: ToyState, target: jax.Array, metric: str) -> tuple[ToyState, dict]:
    pre_tanh = state.pre_tanh + 0.5 * (target - state.pre_tanh)
    return ToyState(pre_tanh, state.step + 1), {metric: jnp.abs(target - pre_tanh).max()}


def toy_method(inputs: MethodInputs) -> Method:
    da = inputs.act_dim

    def init(key, _data=None):
        return ToyState(pre_tanh=jnp.zeros(da), step=jnp.zeros((), jnp.int32))

    def estimate(state, _upstream, data, key):
        return halfway(state, jnp.arctanh(jnp.clip(data_mean_action(data), -0.99, 0.99)),
                       "encoder/gap")

    def act(params, frozen, query, context, mask):
        return jnp.broadcast_to(jnp.tanh(params), query.shape[:-1] + (da,))

    stages = [Stage("representation", "toy estimate", init, estimate, TOY_EPOCHS,
                    inputs.data.train, output=lambda s: s.pre_tanh),
              inputs.policy_stage(init, lambda s, est, data, key: halfway(s, est, "meta/gap"))]
    return inputs.method("toy", stages, act_params=lambda s: s.pre_tanh, act=act)
