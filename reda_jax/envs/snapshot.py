"""Exact snapshots of a running gymnasium MuJoCo env, so that a killed collection resumes
mid-episode exactly where it stopped.

A snapshot holds MuJoCo's full integration state (mj_getState with mjSTATE_INTEGRATION:
time, qpos, qvel, act, warm start, controls, ...), the TimeLimit wrapper's step counter
and the env's reset RNG state. JSON-able, so it can go in checkpoint metadata.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def get_env_state(env: gym.Env) -> dict:
    base = env.unwrapped
    state = np.empty(mujoco.mj_stateSize(base.model, _SPEC))
    mujoco.mj_getState(base.model, base.data, state, _SPEC)
    limit = _time_limit(env)
    return dict(mj_state=state.tolist(),
                elapsed_steps=None if limit is None else int(limit._elapsed_steps or 0),
                np_random=base.np_random.bit_generator.state)


def set_env_state(env: gym.Env, snapshot: dict) -> None:
    """Restores a snapshot into an env of the same task that has been reset once."""
    base = env.unwrapped
    state = np.asarray(snapshot["mj_state"], np.float64)
    expected = mujoco.mj_stateSize(base.model, _SPEC)
    if state.shape != (expected,):
        raise ValueError(f"env snapshot has {state.shape[0]} state entries, the env needs {expected}")
    mujoco.mj_setState(base.model, base.data, state, _SPEC)
    mujoco.mj_forward(base.model, base.data)
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = snapshot["elapsed_steps"]
    base.np_random.bit_generator.state = snapshot["np_random"]
