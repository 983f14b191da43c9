"""Task families on gymnasium MuJoCo v5: gravity / dof-damping multipliers.

A *task* is one MuJoCo environment whose gravity (vertical component only) or whose
per-DoF damping (every entry of ``model.dof_damping``) is the default value times a
multiplier (paper Appendix B.1; reference code ``collect_sac.py``). A *task set* is the
environment, the varied parameter, the train multipliers (0.5, 1.0, 1.5) and the unseen
test multipliers (0.8, 1.2) (reference code ``task_generation.py``, ``mb_sac_v2.py``).

Public API::

    TaskSpec(env_id, parameter, multiplier, env_kwargs=())   .name -> "gravity_x1.5"
    TaskSet(name, env_id, parameter, train_multipliers, test_multipliers, env_kwargs)
        .train_tasks / .test_tasks / .all_tasks -> tuple[TaskSpec, ...]
        .obs_dim / .act_dim / .max_episode_steps -> int   (read once from a real env, cached)
        .termination_fn -> fn(obs, action, next_obs) -> bool[...]
        .make_env(multiplier, **kwargs) -> gymnasium.Env
    TASK_SETS: dict[str, TaskSet];  get_task_set(name) -> TaskSet
    make_env(task, **kwargs) -> TaskParameterWrapper (actions in [-1, 1])
    read_defaults(model) / apply_task(model, task, defaults): the same parameter rule for
        a bare ``mujoco.MjModel`` (e.g. a batched simulator backend).

Every env returned by ``make_env`` takes actions in [-1, 1]; observations are returned as
the simulator gives them (float64); casting is the data layer's job.

Length: task specs, task sets, applying a task to a MuJoCo model and the gymnasium wrapper
that does it are one concern (what a task is in the simulator)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping

import gymnasium
import numpy as np
from gymnasium.wrappers import RescaleAction

PARAMETERS = ("gravity", "dof_damping")

# Where the original (multiplier 1.0) values are kept on the unwrapped env, so that a
# second TaskParameterWrapper around the same simulator never compounds multipliers.
_DEFAULTS_ATTR = "_reda_task_parameter_defaults"

EnvKwargs = tuple[tuple[str, Any], ...]


def _format_multiplier(m: float) -> str:
    text = format(m, ".6g")
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def _as_env_kwargs(env_kwargs: Any) -> EnvKwargs:
    if isinstance(env_kwargs, Mapping):
        items = env_kwargs.items()
    else:
        items = env_kwargs
    out = tuple(sorted((str(k), v) for k, v in items))
    try:
        hash(out)
    except TypeError as e:
        raise TypeError(f"env_kwargs values must be hashable, got {out!r}") from e
    return out


def _check_parameter(parameter: str) -> None:
    if parameter not in PARAMETERS:
        raise ValueError(f"parameter must be one of {PARAMETERS}, got {parameter!r}")


def _check_multiplier(m: float) -> float:
    m = float(m)
    if not math.isfinite(m) or m <= 0.0:
        raise ValueError(f"a task multiplier must be finite and > 0, got {m!r}")
    return m


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task: ``env_id`` with ``parameter`` scaled by ``multiplier``.

    ``env_kwargs`` are extra ``gymnasium.make`` keyword arguments of the task's family
    (e.g. Ant's ``include_cfrc_ext_in_observation=False``), as sorted (key, value) pairs.
    """

    env_id: str
    parameter: str
    multiplier: float
    env_kwargs: EnvKwargs = ()

    def __post_init__(self):
        _check_parameter(self.parameter)
        object.__setattr__(self, "multiplier", _check_multiplier(self.multiplier))
        object.__setattr__(self, "env_kwargs", _as_env_kwargs(self.env_kwargs))

    @property
    def name(self) -> str:
        """Filesystem-safe, unique within a task set, e.g. ``"gravity_x1.5"``."""
        return f"{self.parameter}_x{_format_multiplier(self.multiplier)}"

    def make_env(self, **kwargs) -> "TaskParameterWrapper":
        return make_env(self, **kwargs)


@functools.lru_cache(maxsize=None)
def _env_info(env_id: str, env_kwargs: EnvKwargs) -> tuple[int, int, int | None]:
    env = gymnasium.make(env_id, **dict(env_kwargs))
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape))
        max_steps = env.spec.max_episode_steps if env.spec is not None else None
    finally:
        env.close()
    return obs_dim, act_dim, max_steps


