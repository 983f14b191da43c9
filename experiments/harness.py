"""Flag-free pieces shared by experiments/benchmark.py and experiments/device_check.py:
synthetic data of a task set's shapes, the SAC timing setup, each ReDA stage's compiled
epoch (`stage_programs`), stage 1's task models alone (`task_model_epochs`, also
experiments.probe_stage1's), the matmul peak, and the interleaved, ceiling-checked timing
of them all (`measure_stages`)."""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from reda_jax import perf
from reda_jax.types import Transitions


def _batch(key, obs_dim, act_dim, lead=()):
    k = jax.random.split(key, 3)
    shp = lead + (256,)
    return Transitions(jax.random.normal(k[0], shp + (obs_dim,)),
                       jnp.tanh(jax.random.normal(k[1], shp + (act_dim,))), jnp.ones(shp),
                       jax.random.normal(k[2], shp + (obs_dim,)), jnp.zeros(shp), jnp.zeros(shp))


def _setup(sac, n_tasks, obs_dim, act_dim):
    """(state, update, batch) for one task (n_tasks=0) or n_tasks vmapped tasks."""
    if not n_tasks:
        return sac.init(jax.random.key(0)), sac.update, _batch(jax.random.key(2), obs_dim, act_dim)
    state = jax.vmap(sac.init)(jax.random.split(jax.random.key(0), n_tasks))
    return state, jax.vmap(sac.update), _batch(jax.random.key(2), obs_dim, act_dim, (n_tasks,))


def _scanned(update, n_tasks):
    def run(state, batch, keys):
        def body(s, k):
            if n_tasks:
                k = jax.random.split(k, n_tasks)
            s, m = update(s, batch, k)
            return s, m["critic_loss"]
        return jax.lax.scan(body, state, keys)
    return jax.jit(run)


def synthetic_data(task_set, n: int, seed: int = 0) -> dict:
    """Random transitions of the task set's shapes (timing does not depend on values)."""
    rng = np.random.default_rng(seed)
    ds, da = task_set.obs_dim, task_set.act_dim
    obs = rng.normal(size=(n, ds)).astype(np.float32)
    obs[:, 0] = 1.25  # Hopper: healthy height, so rollouts stay alive
    obs[:, 1] = 0.0
    done = np.zeros(n, np.float32)
    done[999::1000] = 1.0
    return dict(observations=obs, actions=rng.uniform(-1, 1, (n, da)).astype(np.float32),
                rewards=rng.normal(size=n).astype(np.float32),
                next_observations=obs + 0.01 * rng.normal(size=(n, ds)).astype(np.float32),
                terminals=np.zeros(n, np.float32), truncations=done)


@dataclasses.dataclass
class StageProgram:
    """One stage's jitted, vmapped epoch ready to time.

    fn: the compiled epoch (state donated); args(state) -> its arguments; state: the
    current (seed-stacked) state, replaced by each call's output; updates: gradient steps
    per epoch and seed (None: not one figure); flops: matmul FLOPs of one call, all seeds
    (`reda_jax.perf.matmul_flops`); compile_s: lowering + XLA compile time."""

    name: str
    seeds: int
    fn: Any
    args: Callable[[Any], tuple]
    state: Any
    updates: int | None
    flops: float
    compile_s: float = 0.0

    def __call__(self):
        out = self.fn(*self.args(self.state))
        self.state = out[0]
        return out


def epoch_name(stage: str) -> str:
    """'dynamics epoch', 'representation epoch', 'meta-policy epoch'."""
    return f"{stage.replace('_', '-')} epoch"


