"""The tasks' real physics inside jitted code, with MuJoCo XLA (mjx): one env step from any
observation, for stage 2's branch rollouts in place of the learned task models
(`RepresentationConfig.rollout_physics = 'simulator'`, a control).

Optional: needs the `mujoco-mjx` package (the `mjx` extra). Works for the families whose
observation is (qpos[k:], qvel) with the first k positions excluded, as `eval.physics`
(k = 0: InvertedPendulum; k = 1: Hopper, Walker2d, HalfCheetah, whose dynamics do not
depend on the excluded x position, set to 0 here). Hopper and Walker2d observe the velocity
clipped to [-10, 10]; a clipped row restarts from the clipped value. The step is the
gymnasium v5 env's: actions in [-1, 1] rescaled to the actuators' range (the env's
`RescaleAction`), then `frame_skip` MuJoCo steps. The state is set from the observation
alone (no warm start, no previous contacts), in float32: one step agrees with the host
simulator to ~1e-5 on InvertedPendulum (`tests/test_mjx_physics.py`).

    make_simulator_step(tasks) -> step(task, obs (..., ds), act (..., da)) -> next_obs (..., ds)

`task` indexes `tasks` (an int or an int array broadcastable to obs.shape[:-1], traced or
not).
"""
from __future__ import annotations

import contextlib
import io
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from reda_jax.envs.tasks import TaskSpec

VELOCITY_CLIP = {"Hopper-v5": 10.0, "Walker2d-v5": 10.0}
"""Observed-velocity clip of the families that have one (gymnasium v5)."""

SimulatorStep = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def make_simulator_step(tasks: Sequence[TaskSpec], sparse: bool = True) -> SimulatorStep:
    """One env step of each task's physics as a pure jax function (module doc). The tasks
    must share one env family (env_id and env_kwargs).

    The model is put on the device with MuJoCo's sparse Jacobian and mass-matrix
    factorisation (`mjJAC_SPARSE`; the same physics): with the dense default (nv < 60), MJX
    factorises the mass matrix with jax's batched LAPACK kernels, which on XLA:CPU split a
    large batch over the intra-op thread pool and wait for it from inside that pool; with
    ~3300 hopper rows or more in one call every worker ended up waiting (a deadlock, gdb:
    `jax::ParallelBatchMap` under `CholeskyFactorizationKernel` and
    `TriMatrixEquationSolverKernel`; `scripts/mjx_hang_repro.py`). Sparse, 15000 rows run.
    sparse=False keeps MJX's default (to reproduce that)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # mjx prints that warp is absent
            from mujoco import mjx
    except ImportError as e:
        raise ImportError("rollouts in the real simulator need MuJoCo XLA: pip install -e "
                          "'.[mjx]' (the mujoco-mjx package)") from e
    tasks = list(tasks)
    if not tasks or len({(t.env_id, t.env_kwargs) for t in tasks}) != 1:
        raise ValueError(f"make_simulator_step needs tasks of one env family, got "
                         f"{[(t.env_id, t.env_kwargs) for t in tasks]}")
    gravity, damping = [], []
    for task in tasks:
        env = task.make_env()
        try:
            base = env.unwrapped
            model = base.model
            gravity.append(np.array(model.opt.gravity, np.float32))
            damping.append(np.array(model.dof_damping, np.float32))
            obs_dim = int(env.observation_space.shape[0])
            low = np.asarray(base.action_space.low, np.float32)
            high = np.asarray(base.action_space.high, np.float32)
            frame_skip = int(base.frame_skip)
            if sparse:   # see the doc above
                model.opt.jacobian = mujoco.mjtJacobian.mjJAC_SPARSE
            mx = mjx.put_model(model)     # the last task's; its parameters are replaced
        finally:
            env.close()
    nq, nv = model.nq, model.nv
    skip = nq + nv - obs_dim
    if skip not in (0, 1):
        raise ValueError(f"{tasks[0].env_id}: observations of size {obs_dim} are not "
                         f"(qpos[k:], qvel) of nq={nq}, nv={nv}")
    clip = VELOCITY_CLIP.get(tasks[0].env_id)
    gravity, damping = jnp.asarray(np.stack(gravity)), jnp.asarray(np.stack(damping))

    def one(task, obs, act):
        m = mx.replace(opt=mx.opt.replace(gravity=gravity[task]), dof_damping=damping[task])
        qpos = jnp.concatenate([jnp.zeros((skip,), obs.dtype), obs[:nq - skip]])
        ctrl = low + (act + 1.0) * 0.5 * (high - low)
        d = mjx.make_data(m).replace(qpos=qpos, qvel=obs[nq - skip:], ctrl=ctrl)
        d = jax.lax.fori_loop(0, frame_skip, lambda _, d: mjx.step(m, d), d)
        vel = d.qvel if clip is None else jnp.clip(d.qvel, -clip, clip)
        return jnp.concatenate([d.qpos[skip:], vel]).astype(obs.dtype)

    def step(task, obs, act):
        lead = obs.shape[:-1]
        task = jnp.broadcast_to(jnp.asarray(task, jnp.int32), lead).reshape(-1)
        out = jax.vmap(one)(task, obs.reshape(-1, obs.shape[-1]),
                            act.reshape(-1, act.shape[-1]))
        return out.reshape(lead + (obs.shape[-1],))

    return step
