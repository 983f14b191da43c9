"""Speed figures of the foundation, measured side by side in one run (not a test).

  python -m experiments.benchmark                      # all sections
  python -m experiments.benchmark --sections=env,sac   # some of them

Sections:
  env      env steps/s: bare gymnasium env vs our task wrappers (random actions)
  sac      SAC updates/s, 1 task vs 5 tasks vmapped; lax.scan of N updates vs a Python loop
           of jitted single updates; compile time apart from run time
  flops    matmul FLOP/s of the SAC update (jaxpr count / time) vs a large jnp.dot (peak)
  acting   the collection loop without updates: batched policy call + host simulators
  collect  wall time of a `mini` collection (read from --collect_workdir's returns.csv,
           or measured by running it with --run_collect)
  reda     each ReDA stage's epoch (mini preset sizes, synthetic data): seed-updates/s for
           1 and 5 vmapped seeds, FLOP rate vs the jnp.dot peak, compile time; evaluation
           env steps/s vs the bare simulator; peak memory; finished mini runs' wall time
  eval     evaluation alone (the reda section's evaluation rows without the stage timing)
  stage1   stage 1's task models alone (experiments.probe_stage1's epoch: 3 seeds x 3
           tasks, synthetic data of --stage_rows per task) under the mini preset and the
           standard-ensemble settings it compares: model updates/s and FLOP rate against
           the jnp.dot peak and the machine's ceiling
Targets (see the README): wrappers >= 90% of bare; SAC >= 50% of the jnp.dot rate;
5 vmapped tasks >= 0.95x one task's per-task throughput; scan faster than the loop.

Length: one app, one section per figure the README reports.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import time

import gymnasium as gym
import jax
import numpy as np
from absl import app, flags

from experiments.harness import _batch, _scanned, _setup, acting_rate, format_stage_rows, \
    measure_stages, peak_program, stage_programs, synthetic_train_data
from reda_jax import perf
from reda_jax.algos.sac import make_sac
from reda_jax.configs import SACConfig
from reda_jax.envs.tasks import TASK_SETS, get_task_set, make_env
from reda_jax.validate import InputError, at_least, choices, run_app

_SECTIONS = flags.DEFINE_list("sections", ["env", "sac", "flops", "acting", "collect", "reda"],
                              "Which sections to run.")
_TASK_SET = flags.DEFINE_string("task_set", "hopper-gravity", "Task set for env/acting/SAC dims.")
_ENV_STEPS = flags.DEFINE_integer("env_steps", 20_000, "Steps per env measurement.")
_UPDATES = flags.DEFINE_integer("updates", 300, "SAC updates per timing.")
_COLLECT_WORKDIR = flags.DEFINE_string("collect_workdir", None,
                                       "A finished mini collection to read the wall time from.")
_RUN_COLLECT = flags.DEFINE_bool("run_collect", False, "Run the mini collection to time it.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved rounds of the peak and the stages.")
_STAGE_ROWS = flags.DEFINE_integer("stage_rows", 50_000,
                                   "Synthetic transitions per training task (reda section).")


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
    ceiling, how = perf.machine_ceiling()
    print("[flops] matmul FLOPs of the update (jaxpr count) / time, vs a large jnp.dot; "
          f"{_REPEATS.value} interleaved rounds, median [range]")
    peak_call, peak_flops = peak_program()
    fns, flops = {"peak": peak_call}, {"peak": peak_flops}
    for n_tasks in (0, 5):
        state, update, batch = _setup(sac, n_tasks, obs_dim, act_dim)
        k0 = keys[0] if not n_tasks else jax.random.split(keys[0], n_tasks)
        flops[n_tasks] = perf.matmul_flops(update, state, batch, k0)
        compiled = _scanned(update, n_tasks).lower(state, batch, keys).compile()
        jax.block_until_ready(compiled(state, batch, keys))
        fns[n_tasks] = (lambda c=compiled, s=state, b=batch: c(s, b, keys))
    times = perf.interleaved(fns, _REPEATS.value)
    rows = [("theoretical ceiling", how)]
    med = {}
    for k, ts in times.items():
        f = flops[k] * (1 if k == "peak" else n)
        m, lo, hi = perf.spread(ts)
        perf.checked_rate(f, lo, ceiling, str(k))
        med[k] = f / m
        label = ("jnp.dot 2048x2048 f32 (practical peak)" if k == "peak" else
                 f"SAC update, {k} tasks vmapped" if k else "SAC update, 1 task")
        extra = "" if k == "peak" else (f"{flops[k] / 1e6:,.1f} MFLOP/update, ")
        rows.append((label, f"{extra}{f / m / 1e9:,.1f} GFLOP/s [{f / hi / 1e9:,.1f}-"
                            f"{f / lo / 1e9:,.1f}]" + ("" if k == "peak" else
                                                      f" = {med[k] / med['peak']:.0%} of peak")))
    report(rows)


def bench_acting(task_set) -> None:
    print(f"[acting] collection loop without updates: {len(task_set.all_tasks)} tasks, one "
          f"batched policy call per step + host simulators")
    m = len(task_set.all_tasks)
    rate = acting_rate(task_set, _ENV_STEPS.value // m)
    report([("batched steps/s (all tasks at once)", f"{rate:,.0f}"),
            ("env steps/s (summed over tasks)", f"{rate * m:,.0f}")])


def bench_collect() -> None:
    print("[collect] wall time of the mini collection")
    workdir = _COLLECT_WORKDIR.value
    if _RUN_COLLECT.value:
        from reda_jax.behavior.collect import run_collection
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


def bare_simulator_rate(task_set, n: int = 5000) -> float:
    """Steps/s of the bare simulator (mj_step x frame_skip, zero control) of the first task."""
    raw = gym.make(task_set.all_tasks[0].env_id).unwrapped
    raw.reset(seed=0)
    ctrl = np.zeros(raw.model.nu)
    t = time.perf_counter()
    for _ in range(n):
        raw._step_mujoco_simulation(ctrl, raw.frame_skip)
    return n / (time.perf_counter() - t)


def evaluation_row(task_set, tr, meta, rep, episodes: int = 5, max_steps: int = 200,
                   repeats: int = 3) -> tuple[str, str]:
    """Evaluation of `tr`'s policy (seed-stacked states meta, rep): all tasks x `episodes`
    per seed, on-policy, one batched policy call per step, each of `repeats` rounds followed
    by the bare simulator (the same load on both); the median ratio and its range."""
    from reda_jax.eval import protocols
    seeds = tr.num_seeds
    params = (tr.method.act_params(meta), rep.encoder.params)
    act_fn = lambda p, q, c, m: tr.act_fn(p[0], p[1], q, c, m)
    window, tasks = tr.config.window, task_set.all_tasks
    # Compile outside the timing, at the timed call's shapes (S, T*E, ...).
    sims = protocols.make_simulators(tasks, seeds, episodes)   # made once, as a run does
    protocols.evaluate(tasks, act_fn, params, seeds, window, "on_policy", episodes, 0,
                       max_steps=2, simulators=sims)
    rates, bares = [], []
    for _ in range(repeats):
        res = protocols.evaluate(tasks, act_fn, params, seeds, window, "on_policy", episodes,
                                 0, max_steps=max_steps, simulators=sims)
        rates.append(res.env_steps / res.wall_time_s)
        bares.append(bare_simulator_rate(task_set))
    ratios = np.array(rates) / np.array(bares)
    return (f"evaluation, {seeds} seed(s) x {len(tasks)} tasks x {episodes} episodes "
            f"(<= {max_steps} steps), {repeats} rounds",
            f"{np.median(rates):,.0f} env steps/s = {np.median(ratios):.0%} "
            f"[{ratios.min():.0%}-{ratios.max():.0%}] of the bare simulator "
            f"({np.median(bares):,.0f} mj_step x frame_skip /s, measured after each round; "
            f"target >= 70%); best round / best bare {max(rates) / max(bares):.0%}; "
            f"{res.env_steps:,} steps per round, mean episode "
            f"{res.lengths.mean():.0f} steps")


def bench_eval(task_set) -> None:
    """Evaluation alone (no stage timing): the mini preset's untrained ReDA policy (synthetic
    data), 1 and 5 seeds x all tasks x 5 episodes, vs the bare simulator."""
    import tempfile

    from reda_jax.presets import train_preset
    from reda_jax.train import Trainer

    print("[eval] evaluation env steps/s vs the bare simulator (mini preset's ReDA policy, "
          "untrained, synthetic data)")
    data = synthetic_train_data(task_set, 5_000, 1_000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seeds in (1, 5):
            config = train_preset("mini", task_set.name, num_seeds=seeds)
            os.makedirs(f"{tmp}/{seeds}")
            tr = Trainer(config, data, f"{tmp}/{seeds}", show_progress=False)
            rep = tr.init_state(tr.method.stage("representation"))
            meta = tr.init_state(tr.method.policy_stage)
            rows.append(evaluation_row(task_set, tr, meta, rep, repeats=_REPEATS.value))
    report(rows)


def bench_reda(task_set) -> None:
    """Per-stage throughput of the mini preset's epoch functions for 1 and 5 vmapped seeds,
    their matmul FLOP rate against the practical peak (all interleaved, --repeats rounds,
    median and range), compile times apart; evaluation vs the bare simulator; peak memory;
    finished mini runs' wall time."""
    import resource
    import tempfile

    from reda_jax.presets import train_preset

    print(f"[reda] stage epochs of the mini preset (synthetic data of the task set's shapes), "
          f"{_REPEATS.value} interleaved rounds")
    data = synthetic_train_data(task_set, _STAGE_ROWS.value, 5_000)
    programs, trainers = [], {}
    tmp = tempfile.TemporaryDirectory()
    for seeds in (1, 5):
        base = train_preset("mini", task_set.name, num_seeds=seeds)
        # Short epochs: the per-update cost is what is measured.
        config = dataclasses.replace(
            base, representation=dataclasses.replace(base.representation, encoder_updates=50,
                                                     adversary_updates=50),
            meta=dataclasses.replace(base.meta, updates_per_epoch=100))
        progs, tr = stage_programs(task_set, config, data, f"{tmp.name}/{seeds}")
        programs += progs
        trainers[seeds] = (tr, progs)
    rows, peak = measure_stages(programs, _REPEATS.value)
    report(format_stage_rows(rows, peak))
    rows = []
    for seeds, (tr, progs) in trainers.items():
        rows.append(evaluation_row(task_set, tr, progs[2].state, progs[1].state,
                                   repeats=_REPEATS.value))
    tmp.cleanup()
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


