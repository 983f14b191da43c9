"""The sanity floor and ceiling of every table: `bc`, behavior cloning without
context, and `oracle`, stage 3's SAC+BC learner given the true task's features
(`methods.task_features`) instead of z. Registered in `configs.METHOD_BUILDERS`."""
from __future__ import annotations

from reda_jax.algos import meta as meta_lib
from reda_jax.methods import Method, MethodInputs, context_method, task_features


def bc_method(inputs: MethodInputs) -> Method:
    """Deterministic BC on the pooled training tasks' data; no context, no encoder."""
    learner = meta_lib.make_meta_learner(
        inputs.config.meta, inputs.obs_dim, inputs.act_dim, inputs.num_tasks, inputs.window, 0,
        token=inputs.token,
        encode=meta_lib.no_context, objective="bc", **inputs.stage3_stats())
    return context_method(inputs, "bc", learner)._replace(encode=None)


def oracle_method(inputs: MethodInputs) -> Method:
    """SAC+BC conditioned on the true task: act takes the task's features as `task`."""
    T, mcfg = inputs.num_tasks, inputs.config.meta
    feats = task_features(inputs.train_multipliers, inputs.train_multipliers, mcfg.oracle_code)
    learner = meta_lib.make_meta_learner(
        mcfg, inputs.obs_dim, inputs.act_dim, T, inputs.window, feats.shape[1], token=inputs.token,
        encode=meta_lib.no_context, task_features=feats, **inputs.stage3_stats())
    return context_method(inputs, "oracle", learner)._replace(
        encode=None, task_conditioned=True,
        act=lambda p, frozen, q, c, m, task: learner.act(p[0], frozen, p[1], q, c, m, task))