@dataclasses.dataclass(frozen=True)
class TaskSet:
    """An environment, the parameter varied, and the train / unseen test multipliers."""

    name: str
    env_id: str
    parameter: str
    train_multipliers: tuple[float, ...]
    test_multipliers: tuple[float, ...] = ()
    env_kwargs: EnvKwargs = ()

    def __post_init__(self):
        _check_parameter(self.parameter)
        train = tuple(_check_multiplier(m) for m in self.train_multipliers)
        test = tuple(_check_multiplier(m) for m in self.test_multipliers)
        if not train:
            raise ValueError(f"task set {self.name!r} has no train multipliers")
        if len(set(train + test)) != len(train) + len(test):
            raise ValueError(
                f"task set {self.name!r}: multipliers must be distinct across train and "
                f"test, got train={train} test={test}")
        object.__setattr__(self, "train_multipliers", train)
        object.__setattr__(self, "test_multipliers", test)
        object.__setattr__(self, "env_kwargs", _as_env_kwargs(self.env_kwargs))

    def task(self, multiplier: float) -> TaskSpec:
        return TaskSpec(self.env_id, self.parameter, multiplier, self.env_kwargs)

    @property
    def train_tasks(self) -> tuple[TaskSpec, ...]:
        return tuple(self.task(m) for m in self.train_multipliers)

    @property
    def test_tasks(self) -> tuple[TaskSpec, ...]:
        return tuple(self.task(m) for m in self.test_multipliers)

    @property
    def all_tasks(self) -> tuple[TaskSpec, ...]:
        """Train tasks first, then test tasks."""
        return self.train_tasks + self.test_tasks

    @property
    def obs_dim(self) -> int:
        return _env_info(self.env_id, self.env_kwargs)[0]

    @property
    def act_dim(self) -> int:
        return _env_info(self.env_id, self.env_kwargs)[1]

    @property
    def max_episode_steps(self) -> int | None:
        return _env_info(self.env_id, self.env_kwargs)[2]

    @property
    def termination_fn(self) -> Callable:
        from reda_jax.envs.termination import get_termination_fn
        return get_termination_fn(self.env_id)

    def make_env(self, multiplier: float, **kwargs) -> "TaskParameterWrapper":
        return make_env(self.task(multiplier), **kwargs)


_TRAIN = (0.5, 1.0, 1.5)
_TEST = (0.8, 1.2)
_ANT_KWARGS = (("include_cfrc_ext_in_observation", False),)

TASK_SETS: dict[str, TaskSet] = {
    ts.name: ts
    for ts in (
        TaskSet("halfcheetah-gravity", "HalfCheetah-v5", "gravity", _TRAIN, _TEST),
        TaskSet("hopper-gravity", "Hopper-v5", "gravity", _TRAIN, _TEST),
        TaskSet("hopper-damping", "Hopper-v5", "dof_damping", _TRAIN, _TEST),
        TaskSet("walker2d-gravity", "Walker2d-v5", "gravity", _TRAIN, _TEST),
        TaskSet("walker2d-damping", "Walker2d-v5", "dof_damping", _TRAIN, _TEST),
        TaskSet("ant-gravity", "Ant-v5", "gravity", _TRAIN, _TEST, _ANT_KWARGS),
        TaskSet("ant-damping", "Ant-v5", "dof_damping", _TRAIN, _TEST, _ANT_KWARGS),
        # The didactic example (paper Section 5.1): gravity x1.0 and x2.0, no test tasks.
        TaskSet("inverted-pendulum-gravity", "InvertedPendulum-v5", "gravity", (1.0, 2.0), ()),
    )
}


def get_task_set(name: str) -> TaskSet:
    try:
        return TASK_SETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown task set {name!r}; valid names: {', '.join(sorted(TASK_SETS))}"
        ) from None


# ----------------------------------------------------------------------------------
# Applying a task to a MuJoCo model.


def read_defaults(model) -> dict[str, np.ndarray]:
    """Copies of the parameters a task may scale, read from ``model`` (an ``MjModel``)."""
    return {
        "gravity": np.array(model.opt.gravity, dtype=np.float64, copy=True),
        "dof_damping": np.array(model.dof_damping, dtype=np.float64, copy=True),
    }


