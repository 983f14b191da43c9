"""Speed figures of the foundation, measured side by side in one run (not a test).

  python -m experiments.benchmark                      # all sections
  python -m experiments.benchmark --sections=env,sac   # some of them

Sections:
  env      env steps/s: bare gymnasium env vs our task wrappers (random actions)
  sac      SAC updates/s, 1 task vs 5 tasks vmapped; lax.scan of N updates vs a Python loop
           of jitted single updates; compile time apart from run time
  flops    FLOP/s of the SAC update (XLA cost analysis / time) vs a large jnp.dot (peak)
  acting   the collection loop without updates: batched policy call + host simulators
  collect  wall time of a `mini` collection (read from --collect_workdir's returns.csv,
           or measured by running it with --run_collect)
  reda     each ReDA stage's epoch (mini preset sizes, synthetic data): seed-updates/s for
           1 and 5 vmapped seeds, FLOP rate vs the jnp.dot peak, compile time; evaluation
           env steps/s vs the bare simulator; peak memory; finished mini runs' wall time
Targets (see the README): wrappers >= 90% of bare; SAC >= 50% of the jnp.dot rate;
5 vmapped tasks >= 0.95x one task's per-task throughput; scan faster than the loop.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import time

import gymnasium
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from reda_jax.algos.sac import make_sac
from reda_jax.configs import SACConfig
from reda_jax.data.collect import make_batched_act
from reda_jax.envs.tasks import TASK_SETS, get_task_set, make_env
from reda_jax.types import Transitions
from reda_jax.validate import InputError, at_least, choices, run_app

_SECTIONS = flags.DEFINE_list("sections", ["env", "sac", "flops", "acting", "collect", "reda"],
                              "Which sections to run.")
_TASK_SET = flags.DEFINE_string("task_set", "hopper-gravity", "Task set for env/acting/SAC dims.")
_ENV_STEPS = flags.DEFINE_integer("env_steps", 20_000, "Steps per env measurement.")
_UPDATES = flags.DEFINE_integer("updates", 300, "SAC updates per timing.")
_COLLECT_WORKDIR = flags.DEFINE_string("collect_workdir", None,
                                       "A finished mini collection to read the wall time from.")
_RUN_COLLECT = flags.DEFINE_bool("run_collect", False, "Run the mini collection to time it.")


def timeit(fn, repeats: int = 3) -> float:
    """Best wall time of `fn()` over repeats (fn must block until done)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def report(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def bench_env(task_set) -> None:
    print(f"[env] {task_set.env_id}, random actions, {_ENV_STEPS.value} steps each")
    task = task_set.task(1.0)

    def run(env):
        env.reset(seed=0)
        acts = np.random.default_rng(0).uniform(-1, 1, (_ENV_STEPS.value,) + env.action_space.shape)
        scale = env.action_space.high
        t = time.perf_counter()
        for a in acts:
            _, _, term, trunc, _ = env.step((a * scale).astype(np.float32))
            if term or trunc:
                env.reset()
        return _ENV_STEPS.value / (time.perf_counter() - t)

    kwargs = dict(task.env_kwargs)
    raw = gym.make(task.env_id, **kwargs).unwrapped
    # Interleave the measurements so that load from other processes hits all alike.
    rates = {"bare simulator (mujoco.mj_step)": [], "bare gymnasium env (gym.make)": [],
             "our task env (make_env)": []}
    for _ in range(3):
        model = raw.model
        t = time.perf_counter()
        for _ in range(_ENV_STEPS.value):
            raw._step_mujoco_simulation(np.zeros(model.nu), raw.frame_skip)
        rates["bare simulator (mujoco.mj_step)"].append(_ENV_STEPS.value / (time.perf_counter() - t))
        rates["bare gymnasium env (gym.make)"].append(run(gym.make(task.env_id, **kwargs)))
        rates["our task env (make_env)"].append(run(make_env(task)))
    best = {k: max(v) for k, v in rates.items()}
    rows = [(k, f"{v:,.0f} steps/s") for k, v in best.items()]
    ratio = best["our task env (make_env)"] / best["bare gymnasium env (gym.make)"]
    rows.append(("wrappers / bare gymnasium env", f"{ratio:.2f}x (target >= 0.90)"))
    report(rows)


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


def bench_sac(task_set) -> dict:
    obs_dim, act_dim = task_set.obs_dim, task_set.act_dim
    sac = make_sac(SACConfig(), obs_dim, act_dim)
    n = _UPDATES.value
    keys = jax.random.split(jax.random.key(1), n)
    print(f"[sac] 2x256 actor + twin critics, batch 256, obs {obs_dim}, act {act_dim}; "
          f"{n} updates per timing")
    out = {}
    rows = []
    for n_tasks in (0, 5):
        state, update, batch = _setup(sac, n_tasks, obs_dim, act_dim)
        f = _scanned(update, n_tasks)
        t = time.perf_counter()
        compiled = f.lower(state, batch, keys).compile()
        compile_s = time.perf_counter() - t
        jax.block_until_ready(compiled(state, batch, keys))
        dt = timeit(lambda: jax.block_until_ready(compiled(state, batch, keys)))
        per_task = n * max(n_tasks, 1) / dt
        out[n_tasks] = per_task
        label = f"{n_tasks} tasks vmapped" if n_tasks else "1 task"
        rows.append((f"scan, {label}", f"{n / dt:,.1f} updates/s = {per_task:,.1f} task-updates/s "
                                      f"(compile {compile_s:.1f} s)"))
    rows.append(("5 vmapped / 1 task, per-task throughput", f"{out[5] / out[0]:.2f}x (target >= 0.95)"))
    # Python loop of jitted single updates.
    state = sac.init(jax.random.key(0))
    batch = _batch(jax.random.key(2), obs_dim, act_dim)
    single = jax.jit(sac.update)
    t = time.perf_counter()
    single = single.lower(state, batch, keys[0]).compile()
    compile_s = time.perf_counter() - t

    def loop():
        s = state
        for k in keys:
            s, _ = single(s, batch, k)
        jax.block_until_ready(s)

    loop()
    dt = timeit(loop)
    rows.append(("python loop of jitted updates, 1 task", f"{n / dt:,.1f} updates/s "
                                                          f"(compile {compile_s:.1f} s)"))
    rows.append(("scan / python loop", f"{out[0] / (n / dt):.2f}x (target > 1)"))
    report(rows)
    return out


def bench_flops(task_set) -> None:
    obs_dim, act_dim = task_set.obs_dim, task_set.act_dim
    sac = make_sac(SACConfig(), obs_dim, act_dim)
    n = _UPDATES.value
    keys = jax.random.split(jax.random.key(1), n)
    print("[flops] XLA cost analysis of the compiled update / measured time, vs a large jnp.dot")
    rows = []
    size = 2048
    a = jax.random.normal(jax.random.key(0), (size, size))
    dot = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
    jax.block_until_ready(dot(a, a))
    peak = 2 * size**3 / timeit(lambda: jax.block_until_ready(dot(a, a)), repeats=5)
    rows.append((f"jnp.dot {size}x{size} f32 (practical peak)", f"{peak / 1e9:,.1f} GFLOP/s"))
    for n_tasks in (0, 5):
        state, update, batch = _setup(sac, n_tasks, obs_dim, act_dim)
        single = jax.jit(update).lower(state, batch, keys[0] if not n_tasks else
                                       jax.random.split(keys[0], n_tasks)).compile()
        flops = _flops(single)
        compiled = _scanned(update, n_tasks).lower(state, batch, keys).compile()
        jax.block_until_ready(compiled(state, batch, keys))
        dt = timeit(lambda: jax.block_until_ready(compiled(state, batch, keys)))
        rate = flops * n / dt
        label = f"{n_tasks} tasks vmapped" if n_tasks else "1 task"
        rows.append((f"SAC update, {label}", f"{flops / 1e6:,.1f} MFLOP/update, {rate / 1e9:,.1f} "
                                            f"GFLOP/s = {rate / peak:.0%} of peak (target >= 50%)"))
    report(rows)


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", 0.0))


def bench_acting(task_set) -> None:
    print(f"[acting] collection loop without updates: {len(task_set.all_tasks)} tasks, one "
          f"batched policy call per step + host simulators")
    sac = make_sac(SACConfig(), task_set.obs_dim, task_set.act_dim)
    m = len(task_set.all_tasks)
    params = jax.vmap(sac.init)(jax.random.split(jax.random.key(0), m)).actor_params
    act = jax.jit(make_batched_act(sac), static_argnums=3)
    envs = [make_env(t) for t in task_set.all_tasks]
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    key = jax.random.key(0)
    steps = _ENV_STEPS.value // m
    act(params, obs, key, False)
    t = time.perf_counter()
    for _ in range(steps):
        a, key = act(params, obs, key, False)
        a = np.asarray(a)
        for i, e in enumerate(envs):
            o, _, term, trunc, _ = e.step(a[i])
            obs[i] = e.reset()[0] if term or trunc else o
    dt = time.perf_counter() - t
    report([("batched steps/s (all tasks at once)", f"{steps / dt:,.0f}"),
            ("env steps/s (summed over tasks)", f"{steps * m / dt:,.0f}")])


def bench_collect() -> None:
    print("[collect] wall time of the mini collection")
    workdir = _COLLECT_WORKDIR.value
    if _RUN_COLLECT.value:
        from reda_jax.data.collect import run_collection
        workdir = workdir or f"/tmp/reda_bench_collect_{os.getpid()}"
        t = time.perf_counter()
        run_collection(_TASK_SET.value, "mini", workdir, show_progress=False)
        report([(f"mini {_TASK_SET.value}", f"{time.perf_counter() - t:,.0f} s (measured now)")])
        return
    if not workdir or not os.path.exists(f"{workdir}/returns.csv"):
        print("  (skipped: pass --collect_workdir=<finished mini run> or --run_collect)")
        return
    with open(f"{workdir}/returns.csv") as f:
        rows = list(csv.DictReader(f))
    wall = max(float(r["wall_time_s"]) for r in rows)
    report([(f"mini collection in {workdir}", f"{wall:,.0f} s to the last checkpoint "
                                              "(from returns.csv; excludes dataset writing)")])


def _synthetic_data(task_set, n: int, seed: int = 0) -> dict:
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


def _scan_flops(lower, counts: tuple[int, ...]) -> float:
    """FLOPs of a program with len(counts) scans of the given trip counts. XLA's cost
    analysis counts a while-loop body once whatever its trip count, so each scan's
    per-iteration cost is read off variants with trip counts 0 (no body) and 1 (inlined):
    lower(trip counts) -> compiled."""
    zeros = (0,) * len(counts)
    base = _flops(lower(zeros))
    total = base
    for i, c in enumerate(counts):
        one = tuple(1 if j == i else 0 for j in range(len(counts)))
        total += c * (_flops(lower(one)) - base)
    return total


def bench_reda(task_set) -> None:
    """Per-stage throughput of the mini preset's epoch functions for 1 and 5 vmapped seeds,
    their FLOP rate against the practical peak, compile times, evaluation vs the bare
    simulator, peak memory, and a finished mini run's wall time."""
    import resource
    import tempfile

    from reda_jax.methods import make_method
    from reda_jax.configs import train_preset
    from reda_jax.eval import protocols
    from reda_jax.train import Trainer, epoch_keys, make_train_data, seed_keys

    print("[reda] stage epochs of the mini preset (synthetic data of the task set's shapes)")
    size = 2048
    a = jax.random.normal(jax.random.key(0), (size, size))
    dot = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
    jax.block_until_ready(dot(a, a))
    peak = 2 * size**3 / timeit(lambda: jax.block_until_ready(dot(a, a)), repeats=5)
    rows = [(f"jnp.dot {size}x{size} f32 (practical peak)", f"{peak / 1e9:,.1f} GFLOP/s")]
    names = [t.name for t in task_set.train_tasks]
    train = {n: _synthetic_data(task_set, 50_000, i) for i, n in enumerate(names)}
    test = {t.name: _synthetic_data(task_set, 5_000, 10 + i) for i, t in enumerate(task_set.all_tasks)}
    data = make_train_data(task_set, train, test)
    compile_total = {}
    for seeds in (1, 5):
        base = train_preset("mini", task_set.name, num_seeds=seeds)
        # Short epochs: the per-update cost is what is measured.
        config = dataclasses.replace(
            base, representation=dataclasses.replace(base.representation, encoder_updates=50,
                                                     adversary_updates=50),
            meta=dataclasses.replace(base.meta, updates_per_epoch=100))
        with tempfile.TemporaryDirectory() as tmp:
            tr = Trainer(config, data, tmp, show_progress=False)
            r = tr.method
            k1, k2, k3 = (seed_keys(0, seeds, g) for g in (1, 2, 3))
            models = jax.jit(jax.vmap(r.init_stage1, in_axes=(0, None)))(k1, tr.stage1_data)
            rep = jax.jit(jax.vmap(r.init_representation))(k2)
            meta = jax.jit(jax.vmap(r.init_meta))(k3)
            n_tasks = len(task_set.train_tasks)

            def variant(cfg, dyn_steps=1, rew_steps=1):
                return make_method(cfg, task_set.obs_dim, task_set.act_dim, n_tasks,
                                   task_set.termination_fn, dyn_steps, rew_steps,
                                   reward_range=(0.0, 1.0))

            def lower_dyn(c):
                fn = jax.jit(jax.vmap(variant(config, *c).stage1_epoch, in_axes=(0, None, 0)))
                return fn.lower(models, tr.stage1_data, epoch_keys(k1, 1)).compile()

            def lower_rep(c):
                cfg = dataclasses.replace(config, representation=dataclasses.replace(
                    config.representation, adversary_updates=c[0], encoder_updates=c[1]))
                fn = jax.jit(jax.vmap(variant(cfg).representation_epoch, in_axes=(0, 0, None, 0)))
                return fn.lower(rep, models, data.train, epoch_keys(k2, 1)).compile()

            def lower_meta(c):
                cfg = dataclasses.replace(config, meta=dataclasses.replace(
                    config.meta, updates_per_epoch=c[0]))
                fn = jax.jit(jax.vmap(variant(cfg).meta_epoch, in_axes=(0, 0, None, 0)))
                return fn.lower(meta, rep.encoder.params, data.train, epoch_keys(k3, 1)).compile()

            rcfg = config.representation
            stages = [
                ("dynamics epoch", tr._stage1_epoch, lambda s: (s, tr.stage1_data, epoch_keys(k1, 1)), models,
                 tr.reda_steps["dynamics"], lambda: _scan_flops(
                     lower_dyn, (tr.reda_steps["dynamics"], tr.reda_steps["reward"]))),
                ("representation epoch", tr._rep_epoch,
                 lambda s: (s, models, data.train, epoch_keys(k2, 1)), rep, None,
                 lambda: _scan_flops(lower_rep, (rcfg.adversary_updates, rcfg.encoder_updates))),
                ("meta-policy epoch", tr._meta_epoch,
                 lambda s: (s, rep.encoder.params, data.train, epoch_keys(k3, 1)), meta,
                 config.meta.updates_per_epoch,
                 lambda: _scan_flops(lower_meta, (config.meta.updates_per_epoch,))),
            ]
            for label, fn, args, state, updates, count_flops in stages:
                flops = count_flops()
                t = time.perf_counter()
                compiled = fn.lower(*args(state)).compile()
                t_compile = time.perf_counter() - t
                compile_total[label] = compile_total.get(label, 0.0) + t_compile
                state = jax.tree.map(jnp.copy, state)
                out = compiled(*args(state))
                jax.block_until_ready(out)
                state = out[0]
                best = float("inf")
                for _ in range(2):
                    t = time.perf_counter()
                    out = compiled(*args(state))
                    jax.block_until_ready(out)
                    state = out[0]
                    best = min(best, time.perf_counter() - t)
                rate = flops / best
                if label.startswith("dynamics"):
                    models = state
                elif label.startswith("representation"):
                    rep = state
                what = (f"{updates * seeds / best:,.1f} seed-updates/s, " if updates else "")
                rows.append((f"{label}, {seeds} seed(s)",
                             f"{best:.2f} s/epoch, {what}{rate / 1e9:,.1f} GFLOP/s = "
                             f"{rate / peak:.0%} of peak; compile {t_compile:.1f} s"))
            # Evaluation: 5 tasks x 3 episodes per seed, one batched policy call per step.
            params = (r.act_params(meta), rep.encoder.params)
            act_fn = lambda p, q, c, m: tr._act(p[0], p[1], q, c, m)
            res = protocols.evaluate(task_set.all_tasks, act_fn, params, seeds,
                                     config.encoder.window, "on_policy", 3, 0, max_steps=200)
            rows.append((f"evaluation, {seeds} seed(s) x 5 tasks x 3 episodes",
                         f"{res.env_steps / res.wall_time_s:,.0f} env steps/s"))
    env = gymnasium.make(task_set.all_tasks[0].env_id)
    env.reset(seed=0)
    n, t = 5000, time.perf_counter()
    for _ in range(n):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    rows.append(("bare gymnasium simulator", f"{n / (time.perf_counter() - t):,.0f} steps/s"))
    rows.append(("compile, all stages, 1 + 5 seeds", f"{sum(compile_total.values()):.1f} s"))
    rows.append(("peak host memory (max RSS)",
                 f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"))
    for path in sorted(glob.glob(f"runs/{task_set.name}/*/mini-*/results.json")):
        res = json.load(open(path))
        total = sum(v for k, v in res["timing_s"].items() if k != "total_this_process")
        rows.append((f"mini run {path}", f"{total:,.0f} s ({res['num_seeds']} seeds)"))
        history = os.path.join(os.path.dirname(path), "eval_history.jsonl")
        evals = [json.loads(line) for line in open(history)]
        steps = sum(e[p]["env_steps"] for e in evals for p in ("on_policy", "off_policy"))
        wall = sum(e[p]["wall_time_s"] for e in evals for p in ("on_policy", "off_policy"))
        rows.append((f"  its evaluations (trained policies, {len(evals)} x 2 protocols)",
                     f"{steps / wall:,.0f} env steps/s"))
    report(rows)


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    if _TASK_SET.value not in TASK_SETS:
        raise InputError(f"--task_set: unknown {_TASK_SET.value!r}; valid: "
                         f"{', '.join(sorted(TASK_SETS))}")
    at_least("env_steps", _ENV_STEPS.value)
    at_least("updates", _UPDATES.value)
    choices("sections", _SECTIONS.value, ["env", "sac", "flops", "acting", "collect", "reda"])
    task_set = get_task_set(_TASK_SET.value)
    print(f"devices: {jax.devices()}; backend {jax.default_backend()}")
    sections = {"env": lambda: bench_env(task_set), "sac": lambda: bench_sac(task_set),
                "flops": lambda: bench_flops(task_set), "acting": lambda: bench_acting(task_set),
                "collect": bench_collect, "reda": lambda: bench_reda(task_set)}
    for name in _SECTIONS.value:
        if name not in sections:
            raise app.UsageError(f"unknown section {name!r}; valid: {', '.join(sections)}")
        sections[name]()


if __name__ == "__main__":
    run_app(main)
