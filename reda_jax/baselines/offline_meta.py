"""OM-SAC and OM-BC (paper Section 5): ReDA's transformer encoder trained only through the
offline RL loss (SAC+BC's critics) or the behavior-cloning loss, in stage 3; no earlier
stage. Registered in `configs.METHOD_BUILDERS`."""
from __future__ import annotations

from reda_jax.algos import meta as meta_lib
from reda_jax.algos.contrastive import make_encoder_learner
from reda_jax.methods import Method, MethodInputs, context_method


def _offline_meta_method(inputs: MethodInputs, name: str, objective: str) -> Method:
    config = inputs.config
    enc = make_encoder_learner(config.encoder, inputs.token_dim, inputs.window)
    learner = meta_lib.make_meta_learner(
        config.meta, inputs.obs_dim, inputs.act_dim, inputs.num_tasks, inputs.window,
        config.encoder.z_dim, token=inputs.token,
        encode=lambda frozen, trainable, q, t, m: enc.encode(trainable, q, t, m),
        init_trainable=lambda key: enc.init(key).params,
        encoder_lr=config.encoder.learning_rate, objective=objective, **inputs.stage3_stats())
    return context_method(inputs, name, learner)


def om_sac_method(inputs: MethodInputs) -> Method:
    """The encoder trained by the critics' TD loss (z into Q(s, a, z))."""
    return _offline_meta_method(inputs, "om_sac", "sac_bc")


def om_bc_method(inputs: MethodInputs) -> Method:
    """The encoder trained by the deterministic BC loss."""
    return _offline_meta_method(inputs, "om_bc", "bc")