def apply_task(model, task: TaskSpec, defaults: Mapping[str, np.ndarray]) -> None:
    """Set ``model``'s task parameter to ``task.multiplier`` x ``defaults`` (in place).

    Gravity: only the vertical component, ``opt.gravity[2]``; dof_damping: every entry
    (entries that are 0 stay 0). Assigns from the defaults, so repeating it is harmless.
    """
    if task.parameter == "gravity":
        model.opt.gravity[2] = task.multiplier * defaults["gravity"][2]
    elif task.parameter == "dof_damping":
        model.dof_damping[:] = task.multiplier * defaults["dof_damping"]
    else:  # pragma: no cover - TaskSpec validates
        raise ValueError(task.parameter)


class TaskParameterWrapper(gymnasium.Wrapper):
    """Scales the simulator's gravity or dof damping once, at construction.

    The default (x1.0) values are read from the wrapped env's model the first time any
    TaskParameterWrapper wraps that simulator and stored on ``env.unwrapped``; the task is
    applied by assignment from them, so wrapping again (with the same or another task)
    never compounds. MuJoCo's reset does not touch the model, so the setting survives
    ``reset()``. The wrapper does no per-step work.

    Attributes: ``task`` (TaskSpec), ``default_value`` and ``value`` (np arrays: the
    default and current gravity vector / dof_damping vector).
    """

    def __init__(self, env: gymnasium.Env, task: TaskSpec):
        super().__init__(env)
        spec_id = env.spec.id if env.spec is not None else None
        if spec_id is not None and spec_id != task.env_id:
            raise ValueError(f"task is for {task.env_id!r} but the env is {spec_id!r}")
        self.task = task
        base = env.unwrapped
        model = base.model
        defaults = base.__dict__.get(_DEFAULTS_ATTR)
        if defaults is None:
            defaults = read_defaults(model)
            setattr(base, _DEFAULTS_ATTR, defaults)
        self._defaults = defaults
        # Reset both parameters to default first: a re-wrapped env must not keep the
        # other parameter's earlier change.
        for other in PARAMETERS:
            apply_task(model, TaskSpec(task.env_id, other, 1.0), defaults)
        apply_task(model, task, defaults)

    @property
    def default_value(self) -> np.ndarray:
        return self._defaults[self.task.parameter].copy()

    @property
    def value(self) -> np.ndarray:
        model = self.env.unwrapped.model
        src = model.opt.gravity if self.task.parameter == "gravity" else model.dof_damping
        return np.array(src, dtype=np.float64, copy=True)


def make_env(task: TaskSpec, **kwargs) -> TaskParameterWrapper:
    """``gymnasium.make(task.env_id, **task.env_kwargs, **kwargs)``, actions rescaled to
    [-1, 1] (``RescaleAction``), then the task's parameter applied (outermost wrapper, so
    ``env.task`` works). ``kwargs`` override the task family's ``env_kwargs``."""
    env = gymnasium.make(task.env_id, **{**dict(task.env_kwargs), **kwargs})
    space = env.action_space
    if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
        env = RescaleAction(env, np.full(space.shape, -1.0, space.dtype),
                            np.full(space.shape, 1.0, space.dtype))
    return TaskParameterWrapper(env, task)


def make_task_env(env_id: str, parameter: str, multiplier: float, env_kwargs=(), **kwargs
                  ) -> TaskParameterWrapper:
    """Entry point for gymnasium / Minari: the same env as ``make_env(TaskSpec(...))``."""
    return make_env(TaskSpec(env_id, parameter, multiplier, env_kwargs), **kwargs)


def task_env_spec(task: TaskSpec) -> gymnasium.envs.registration.EnvSpec:
    """An EnvSpec that rebuilds ``make_env(task)`` through ``gymnasium.make(spec)``, e.g. via
    Minari's ``dataset.recover_environment()`` (the inner env keeps its own time limit)."""
    return gymnasium.envs.registration.EnvSpec(
        id=f"reda_jax/{task.env_id.split('-')[0]}-{task.parameter.replace('_', '')}-v0",
        entry_point="reda_jax.envs.tasks:make_task_env",
        kwargs=dict(env_id=task.env_id, parameter=task.parameter, multiplier=task.multiplier,
                    env_kwargs=[list(kv) for kv in task.env_kwargs]),
        max_episode_steps=None, disable_env_checker=True)
