"""Host-side stepping of one simulator per member with a batched policy.

All members (tasks or seeds) step together: one policy call per step for the whole batch.
"""
from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np

PolicyFn = Callable[[np.ndarray], np.ndarray]
"""obs (M, ds) float32 -> actions (M, da) in [-1, 1]."""


def collect_transitions(policy: PolicyFn, envs: Sequence[gym.Env], num_transitions: int,
                        seed: int) -> tuple[list[dict[str, np.ndarray]], list[list[float]]]:
    """Runs `policy` in every env until each has produced `num_transitions` transitions.

    Episodes are contiguous; the last transition is marked truncated if the episode was
    still running (so every episode in the output ends with a terminal or a truncation).
    Returns, per env, a dict of flat arrays (observations (N, ds), actions (N, da),
    rewards (N,), next_observations (N, ds), terminals (N,) bool, truncations (N,) bool)
    and the returns of the episodes that finished (a cut final episode is not counted).
    """
    m = len(envs)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    ds = obs.shape[1]
    da = envs[0].action_space.shape[0]
    out = [dict(observations=np.zeros((num_transitions, ds), np.float32),
                actions=np.zeros((num_transitions, da), np.float32),
                rewards=np.zeros(num_transitions, np.float32),
                next_observations=np.zeros((num_transitions, ds), np.float32),
                terminals=np.zeros(num_transitions, bool),
                truncations=np.zeros(num_transitions, bool)) for _ in range(m)]
    returns: list[list[float]] = [[] for _ in range(m)]
    running = np.zeros(m)
    for t in range(num_transitions):
        actions = np.asarray(policy(obs), np.float32)
        for i, env in enumerate(envs):
            next_obs, reward, terminated, truncated, _ = env.step(actions[i])
            d = out[i]
            d["observations"][t] = obs[i]
            d["actions"][t] = actions[i]
            d["rewards"][t] = reward
            d["next_observations"][t] = next_obs
            d["terminals"][t] = terminated
            d["truncations"][t] = truncated or (t == num_transitions - 1 and not terminated)
            running[i] += reward
            if terminated or truncated:
                returns[i].append(float(running[i]))
                running[i] = 0.0
                next_obs, _ = env.reset()
            obs[i] = next_obs
    return out, returns
