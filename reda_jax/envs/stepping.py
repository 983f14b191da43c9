"""M gymnasium envs stepped together on the host from one batch of actions: each env is
reset when its episode ends, and the return of every finished episode is reported. Used by
behavior training (`behavior.collect`) and by checkpoint rollouts (`data.rollout`); the
evaluation protocols step MuJoCo directly in bulk instead (`envs.batched.BatchedEnvs`)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import gymnasium as gym
import numpy as np


@dataclasses.dataclass
class Step:
    """One step of every env. observations (M, ds) float32: the states acted in; actions
    (M, da); rewards (M,) float64; next_observations (M, ds) float64, before any reset;
    terminated, truncated (M,) bool; episode_returns: per env, the return of the episode
    that ended at this step, else None."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_returns: list[float | None]


class HostStepper:
    """`obs` (M, ds) float32 is the state each env is in; `running` (M,) float64 the return
    of its episode so far."""

    def __init__(self, envs: Sequence[gym.Env], obs: np.ndarray,
                 running: np.ndarray | None = None):
        self.envs = list(envs)
        self.obs = np.array(obs, np.float32)
        self.running = (np.zeros(len(self.envs)) if running is None
                        else np.array(running, np.float64))

    @classmethod
    def reset(cls, envs: Sequence[gym.Env], seeds: Sequence[int]) -> "HostStepper":
        """Every env reset with its own seed."""
        return cls(envs, np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]))

    def step(self, actions: np.ndarray) -> Step:
        """Steps env i with actions[i]; an env whose episode ends is reset (unseeded)."""
        m, ds = self.obs.shape
        out = Step(observations=self.obs.copy(), actions=actions, rewards=np.zeros(m),
                   next_observations=np.zeros((m, ds)), terminated=np.zeros(m, bool),
                   truncated=np.zeros(m, bool), episode_returns=[None] * m)
        for i, env in enumerate(self.envs):
            next_obs, reward, terminated, truncated, _ = env.step(actions[i])
            out.rewards[i], out.next_observations[i] = reward, next_obs
            out.terminated[i], out.truncated[i] = terminated, truncated
            self.running[i] += reward
            if terminated or truncated:
                out.episode_returns[i] = float(self.running[i])
                self.running[i] = 0.0
                next_obs, _ = env.reset()
            self.obs[i] = next_obs
        return out
