"""A policy's transitions in M simulators at once (one batched policy call per step), as
the flat arrays of the dataset store."""
from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np

from reda_jax.envs.stepping import HostStepper

PolicyFn = Callable[[np.ndarray], np.ndarray]
"""obs (M, ds) float32 -> actions (M, da) in [-1, 1]."""


def collect_transitions(policy: PolicyFn, envs: Sequence[gym.Env], num_transitions: int,
                        seed: int) -> tuple[list[dict[str, np.ndarray]], list[list[float]]]:
    """Runs `policy` in every env (env i reset with seed + i) until each has produced
    `num_transitions` transitions.

    Episodes are contiguous; the last transition is marked truncated if the episode was
    still running (so every episode in the output ends with a terminal or a truncation).
    Returns, per env, a dict of flat arrays (observations (N, ds), actions (N, da),
    rewards (N,), next_observations (N, ds), terminals (N,) bool, truncations (N,) bool)
    and the returns of the episodes that finished (a cut final episode is not counted).
    """
    m, n = len(envs), num_transitions
    stepper = HostStepper.reset(envs, [seed + i for i in range(m)])
    ds, da = stepper.obs.shape[1], envs[0].action_space.shape[0]
    arrays = dict(observations=np.zeros((m, n, ds), np.float32),
                  actions=np.zeros((m, n, da), np.float32), rewards=np.zeros((m, n), np.float32),
                  next_observations=np.zeros((m, n, ds), np.float32),
                  terminals=np.zeros((m, n), bool), truncations=np.zeros((m, n), bool))
    returns: list[list[float]] = [[] for _ in range(m)]
    for t in range(n):
        step = stepper.step(np.asarray(policy(stepper.obs), np.float32))
        arrays["observations"][:, t] = step.observations
        arrays["actions"][:, t] = step.actions
        arrays["rewards"][:, t] = step.rewards
        arrays["next_observations"][:, t] = step.next_observations
        arrays["terminals"][:, t] = step.terminated
        arrays["truncations"][:, t] = step.truncated | ((t == n - 1) & ~step.terminated)
        for i, ret in enumerate(step.episode_returns):
            if ret is not None:
                returns[i].append(ret)
    return [{k: v[i] for k, v in arrays.items()} for i in range(m)], returns
