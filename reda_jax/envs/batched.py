"""Many task environments stepped together with MuJoCo directly (no gymnasium per step).

``BatchedEnvs(tasks, env_tasks)`` holds one ``MjModel`` per task (taken from the task's own
gymnasium env, ``make_env(task)``, so gravity / damping are applied by the same code) and
one ``MjData`` per environment. ``step`` advances a subset of the environments with one
``mujoco.mj_step(model, data, nstep=frame_skip)`` each, then computes observations,
rewards and terminations for the whole subset at once with numpy. The results are those
of the gymnasium v5 env stepped with the same actions, bit for bit
(``tests/test_batched_envs.py`` checks every family step by step):

* actions in [-1, 1] go through the same action wrappers ``make_env`` put on the env
  (``RescaleAction`` for InvertedPendulum), applied to the batch (they are elementwise);
* reward terms are the v5 envs' expressions, in their order and dtypes (the control cost
  is float32 for float32 actions, as in gymnasium), with the weights and ranges read from
  the task's env (so ``env_kwargs`` such as Ant's ``include_cfrc_ext_in_observation`` are
  honoured);
* ``reset`` runs the task's gymnasium env's own ``reset(seed=...)`` and copies its whole
  ``MjData`` (``mj_copyData``), so initial states are gymnasium's for the same seed;
* truncation is the env's ``TimeLimit`` (``max_episode_steps``), counted per environment.

``mj_rnePostConstraint`` (which gymnasium calls after every step) only fills ``cfrc_ext``
and friends and does not change the state: it is run only for families that read
``cfrc_ext`` (Ant).

Supported: Hopper-v5, Walker2d-v5, HalfCheetah-v5, Ant-v5, InvertedPendulum-v5
(``FAMILIES``); anything else is refused with a clear error.

Length: one class whose per-family physics (observations, rewards, terminations) must stay
bit-for-bit the gymnasium envs'; split, the pieces would be checked apart from the stepping
they serve.

Public API::

    BatchedEnvs(tasks, env_tasks)   .num_envs / .obs_dim / .act_dim / .max_episode_steps
        .reset(idx, seeds) -> obs (n, obs_dim) float64
        .step(idx, actions (n, act_dim)) -> (obs (n, obs_dim) float64, reward (n,) float64,
                                             terminated (n,) bool, truncated (n,) bool)
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import gymnasium
import mujoco
import numpy as np

from reda_jax.envs.tasks import TaskParameterWrapper, TaskSpec, make_env


@dataclasses.dataclass(frozen=True)
class _Physics:
    """What one step of a family reads from the simulators of a batch (rows = envs)."""

    qpos: np.ndarray            # (n, nq) after the step
    qvel: np.ndarray            # (n, nv) after the step
    x_before: np.ndarray        # (n,) the forward position before the step
    x_after: np.ndarray         # (n,)
    cfrc_ext: np.ndarray | None  # (n, nbody, 6) after mj_rnePostConstraint, Ant only


def _ctrl_cost(weight: float, actions: np.ndarray) -> np.ndarray:
    """weight * sum(square(a)) per row, in the actions' dtype (gymnasium's control_cost)."""
    return weight * np.sum(np.square(actions), axis=-1)


# -- per-family observation / reward / termination, vectorised over envs ----------------
# Each takes the unwrapped gymnasium env (for its weights and ranges) and returns
# fn(phys, actions, dt) -> (obs, reward, terminated) and an obs-only fn(phys).


def _hopper_like(env, healthy_state: bool):
    fw, cw, hr = env._forward_reward_weight, env._ctrl_cost_weight, env._healthy_reward
    zmin, zmax = env._healthy_z_range
    amin, amax = env._healthy_angle_range
    smin, smax = env._healthy_state_range if healthy_state else (None, None)
    terminate = bool(env._terminate_when_unhealthy)
    first = 1 if env._exclude_current_positions_from_observation else 0

    def obs(p: _Physics) -> np.ndarray:
        return np.concatenate([p.qpos[:, first:], np.clip(p.qvel, -10, 10)], axis=1)

    def step(p: _Physics, actions, dt):
        z, angle = p.qpos[:, 1], p.qpos[:, 2]
        healthy = (zmin < z) & (z < zmax) & (amin < angle) & (angle < amax)
        if healthy_state:  # Hopper: state_vector()[2:] strictly inside the range
            state = np.concatenate([p.qpos, p.qvel], axis=1)[:, 2:]
            healthy &= np.all((smin < state) & (state < smax), axis=1)
        x_velocity = (p.x_after - p.x_before) / dt
        rewards = fw * x_velocity + healthy * hr
        reward = rewards - _ctrl_cost(cw, actions)
        return obs(p), reward, ~healthy & terminate

    return obs, step


def _half_cheetah(env):
    fw, cw = env._forward_reward_weight, env._ctrl_cost_weight
    first = 1 if env._exclude_current_positions_from_observation else 0

    def obs(p: _Physics) -> np.ndarray:
        return np.concatenate([p.qpos[:, first:], p.qvel], axis=1)

    def step(p: _Physics, actions, dt):
        x_velocity = (p.x_after - p.x_before) / dt
        reward = fw * x_velocity - _ctrl_cost(cw, actions)
        return obs(p), reward, np.zeros(len(reward), bool)

    return obs, step


def _ant(env):
    fw, cw, ccw = env._forward_reward_weight, env._ctrl_cost_weight, env._contact_cost_weight
    hr, (zmin, zmax) = env._healthy_reward, env._healthy_z_range
    fmin, fmax = env._contact_force_range
    terminate = bool(env._terminate_when_unhealthy)
    first = 2 if env._exclude_current_positions_from_observation else 0
    with_forces = bool(env._include_cfrc_ext_in_observation)

    def obs(p: _Physics) -> np.ndarray:
        parts = [p.qpos[:, first:], p.qvel]
        if with_forces:
            forces = np.clip(p.cfrc_ext, fmin, fmax)[:, 1:]
            parts.append(forces.reshape(len(forces), -1))
        return np.concatenate(parts, axis=1)

    def step(p: _Physics, actions, dt):
        state = np.concatenate([p.qpos, p.qvel], axis=1)
        z = state[:, 2]
        healthy = np.all(np.isfinite(state), axis=1) & (zmin <= z) & (z <= zmax)
        x_velocity = (p.x_after - p.x_before) / dt
        rewards = x_velocity * fw + healthy * hr
        forces = np.clip(p.cfrc_ext, fmin, fmax).reshape(len(z), -1)
        contact_cost = ccw * np.sum(np.square(forces), axis=1)
        reward = rewards - (_ctrl_cost(cw, actions) + contact_cost)
        return obs(p), reward, ~healthy & terminate

    return obs, step


def _inverted_pendulum(env):
    def obs(p: _Physics) -> np.ndarray:
        return np.concatenate([p.qpos, p.qvel], axis=1)

    def step(p: _Physics, actions, dt):
        o = obs(p)
        terminated = ~np.all(np.isfinite(o), axis=1) | (np.abs(o[:, 1]) > 0.2)
        return o, (~terminated).astype(np.float64), terminated

    return obs, step


@dataclasses.dataclass(frozen=True)
class _Family:
    rules: Callable        # unwrapped env -> (obs_fn, step_fn)
    forward_body: str | None  # "qpos": x = qpos[0]; "main_body": the body's xpos x; None
    needs_forces: bool     # run mj_rnePostConstraint and read cfrc_ext


FAMILIES: dict[str, _Family] = {
    "Hopper-v5": _Family(lambda env: _hopper_like(env, True), "qpos", False),
    "Walker2d-v5": _Family(lambda env: _hopper_like(env, False), "qpos", False),
    "HalfCheetah-v5": _Family(_half_cheetah, "qpos", False),
    "Ant-v5": _Family(_ant, "main_body", True),
    "InvertedPendulum-v5": _Family(_inverted_pendulum, None, False),
}

# Wrappers make_env / gymnasium.make put around a v5 env that do nothing to a step's
# numbers (besides the time limit, which BatchedEnvs counts itself).
_PASSIVE = (TaskParameterWrapper, gymnasium.wrappers.TimeLimit,
            gymnasium.wrappers.OrderEnforcing, gymnasium.wrappers.PassiveEnvChecker)


def _action_transforms(env: gymnasium.Env) -> list[Callable[[np.ndarray], np.ndarray]]:
    """The action maps of env's wrapper chain, outermost first; refuses any wrapper whose
    effect on a step is unknown."""
    out = []
    while isinstance(env, gymnasium.Wrapper):
        if isinstance(env, gymnasium.ActionWrapper):
            out.append(env.action)
        elif not isinstance(env, _PASSIVE):
            raise ValueError(f"BatchedEnvs cannot reproduce the wrapper {type(env).__name__}")
        env = env.env
    return out


class BatchedEnvs:
    """``len(env_tasks)`` environments; env i runs ``tasks[env_tasks[i]]`` (module doc)."""

    def __init__(self, tasks: Sequence[TaskSpec], env_tasks: Sequence[int]):
        tasks = list(tasks)
        if not tasks:
            raise ValueError("BatchedEnvs needs at least one task")
        for task in tasks:
            if task.env_id not in FAMILIES:
                raise ValueError(f"BatchedEnvs has no rules for {task.env_id!r}; supported: "
                                 f"{', '.join(sorted(FAMILIES))}")
        env_tasks = np.asarray(env_tasks, np.int64)
        if env_tasks.ndim != 1 or not len(env_tasks):
            raise ValueError(f"env_tasks must be a non-empty 1-D list of task indices, got "
                             f"shape {env_tasks.shape}")
        if env_tasks.min() < 0 or env_tasks.max() >= len(tasks):
            raise ValueError(f"env_tasks must index the {len(tasks)} tasks, got values in "
                             f"[{env_tasks.min()}, {env_tasks.max()}]")
        families = {(task.env_id, task.env_kwargs) for task in tasks}
        if len(families) > 1:
            raise ValueError(f"BatchedEnvs steps tasks of one family (env id and env_kwargs) "
                             f"together, got {sorted(families)}")
        # One gymnasium env per task: its model (the task applied) and its reset. The tasks
        # differ only in model parameters, so the first env's rules, dt, frame skip and
        # action wrappers hold for all.
        self.tasks = tuple(tasks)
        self._task_envs = [make_env(task) for task in tasks]
        first = self._task_envs[0]
        self.obs_dim = int(np.prod(first.observation_space.shape))
        self.act_dim = int(np.prod(first.action_space.shape))
        family = FAMILIES[tasks[0].env_id]
        self._family = family
        unwrapped = first.unwrapped
        self._obs_fn, self._step_fn = family.rules(unwrapped)
        self._dt = float(unwrapped.dt)
        self._frame_skip = int(unwrapped.frame_skip)
        self._models = [e.unwrapped.model for e in self._task_envs]
        self._transforms = _action_transforms(first)
        self._body = int(unwrapped.model.body(getattr(unwrapped, "_main_body", 1)).id) \
            if family.forward_body == "main_body" else None
        limit = first.spec.max_episode_steps if first.spec is not None else None
        self.max_episode_steps = None if limit is None else int(limit)
        self.env_tasks = env_tasks
        self.num_envs = len(env_tasks)
        self._data = [mujoco.MjData(self._models[t]) for t in env_tasks]
        m0 = self._models[0]
        self._qpos = np.zeros((self.num_envs, m0.nq))
        self._qvel = np.zeros((self.num_envs, m0.nv))
        self._x = np.zeros(self.num_envs)     # forward position after the last step / reset
        self._cfrc = np.zeros((self.num_envs, m0.nbody, 6)) if family.needs_forces else None
        self._elapsed = np.zeros(self.num_envs, np.int64)

    def _check_idx(self, idx) -> np.ndarray:
        idx = np.asarray(idx, np.int64)
        if idx.ndim != 1 or (len(idx) and (idx.min() < 0 or idx.max() >= self.num_envs)):
            raise ValueError(f"env indices must be a 1-D array in [0, {self.num_envs}), got "
                             f"{idx if idx.size < 10 else idx.shape}")
        return idx

    def _read(self, idx: np.ndarray) -> None:
        """Copies the state of envs idx into the gather buffers (after a reset)."""
        for i in idx:
            d = self._data[i]
            self._qpos[i] = d.qpos
            self._qvel[i] = d.qvel
            if self._body is not None:
                self._x[i] = d.xpos[self._body, 0]
            elif self._family.forward_body == "qpos":
                self._x[i] = d.qpos[0]
            if self._cfrc is not None:
                self._cfrc[i] = d.cfrc_ext

    def _physics(self, idx, x_before) -> _Physics:
        return _Physics(self._qpos[idx], self._qvel[idx], x_before, self._x[idx],
                        None if self._cfrc is None else self._cfrc[idx])

    def reset(self, idx, seeds) -> np.ndarray:
        """Resets envs idx as their task's gymnasium env does with ``reset(seed=seeds[j])``;
        returns their observations (n, obs_dim) float64."""
        idx = self._check_idx(idx)
        seeds = np.asarray(seeds)
        if seeds.shape != idx.shape:
            raise ValueError(f"reset needs one seed per env index, got {seeds.shape} for "
                             f"{idx.shape}")
        for i, seed in zip(idx, seeds):
            t = self.env_tasks[i]
            oracle = self._task_envs[t]
            oracle.reset(seed=int(seed))
            mujoco.mj_copyData(self._data[i], self._models[t], oracle.unwrapped.data)
        self._elapsed[idx] = 0
        self._read(idx)
        return self._obs_fn(self._physics(idx, None))

    def step(self, idx, actions):
        """One env step of envs idx with actions (n, act_dim) in the task's action space
        ([-1, 1]); returns (obs, reward, terminated, truncated), rows in idx's order."""
        idx = self._check_idx(idx)
        actions = np.asarray(actions)
        if actions.shape != (len(idx), self.act_dim):
            raise ValueError(f"actions must be (n, act_dim) = {(len(idx), self.act_dim)}, got "
                             f"{actions.shape}")
        if not len(idx):
            return (np.zeros((0, self.obs_dim)), np.zeros(0), np.zeros(0, bool),
                    np.zeros(0, bool))
        for f in self._transforms:
            actions = f(actions)
        x_before = self._x[idx]
        fs, models, data, tasks = self._frame_skip, self._models, self._data, self.env_tasks
        qpos, qvel, x, cfrc, body = self._qpos, self._qvel, self._x, self._cfrc, self._body
        x_from_qpos = self._family.forward_body == "qpos"
        for j, i in enumerate(idx):   # the only per-env Python: set, step, gather
            t = tasks[i]
            d = data[i]
            d.ctrl[:] = actions[j]
            mujoco.mj_step(models[t], d, nstep=fs)
            qpos[i] = d.qpos
            qvel[i] = d.qvel
            if x_from_qpos:
                x[i] = qpos[i, 0]
            elif body is not None:
                x[i] = d.xpos[body, 0]
            if cfrc is not None:
                mujoco.mj_rnePostConstraint(models[t], d)
                cfrc[i] = d.cfrc_ext
        self._elapsed[idx] += 1
        obs, reward, terminated = self._step_fn(self._physics(idx, x_before), actions,
                                                self._dt)
        limit = self.max_episode_steps
        truncated = (self._elapsed[idx] >= limit) if limit is not None \
            else np.zeros(len(idx), bool)
        return obs, reward, terminated, truncated
