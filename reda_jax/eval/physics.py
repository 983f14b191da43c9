"""The real simulator as a read-out: the next observation each task's physics gives at the
same (s, a), to compare the task dynamics models' view of the task signal with the true one.

Works for gymnasium MuJoCo envs whose observation is (qpos[k:], qvel) with the first k
positions excluded (k = 0: InvertedPendulum; k = 1: Hopper, Walker2d, HalfCheetah, whose
dynamics do not depend on the excluded x position, set to 0 here). Hopper and Walker2d clip
the observed velocities to [-10, 10]; a clipped row restarts from the clipped value.
"""
from __future__ import annotations

import contextlib

import numpy as np

from reda_jax.envs.tasks import TaskSet


@contextlib.contextmanager
def _task_simulator(task_set: TaskSet, multiplier: float, obs_dim: int, seed: int = 0):
    """Yields (env, place): env the task's gymnasium env, reset once; place(obs (ds,))
    puts the simulator in the state that observation describes."""
    env = task_set.make_env(multiplier)
    try:
        env.reset(seed=seed)
        base = env.unwrapped
        nq, nv = base.model.nq, base.model.nv
        skip = nq + nv - obs_dim
        if skip not in (0, 1):
            raise ValueError(f"{task_set.env_id}: observations of size {obs_dim} are not "
                             f"(qpos[k:], qvel) of nq={nq}, nv={nv}")

        def place(obs: np.ndarray) -> None:
            obs = np.asarray(obs, np.float64)
            base.set_state(np.concatenate([np.zeros(skip), obs[:nq - skip]]), obs[nq - skip:])

        yield env, place
    finally:
        env.close()


def simulated_next_observations(task_set: TaskSet, multiplier: float, observations: np.ndarray,
                                actions: np.ndarray) -> np.ndarray:
    """observations (n, ds), actions (n, da) -> (n, ds): one env step from each row's state
    under the task with this multiplier (actions in the env's [-1, 1] range)."""
    out = np.empty(observations.shape, np.float32)
    with _task_simulator(task_set, multiplier, observations.shape[-1]) as (env, place):
        for i, (obs, act) in enumerate(zip(observations, np.asarray(actions, np.float64))):
            place(obs)
            out[i] = env.step(act)[0]
    return out


def physics_readout(true_next: np.ndarray, model_mean: np.ndarray, next_obs: np.ndarray
                    ) -> dict[str, float]:
    """Models against the real physics at the same (s, a) of every training task's
    unseen-checkpoint data: true_next, model_mean (T_phys / T_model, T_data, n, ds) (the
    simulator's and the task models' member-averaged next observation; T_phys = T_model =
    T, task j's physics / model), next_obs (T_data, n, ds) the recorded s' (= true_next of
    the data's own task). -> {
      true_gap: RMS over rows and dims of true_next[j] - true_next[k] over pairs j != k at
        task k's data: the task signal one step carries;
      model_gap_cosine: mean over rows and pairs of the cosine between the models' gap
        model_mean[j] - model_mean[k] and the true gap (1: the models' difference points
        the way the physics' does);
      model_gap_error: RMS of (models' gap - true gap) / true_gap (0: exact; ~1: the
        models' difference is unrelated to the physics' in size or direction);
      model_physics_error: RMS of model_mean[j] - true_next[j] over every (j, k) / true_gap:
        every model's error at these states, in units of the task signal;
      model_error_own_states / model_error_other_states: the same error / true_gap split
        by where model j is asked: at its own task's states (j = k) or at the other tasks'
        (j != k; ReDA's joint-start rollouts ask each task model there);
      signal_dim: the observation dimension whose true gap is largest (hopper: the torso's
        vertical velocity), where the task shows most;
      signal_dim_true_gap: the true gap's RMS in that dimension alone;
      signal_dim_model_error: the models' error (as model_physics_error) in that dimension
        alone / signal_dim_true_gap: the error against the signal where the signal is}."""
    T = true_next.shape[0]
    pairs = [(j, k) for k in range(T) for j in range(T) if j != k]
    true_gap = np.stack([true_next[j, k] - true_next[k, k] for j, k in pairs])    # (P, n, ds)
    model_gap = np.stack([model_mean[j, k] - model_mean[k, k] for j, k in pairs])
    size = float(np.sqrt(np.mean(true_gap ** 2)))
    diag = np.arange(T)                                  # (task model, its own task's data)
    own = model_mean[diag, diag] - true_next[diag, diag]
    other = np.stack([model_mean[j, k] - true_next[j, k] for j, k in pairs])
    dim_gap = np.sqrt(np.mean(true_gap ** 2, axis=(0, 1)))                       # (ds,)
    d = int(np.argmax(dim_gap))
    dim_error = float(np.sqrt(np.mean((model_mean[..., d] - true_next[..., d]) ** 2)))
    dot = (true_gap * model_gap).sum(-1)
    norms = np.linalg.norm(true_gap, axis=-1) * np.linalg.norm(model_gap, axis=-1)
    return {"true_gap": size,
            "model_gap_cosine": float(np.mean(dot / np.maximum(norms, 1e-12))),
            "model_gap_error": float(np.sqrt(np.mean((model_gap - true_gap) ** 2))) / size,
            "model_physics_error": float(np.sqrt(np.mean((model_mean - true_next) ** 2))) / size,
            "model_error_own_states": float(np.sqrt(np.mean(own ** 2))) / size,
            "model_error_other_states": float(np.sqrt(np.mean(other ** 2))) / size,
            "signal_dim": float(d), "signal_dim_true_gap": float(dim_gap[d]),
            "signal_dim_model_error": dim_error / float(dim_gap[d]),
            "recorded_vs_simulated": float(np.max(np.abs(
                true_next[diag, diag] - next_obs)))}


def simulated_branches(task_set: TaskSet, multiplier: float, start_observations: np.ndarray,
                       horizon: int, act_dim: int, seed: int) -> dict[str, np.ndarray]:
    """Branch rollouts in the real simulator: from each start observation (R, ds), `horizon`
    steps of uniform random actions in [-1, 1] under the task with this multiplier, as a
    dataset with the simulator's rewards (the flat arrays of `store.load_dataset`, at most
    R * horizon rows, each branch an episode ending in a truncation or a termination). The
    oracle-dynamics counterpart of ReDA w/o adv's model rollouts (random actions in learned
    models)."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                            "terminals", "truncations")}
    with _task_simulator(task_set, multiplier, start_observations.shape[-1], seed) as (
            env, place):
        for start in start_observations:
            place(start)
            obs = start
            for t in range(horizon):
                act = rng.uniform(-1.0, 1.0, act_dim)
                nxt, reward, terminated, _, _ = env.step(act)
                for k, v in zip(rows, (obs, act, reward, nxt, float(terminated),
                                       float(t == horizon - 1 and not terminated))):
                    rows[k].append(v)
                obs = nxt
                if terminated:
                    break
    return {k: np.asarray(v, np.float32) for k, v in rows.items()}