def stage_programs(task_set, config, data, workdir: str) -> tuple[list[StageProgram], Any]:
    """The epochs of every stage of `config`'s method (compiled, with initial states; each
    reads the previous stage's initial output) and the Trainer that made them (for
    evaluation). Seeds: config.num_seeds."""
    from reda_jax.algos.dynamics_data import epoch_updates
    from reda_jax.stage_loop import epoch_keys, seed_keys
    from reda_jax.train import Trainer

    seeds = config.num_seeds
    os.makedirs(workdir, exist_ok=True)
    tr = Trainer(config, data, workdir, show_progress=False)
    specs, upstream = [], {}
    for stage in tr.method.stages:   # each epoch reads the previous stage's initial output
        keys = epoch_keys(seed_keys(0, seeds, stage.index), 1)
        state = tr.init_state(stage)
        specs.append((epoch_name(stage.name), tr.epoch_fns[stage.name],
                      jax.vmap(stage.epoch, in_axes=(0, 0, None, 0)),
                      functools.partial(lambda up, d, k, s: (s, up, d, k), upstream,
                                        stage.data, keys),
                      state, epoch_updates(stage.data, config.dynamics.batch_size)[0]
                      if stage.name == "dynamics" else config.meta.updates_per_epoch
                      if stage.name == "meta_policy" else None))
        upstream = stage.output(state)
    out = []
    for name, jitted, plain, args, state, updates in specs:
        flops = perf.matmul_flops(plain, *args(state))
        t = time.perf_counter()
        compiled = jitted.lower(*args(state)).compile()
        compile_s = time.perf_counter() - t
        prog = StageProgram(name, seeds, compiled, args, jax.tree.map(jnp.copy, state),
                            updates, flops, compile_s)
        jax.block_until_ready(prog())   # warm-up call
        out.append(prog)
    return out, tr


def peak_program(size: int = 2048):
    """(call, flops): a jitted size x size f32 matmul, the practical peak."""
    a = jax.random.normal(jax.random.key(0), (size, size))
    b = jax.random.normal(jax.random.key(1), (size, size))
    dot = jax.jit(lambda x, y: x @ y).lower(a, b).compile()
    jax.block_until_ready(dot(a, b))
    return (lambda: dot(a, b)), 2.0 * size ** 3


def synthetic_train_data(task_set, train_rows: int, test_rows: int):
    """TrainData of random transitions with the task set's shapes."""
    from reda_jax.data.train_data import make_train_data
    names = [t.name for t in task_set.train_tasks]
    train = {n: synthetic_data(task_set, train_rows, i) for i, n in enumerate(names)}
    test = {t.name: synthetic_data(task_set, test_rows, 10 + i)
            for i, t in enumerate(task_set.all_tasks)}
    return make_train_data(task_set, train, test)


def measure_stages(programs: list[StageProgram], repeats: int, peak_size: int = 2048
                   ) -> tuple[list[dict], dict]:
    """Times the matmul peak and every program interleaved, `repeats` rounds; returns
    per-program rows and the peak's row (median / min / max seconds and FLOP/s), refusing
    any rate above the machine's theoretical ceiling."""
    ceiling, how = perf.machine_ceiling()
    peak_call, peak_flops = peak_program(peak_size)
    fns = {"peak": peak_call, **{f"{p.name}|{p.seeds}": p for p in programs}}
    times = perf.interleaved(fns, repeats)

    def row(flops, ts, what):
        med, lo, hi = perf.spread(ts)
        perf.checked_rate(flops, lo, ceiling, what)   # the fastest repetition too
        return {"s_median": med, "s_min": lo, "s_max": hi, "flops": flops,
                "gflops_median": flops / med / 1e9, "gflops_min": flops / hi / 1e9,
                "gflops_max": flops / lo / 1e9}

    peak = {"what": f"jnp.dot {peak_size}x{peak_size} f32", "ceiling_gflops": ceiling / 1e9,
            "ceiling_how": how, **row(peak_flops, times["peak"], "matmul peak")}
    rows = []
    for p in programs:
        r = row(p.flops, times[f"{p.name}|{p.seeds}"], f"{p.name}, {p.seeds} seed(s)")
        r.update(stage=p.name, seeds=p.seeds, compile_s=p.compile_s, updates=p.updates,
                 of_peak=r["gflops_median"] / peak["gflops_median"],
                 seed_updates_per_s=(p.updates * p.seeds / r["s_median"]) if p.updates else None)
        rows.append(r)
    return rows, peak


