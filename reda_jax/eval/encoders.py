"""Read-outs of a trained run's encoder and task models, vmapped over its seeds: the
per-epoch task-identification accuracy, embeddings.npz, and `readout`'s and `physics`'s
fuller read-outs (experiments/probe_encoder.py).

`method` is the run's `methods.Method`; `frozen` and `trainable` its encoder parameters
with a leading seed axis S (`trainable` may be {}: an encoder fixed before stage 3).
Each read-out draws its keys from its own stage index of the run's RNG schedule
(`stage_loop.seed_keys`), apart from every training stage's."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reda_jax import configs
from reda_jax.algos import contrastive
from reda_jax.algos.reda import make_task_models
from reda_jax.data.context import DeviceDataset, sample_task_windows
from reda_jax.data.train_data import TrainData
from reda_jax.eval import readout
from reda_jax.methods import Method
from reda_jax.stage_loop import epoch_keys, seed_keys

EMBEDDING_WINDOWS = 200  # context windows per task and seed in embeddings.npz
ACCURACY_WINDOWS = 1000  # windows per task of the logged accuracies
ACCURACY_KEYS, EMBEDDING_KEYS, READOUT_KEYS, MODEL_KEYS = 4, 5, 6, 7  # RNG stage indices


def encode_windows(method: Method, frozen, trainable, batch) -> tuple[jax.Array, jax.Array]:
    """z (..., Z) and weights (...) of ContextBatch windows (any leading dims), one seed."""
    tokens, mask, query = contrastive.tokens_from_context(batch, method.token)
    return method.encode(frozen, trainable, query, tokens, mask), mask[..., -1]


def encoder_accuracy(method: Method, frozen, trainable, train: DeviceDataset,
                     test: DeviceDataset, key) -> dict[str, jax.Array]:
    """One seed's task-identification accuracy (nearest prototype in Euclidean distance, as
    `readout`) of windows of the training data and of the unseen checkpoints' test data,
    against prototypes of the training data."""
    n = ACCURACY_WINDOWS
    k1, k2, k3 = jax.random.split(key, 3)
    encode = lambda data, k: encode_windows(method, frozen, trainable,
                                            sample_task_windows(data, k, n, method.window))
    z_p, w_p = encode(train, k1)
    protos = contrastive.prototypes(z_p, w_p)
    own = jnp.arange(protos.shape[0])[:, None]

    def accuracy(data, k):
        z, w = encode(data, k)
        return contrastive.weighted_mean(contrastive.nearest_prototype_hits(z, protos, own), w)

    return {"train_task_id_accuracy": accuracy(train, k2),
            "test_task_id_accuracy": accuracy(test, k3)}


def make_accuracy_fn(method: Method):
    """Jitted encoder_accuracy over seeds: (frozen (S,...), trainable (S,...) or {}, train,
    test, keys (S,)) -> {name: (S,)}."""
    fn = lambda f, t, train, test, k: encoder_accuracy(method, f, t, train, test, k)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None, None, 0)))


def embeddings(method: Method, frozen, trainable, data: DeviceDataset, key) -> jax.Array:
    """One seed's z (D, n, Z) of n = EMBEDDING_WINDOWS windows of each dataset in `data`."""
    windows = sample_task_windows(data, key, EMBEDDING_WINDOWS, method.window)
    return encode_windows(method, frozen, trainable, windows)[0]


def make_embed_fn(method: Method):
    """Jitted embeddings over seeds: (frozen, trainable, data, keys (S,)) -> (S, D, n, Z)."""
    fn = lambda f, t, data, k: embeddings(method, f, t, data, k)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None, 0)))


def _as_host(out: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in jax.device_get(out).items()}


def encoder_readout(method: Method, config: configs.TrainConfig, data: TrainData, frozen,
                    trainable, num_windows: int = 1000, key_index: int = 0
                    ) -> dict[str, np.ndarray]:
    """`readout.encoder_readout` of each seed's encoder on `data` -> {name: (S,)}:
    accuracies on training, unseen-checkpoint and unseen-task windows, the linear probe,
    d(phi)."""
    def one(f, t, key):
        return readout.encoder_readout(lambda b: encode_windows(method, f, t, b), data.train,
                                       data.test_train_tasks, data.test_all_tasks, key,
                                       num_windows, method.window)

    keys = epoch_keys(seed_keys(config.seed, config.num_seeds, READOUT_KEYS), key_index)
    trainable_axis = 0 if jax.tree.leaves(trainable) else None
    return _as_host(jax.jit(jax.vmap(one, in_axes=(0, trainable_axis, 0)))(
        frozen, trainable, keys))


def _task_models(config: configs.TrainConfig, data: TrainData):
    ts = data.task_set
    return make_task_models(config.dynamics, ts.obs_dim, ts.act_dim, len(ts.train_tasks))


def dynamics_readout(config: configs.TrainConfig, data: TrainData, stage1_state,
                     num_transitions: int = 1000, key_index: int = 0
                     ) -> dict[str, np.ndarray]:
    """`readout.model_readout` of each seed's stage-1 task dynamics models (ReDA's
    stage-1 state, leading seed axis) -> {name: (S,)}."""
    models, T = _task_models(config, data), len(data.task_set.train_tasks)

    def one(state, key):
        predict = lambda o, a: jax.vmap(
            lambda k: models.next_state(state.dynamics, k, o, a))(jnp.arange(T))
        return readout.model_readout(predict, data.train, data.test_train_tasks, key,
                                     num_transitions)

    keys = epoch_keys(seed_keys(config.seed, config.num_seeds, MODEL_KEYS), key_index)
    return _as_host(jax.jit(jax.vmap(one))(stage1_state, keys))


def physics_readout(config: configs.TrainConfig, data: TrainData, stage1_state,
                    num_transitions: int = 500) -> dict[str, np.ndarray]:
    """`physics.physics_readout` of each seed's stage-1 task models against the real
    simulator, at n = num_transitions evenly spaced rows of every training task's
    unseen-checkpoint data (keys as returned) and of its training data (keys prefixed
    'train_') -> {name: (S,)}."""
    from reda_jax.eval import physics
    ts, models = data.task_set, _task_models(config, data)
    T = len(ts.train_tasks)
    mean_next = jax.jit(jax.vmap(jax.vmap(        # (seed, task model)
        lambda st, k, o, a: models.next_state(st, k, o, a)[0].mean(0),
        in_axes=(None, 0, None, None)), in_axes=(0, None, None, None)))
    result: dict[str, Any] = {}
    for prefix, split in (("", data.test_train_tasks), ("train_", data.train)):
        host = jax.device_get(split)
        rows = [np.linspace(0, int(host.size[k]) - 1, num_transitions).astype(int)
                for k in range(T)]
        take = lambda x: np.stack([np.asarray(x[k])[rows[k]] for k in range(T)])
        obs, act = take(host.transitions.observations), take(host.transitions.actions)
        true_next = np.stack([np.stack([physics.simulated_next_observations(
            ts, task.multiplier, obs[k], act[k]) for k in range(T)])
            for task in ts.train_tasks])                         # (T_phys, T, n, ds)
        model_mean = np.asarray(mean_next(stage1_state.dynamics, jnp.arange(T), obs,
                                          act))                    # (S, Tm, T, n, ds)
        out = [physics.physics_readout(true_next, m, take(host.transitions.next_observations))
               for m in model_mean]
        result.update({prefix + k: np.array([o[k] for o in out]) for k in out[0]})
    return result
