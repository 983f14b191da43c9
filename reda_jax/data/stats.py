"""Statistics of the training data (host, numpy) that methods and learners normalise by."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from reda_jax.types import Transitions

STD_EPS = 1e-6   # added to state stds (as Prompt-DT)


def as_arrays(data: Transitions | Mapping[str, Any]) -> Mapping[str, Any]:
    """A dataset as a dict of host arrays."""
    if isinstance(data, Transitions):
        return {k: np.asarray(getattr(data, k)) for k in
                ("observations", "actions", "rewards", "next_observations", "terminals",
                 "truncations")}
    return data


def state_stats(arrays: Sequence[Transitions | Mapping[str, Any]]) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Mean (ds,) and std (ds,) + 1e-6 (as Prompt-DT) of the observations of all given
    tasks pooled (pass the training tasks only; Prompt-DT also pools the test tasks)."""
    obs = np.concatenate([np.asarray(as_arrays(a)["observations"], np.float64)
                          for a in arrays])
    return obs.mean(0).astype(np.float32), (obs.std(0) + STD_EPS).astype(np.float32)


def action_std(arrays: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Std (da,) of the actions of all given tasks pooled (not per task)."""
    actions = np.concatenate([np.asarray(a["actions"], np.float64) for a in arrays])
    return actions.std(0).astype(np.float32)


def reward_range(arrays: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """(r_min, r_max) over all given tasks' rewards."""
    rewards = np.concatenate([a["rewards"] for a in arrays])
    return float(rewards.min()), float(rewards.max())