FOUR_LAYERS = ("dynamics={'hidden_dims': (200, 200, 200, 200), "
               "'weight_decay': (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)}")
"""4x200 members (MBPO's width and depth) with the reference code's decays, the last
hidden one repeated."""
STAGE1_SETTINGS = (
    ("mini: 3 members 3x200, batch 2048", ()),
    ("batch 256", ("dynamics.batch_size=256",)),
    ("7 members, 5 elites", ("dynamics.num_models=7", "dynamics.num_elites=5")),
    ("4x200", (FOUR_LAYERS,)),
)


def bench_stage1(task_set, seeds: int = 3) -> None:
    """The stage-1 epoch of experiments.probe_stage1 under each of STAGE1_SETTINGS."""
    from experiments.harness import StageProgram, synthetic_data, task_model_epochs
    from reda_jax import configs
    from reda_jax.presets import train_preset

    print(f"[stage1] task models alone, {seeds} seeds x {len(task_set.train_tasks)} tasks, "
          f"{_STAGE_ROWS.value} synthetic rows per task, {_REPEATS.value} interleaved rounds")
    arrays = [synthetic_data(task_set, _STAGE_ROWS.value, i)
              for i in range(len(task_set.train_tasks))]
    programs = []
    for name, sets in STAGE1_SETTINGS:
        config = train_preset("mini", task_set.name, num_seeds=seeds)
        for assignment in sets:
            config = configs.override(config, assignment)
        _, init, epoch, steps = task_model_epochs(config, arrays, task_set.obs_dim,
                                                  task_set.act_dim)
        keys = jax.random.split(jax.random.key(0), seeds)
        state = jax.jit(init)(keys)
        args = lambda st, keys=keys: (st, keys)
        flops = perf.matmul_flops(epoch, *args(state))
        t = time.perf_counter()
        compiled = jax.jit(epoch, donate_argnums=0).lower(*args(state)).compile()
        prog = StageProgram(f"{name} ({steps} updates/epoch)", seeds, compiled, args, state,
                            steps, flops, time.perf_counter() - t)
        jax.block_until_ready(prog())
        programs.append(prog)
    rows, peak = measure_stages(programs, _REPEATS.value)
    out = format_stage_rows(rows, peak)
    for r in rows:
        out.append((f"{r['stage']}: model updates/s (all seeds and tasks at once)",
                    f"{r['updates'] / r['s_median']:,.1f} (= {r['seed_updates_per_s']:,.1f} "
                    f"seed-updates/s), {r['gflops_median'] / peak['ceiling_gflops']:.0%} of "
                    "the ceiling"))
    report(out)


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    if _TASK_SET.value not in TASK_SETS:
        raise InputError(f"--task_set: unknown {_TASK_SET.value!r}; valid: "
                         f"{', '.join(sorted(TASK_SETS))}")
    at_least("env_steps", _ENV_STEPS.value)
    at_least("updates", _UPDATES.value)
    at_least("repeats", _REPEATS.value)
    at_least("stage_rows", _STAGE_ROWS.value)
    choices("sections", _SECTIONS.value,
            ["env", "sac", "flops", "acting", "collect", "reda", "eval", "stage1"])
    task_set = get_task_set(_TASK_SET.value)
    print(f"devices: {jax.devices()}; backend {jax.default_backend()}")
    sections = {"env": lambda: bench_env(task_set), "sac": lambda: bench_sac(task_set),
                "flops": lambda: bench_flops(task_set), "acting": lambda: bench_acting(task_set),
                "collect": bench_collect, "reda": lambda: bench_reda(task_set),
                "eval": lambda: bench_eval(task_set), "stage1": lambda: bench_stage1(task_set)}
    for name in _SECTIONS.value:
        if name not in sections:
            raise app.UsageError(f"unknown section {name!r}; valid: {', '.join(sections)}")
        sections[name]()


if __name__ == "__main__":
    run_app(main)
