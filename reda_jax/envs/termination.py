"""Pure ``jax.numpy`` termination functions for the gymnasium MuJoCo v5 environments.

Each function has the signature ``fn(obs, action, next_obs) -> done`` where ``obs`` and
``next_obs`` are ``[..., obs_dim]``, ``action`` is ``[..., act_dim]`` and ``done`` is a
bool array of shape ``next_obs.shape[:-1]`` (any number of leading batch dims; works under
``jax.jit`` and ``jax.vmap``). ``done`` is computed from ``next_obs`` alone, exactly as the
v5 environment decides ``terminated`` after the step that produced ``next_obs`` (gymnasium
1.x ``*_v5.py``, default constructor arguments, x (and y) position excluded from the
observation). Time-limit truncation is never a termination.

Rules (strict inequalities unless stated; a NaN fails every comparison, so a NaN where a
rule looks terminates, as in gymnasium):

* Hopper-v5: healthy iff ``0.7 < z < inf`` (``obs[0]``), ``-0.2 < angle < 0.2``
  (``obs[1]``) and every entry of ``obs[1:]`` is in (-100, 100).
  Gymnasium checks the last part on the *unclipped* ``qvel``, but the observation clips
  velocities to [-10, 10]: a step with some ``|qvel| >= 100`` terminates in the simulator
  and cannot be seen from the observation (this function says "not done", unless the
  velocity is NaN). It needs a violent state; we never saw it on real transitions.
* Walker2d-v5: healthy iff ``0.8 < z < 2.0`` (``obs[0]``) and ``-1 < angle < 1``
  (``obs[1]``). Gymnasium v5 checks nothing else (no state bound, no finiteness).
* Ant-v5: healthy iff every entry is finite and ``0.2 <= z <= 1.0`` (``obs[0]``, closed
  interval). Gymnasium also checks that x and y are finite; they are not observed.
* HalfCheetah-v5: never terminates.
* InvertedPendulum-v5: done iff some entry is not finite or ``|angle| > 0.2`` (``obs[1]``).

The comparisons run in the dtype of ``next_obs``: float64 data cast to float32 (JAX's
default) can flip a decision only for values within float32 rounding (~1e-7 relative) of a
threshold.

``get_termination_fn(env_id)`` returns the function for a gymnasium id.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

TerminationFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _prepare(next_obs, valid_dims: tuple[int, ...], env_id: str) -> jnp.ndarray:
    next_obs = jnp.asarray(next_obs)
    if next_obs.ndim < 1 or next_obs.shape[-1] not in valid_dims:
        raise ValueError(
            f"{env_id} termination expects next_obs of shape [..., {' or '.join(map(str, valid_dims))}]"
            f" (x position excluded), got {next_obs.shape}")
    return next_obs


def hopper_termination(obs, action, next_obs) -> jnp.ndarray:
    next_obs = _prepare(next_obs, (11,), "Hopper-v5")
    z, angle = next_obs[..., 0], next_obs[..., 1]
    rest = next_obs[..., 1:]
    healthy_state = jnp.all((rest > -100.0) & (rest < 100.0), axis=-1)
    healthy_z = (z > 0.7) & (z < jnp.inf)
    healthy_angle = (angle > -0.2) & (angle < 0.2)
    return ~(healthy_state & healthy_z & healthy_angle)


def walker2d_termination(obs, action, next_obs) -> jnp.ndarray:
    next_obs = _prepare(next_obs, (17,), "Walker2d-v5")
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


def ant_termination(obs, action, next_obs) -> jnp.ndarray:
    # 27 = qpos[2:] + qvel; 105 = with cfrc_ext (gymnasium's default); z is obs[0] in both.
    next_obs = _prepare(next_obs, (27, 105), "Ant-v5")
    z = next_obs[..., 0]
    healthy = jnp.all(jnp.isfinite(next_obs), axis=-1) & (z >= 0.2) & (z <= 1.0)
    return ~healthy


def half_cheetah_termination(obs, action, next_obs) -> jnp.ndarray:
    next_obs = _prepare(next_obs, (17,), "HalfCheetah-v5")
    return jnp.zeros(next_obs.shape[:-1], dtype=bool)


def inverted_pendulum_termination(obs, action, next_obs) -> jnp.ndarray:
    next_obs = _prepare(next_obs, (4,), "InvertedPendulum-v5")
    finite = jnp.all(jnp.isfinite(next_obs), axis=-1)
    return ~finite | (jnp.abs(next_obs[..., 1]) > 0.2)


TERMINATION_FNS: dict[str, TerminationFn] = {
    "Hopper-v5": hopper_termination,
    "Walker2d-v5": walker2d_termination,
    "Ant-v5": ant_termination,
    "HalfCheetah-v5": half_cheetah_termination,
    "InvertedPendulum-v5": inverted_pendulum_termination,
}


def get_termination_fn(env_id: str) -> TerminationFn:
    try:
        return TERMINATION_FNS[env_id]
    except (KeyError, TypeError):
        raise ValueError(
            f"no termination function for env id {env_id!r}; valid ids: "
            f"{', '.join(sorted(TERMINATION_FNS))}") from None
