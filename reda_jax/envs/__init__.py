"""Task families on gymnasium MuJoCo v5 and pure-jnp termination functions.

See ``docs/envs.md``.
"""

from reda_jax.envs.tasks import (
    PARAMETERS,
    TASK_SETS,
    TaskParameterWrapper,
    TaskSet,
    TaskSpec,
    apply_task,
    get_task_set,
    make_env,
    make_task_env,
    read_defaults,
    task_env_spec,
)
from reda_jax.envs.termination import (
    TERMINATION_FNS,
    ant_termination,
    get_termination_fn,
    half_cheetah_termination,
    hopper_termination,
    inverted_pendulum_termination,
    walker2d_termination,
)

__all__ = [
    "PARAMETERS",
    "TASK_SETS",
    "TERMINATION_FNS",
    "TaskParameterWrapper",
    "TaskSet",
    "TaskSpec",
    "ant_termination",
    "apply_task",
    "get_task_set",
    "get_termination_fn",
    "half_cheetah_termination",
    "hopper_termination",
    "inverted_pendulum_termination",
    "make_env",
    "make_task_env",
    "task_env_spec",
    "read_defaults",
    "walker2d_termination",
]