def format_stage_rows(rows: list[dict], peak: dict) -> list[tuple[str, str]]:
    """Report lines: ceiling, peak, every stage (median [min-max]), compile times."""
    out = [("theoretical ceiling", peak["ceiling_how"]),
           (f"{peak['what']} (practical peak)",
            f"{peak['gflops_median']:,.1f} GFLOP/s [{peak['gflops_min']:,.1f}-"
            f"{peak['gflops_max']:,.1f}] = {peak['gflops_median'] / peak['ceiling_gflops']:.0%}"
            " of the ceiling")]
    for r in rows:
        ups = (f", {r['seed_updates_per_s']:,.1f} seed-updates/s" if r["seed_updates_per_s"]
               else "")
        out.append((f"{r['stage']}, {r['seeds']} seed(s)",
                    f"{r['s_median']:.3f} s [{r['s_min']:.3f}-{r['s_max']:.3f}]{ups}, "
                    f"{r['flops'] / 1e9:,.1f} GFLOP/epoch, {r['gflops_median']:,.1f} GFLOP/s "
                    f"[{r['gflops_min']:,.1f}-{r['gflops_max']:,.1f}] = {r['of_peak']:.0%} of "
                    "peak"))
    out.append(("compile (held apart)", ", ".join(f"{r['stage'].split()[0]} x{r['seeds']}: "
                                                  f"{r['compile_s']:.1f} s" for r in rows)))
    return out


def acting_rate(task_set, steps: int) -> float:
    """Batched steps/s of the collection loop without updates: one jitted policy call per
    step for all tasks, then each task's host simulator (all tasks step once per batch)."""
    from reda_jax.algos.sac import make_sac
    from reda_jax.configs import SACConfig
    from reda_jax.behavior.collect import make_batched_act
    from reda_jax.envs.tasks import make_env
    sac = make_sac(SACConfig(), task_set.obs_dim, task_set.act_dim)
    m = len(task_set.all_tasks)
    params = jax.vmap(sac.init)(jax.random.split(jax.random.key(0), m)).actor_params
    act = jax.jit(make_batched_act(sac), static_argnums=3)
    envs = [make_env(t) for t in task_set.all_tasks]
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    key = jax.random.key(0)
    act(params, obs, key, False)                                   # compile outside the timing
    t = time.perf_counter()
    for _ in range(steps):
        a, key = act(params, obs, key, False)
        a = np.asarray(a)
        for i, e in enumerate(envs):
            o, _, term, trunc, _ = e.step(a[i])
            obs[i] = e.reset()[0] if term or trunc else o
    return steps / (time.perf_counter() - t)


def task_model_epochs(config, train_arrays, obs_dim: int, act_dim: int):
    """Stage 1's task models alone, vmapped over seeds and tasks: (fns, init(keys (S,)) ->
    EnsembleState (S, T, ...), epoch(state, keys (S,)) -> (state, metrics (S, T, ...)),
    updates per epoch), on the split `make_dynamics_data` makes for `config`."""
    import jax

    from reda_jax.algos.dynamics_data import epoch_updates, make_dynamics_data
    from reda_jax.algos.reda import make_task_models
    dcfg, T = config.dynamics, len(train_arrays)
    fns = make_task_models(dcfg, obs_dim, act_dim, T).fns
    ddata = make_dynamics_data(train_arrays, dcfg, config.seed)
    steps = epoch_updates(ddata, dcfg.batch_size)[0]

    def init(keys):
        return jax.vmap(lambda k: jax.vmap(fns.init)(
            jax.random.split(k, T), ddata.inputs, ddata.targets, ddata.train_size))(keys)

    def one_epoch(state, key):
        return jax.vmap(lambda s, x, y, n, hx, hy, hn, k: fns.train_epoch(
            s, x, y, n, hx, hy, hn, k, steps))(
            state, ddata.inputs, ddata.targets, ddata.train_size, ddata.holdout_inputs,
            ddata.holdout_targets, ddata.holdout_size, jax.random.split(key, T))

    return fns, init, jax.vmap(one_epoch), steps
