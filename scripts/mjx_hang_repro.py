"""Minimal reproduction of an XLA:CPU deadlock (docs/notebook.md, 2026-12-04): ONE jitted, vmapped MuJoCo XLA
step of hopper-gravity's training tasks over `--rows_per_task` x 3 rows, with MJX's default
dense mass-matrix factorisation (`--dense`) or the sparse one `envs.mjx_physics` uses.

  timeout 120 python scripts/mjx_hang_repro.py --rows_per_task 1100 --dense   # hangs, 0% CPU
  python scripts/mjx_hang_repro.py --rows_per_task 5000                       # 15000 rows run

Measured on a 2-core Intel Xeon, jax 0.10.2, mujoco-mjx 3.17.0, 2026-12-04. Dense: 300,
1500 and 3000 rows ran (3000 in ~5.5 s); 3300, 3750, 4080, 4200, 5400 and 7500 compiled,
then hung (process idle, flat memory) until killed; gdb showed the workers parked in jax's
LAPACK FFI kernels (`jax::ParallelBatchMap` under `CholeskyFactorizationKernel` and
`TriMatrixEquationSolverKernel`, each waiting on a BlockingCounter for work queued on the
same pool). With XLA_FLAGS=--xla_cpu_multi_thread_eigen=false 3300 ran and 7500 hung.
Sparse: 7500 rows in 16 s, 15000 in 34 s. Prints compile and run seconds; run it under
`timeout`."""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from reda_jax.envs.mjx_physics import make_simulator_step
from reda_jax.envs.tasks import get_task_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows_per_task", type=int, default=1000)
    parser.add_argument("--dense", action="store_true", help="MJX's default factorisation")
    args = parser.parse_args()
    tasks = get_task_set("hopper-gravity").train_tasks
    n, T = args.rows_per_task, len(tasks)
    rng = np.random.default_rng(0)
    standing = np.array([1.25] + [0.0] * 10, np.float32)    # hopper's initial observation
    obs = jnp.asarray(standing + 0.005 * rng.normal(size=(T * n, 11)).astype(np.float32))
    act = jnp.asarray(rng.uniform(-1, 1, (T * n, 3)).astype(np.float32))
    task = jnp.repeat(jnp.arange(T), n)
    step = jax.jit(make_simulator_step(tasks, sparse=not args.dense))
    t = time.time()
    compiled = step.lower(task, obs, act).compile()
    print(f"compiled in {time.time() - t:.1f} s; stepping {T * n} rows", flush=True)
    t = time.time()
    jax.block_until_ready(compiled(task, obs, act))
    print(f"stepped {T * n} rows in {time.time() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
