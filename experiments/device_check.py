"""One prepared run on an accelerator (or `--tiny` on a CPU): per-stage throughput at the
paper preset's shapes and the projected wall time of the paper preset.

  python -m experiments.device_check --out=DIR            # paper shapes, <= --budget_s
  python -m experiments.device_check --tiny --out=DIR     # smoke shapes, CI

Writes DIR/device_check.json and DIR/device_check.md:
  * the device, its theoretical ceiling and the measured matmul peak;
  * each ReDA stage's epoch at the preset's shapes for 1 and 5 vmapped seeds (2 with
    --tiny), interleaved with the peak, --repeats rounds: s/update (median, range),
    matmul FLOP rate and its share of the peak; compile times apart;
  * behavior SAC (5 tasks vmapped) updates/s and evaluation env steps/s (5 seeds x tasks x
    episodes, one batched policy call per step);
  * a short end-to-end run (Trainer.run) at the preset's shapes on synthetic data;
  * the projected wall time of the preset for one task set and 5 seeds, stage by stage
    (collection, stage 1, stage 2, stage 3, evaluations), from the measured per-update times
    and the preset's update counts. A projection, not a measurement.
Parts are skipped (and said so) when the wall-time budget runs out.

Length: one self-contained script sized for a short lease of an accelerator; its parts
share one budget and one report.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
import time

import jax
from absl import app, flags

from reda_jax import perf

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined only when run as a program, so that importing this module (tests) adds no
    flags that collide with other experiments' apps."""
    flags.DEFINE_bool("tiny", False, "Smoke shapes and short loops (CPU, CI).")
    flags.DEFINE_string("out", None, "Output directory (default: $OUT or runs/device_check).")
    flags.DEFINE_string("task_set", "hopper-gravity", "Task set.")
    flags.DEFINE_integer("repeats", 3, "Interleaved rounds of peak and stages.")
    flags.DEFINE_float("budget_s", 420.0, "Wall-time budget; later parts are skipped.")
    flags.DEFINE_string("count_flops", None, "Only print the matmul FLOPs of one full epoch "
                        "of each stage of this preset at 5 seeds (jaxpr count, nothing runs).")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What one device check measures."""

    preset: str               # the preset whose shapes are measured and projected
    seeds: tuple[int, ...]    # vmapped seed counts timed
    train_rows: int           # synthetic transitions per training task
    test_rows: int            # synthetic test transitions per task
    encoder_updates: int      # shortened stage-2 scans (per-update cost is what counts)
    adversary_updates: int
    meta_updates: int         # shortened stage-3 scan
    sac_updates: int          # behavior SAC updates per timing
    eval_episodes: int
    eval_max_steps: int
    peak_size: int
    repeats: int = 3          # interleaved rounds


PAPER = Sizes("paper", (1, 5), 200_000, 20_000, 100, 50, 200, 200, 5, 200, 8192)
TINY = Sizes("smoke", (2,), 600, 100, 10, 10, 20, 20, 1, 20, 256)


def _config(sizes: Sizes, task_set: str, seeds: int):
    """The preset at `seeds` vmapped seeds with shortened scans (the per-update cost is what
    is timed) and one epoch per stage (epoch counts are Python loops: they change no
    compiled program), so the same Trainer also makes the short end-to-end run."""
    from reda_jax.presets import train_preset
    base = train_preset(sizes.preset, task_set, num_seeds=seeds)
    return dataclasses.replace(
        base, checkpoint_interval_s=1e9,
        dynamics=dataclasses.replace(base.dynamics, max_epochs=1),
        representation=dataclasses.replace(base.representation, num_epochs=1,
                                           encoder_updates=sizes.encoder_updates,
                                           adversary_updates=sizes.adversary_updates),
        meta=dataclasses.replace(base.meta, num_epochs=1, eval_every=1,
                                 updates_per_epoch=sizes.meta_updates),
        eval=dataclasses.replace(base.eval, num_episodes=1, max_steps=sizes.eval_max_steps))


def _sac_rate(sizes: Sizes, task_set, tasks: int) -> dict:
    """Behavior SAC (the collection preset's networks) for `tasks` vmapped tasks:
    updates/s (each update advances every task) from a scan of sizes.sac_updates."""
    from experiments.harness import _batch, _scanned
    from reda_jax.algos.sac import make_sac
    from reda_jax.presets import collect_preset
    ccfg = collect_preset(sizes.preset, task_set.name)
    sac = make_sac(ccfg.sac, task_set.obs_dim, task_set.act_dim)
    state = jax.vmap(sac.init)(jax.random.split(jax.random.key(0), tasks))
    batch = _batch(jax.random.key(2), task_set.obs_dim, task_set.act_dim, (tasks,))
    keys = jax.random.split(jax.random.key(1), sizes.sac_updates)
    t = time.perf_counter()
    f = _scanned(jax.vmap(sac.update), tasks).lower(state, batch, keys).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(f(state, batch, keys))
    times = perf.interleaved({"sac": lambda: f(state, batch, keys)}, sizes.repeats)["sac"]
    med, lo, hi = perf.spread(times)
    return {"updates_per_s": sizes.sac_updates / med, "range": [sizes.sac_updates / hi,
                                                                sizes.sac_updates / lo],
            "compile_s": compile_s, "tasks": tasks}


def project(sizes: Sizes, task_set, stage_rows: list[dict], sac: dict | None,
            acting_steps_per_s: float | None, eval_steps_per_s: float | None) -> dict:
    """Projected seconds of the preset for one task set and 5 seeds, stage by stage, from
    measured per-update times (5-seed rows) and the preset's update counts. Stage 1 is
    projected at its max_epochs (early stopping ends it sooner); evaluation at full-length
    episodes (an upper bound: episodes that terminate early cost less)."""
    from reda_jax.presets import collect_preset, train_preset
    cfg = train_preset(sizes.preset, task_set.name, num_seeds=5)
    ccfg = collect_preset(sizes.preset, task_set.name)
    seeds = max(r["seeds"] for r in stage_rows)
    by = {r["stage"]: r for r in stage_rows if r["seeds"] == seeds}
    n_tasks = len(task_set.train_tasks)
    out: dict[str, dict] = {}
    # Collection: one vmapped update + one batched env step per env step, then the
    # deterministic data rollouts of every checkpoint.
    if sac is not None and acting_steps_per_s:
        train_s = ccfg.total_steps * (1 / sac["updates_per_s"] + 1 / acting_steps_per_s)
        rollout_steps = sum(ccfg.transitions_per_checkpoint().values())
        out["collection"] = {"s": train_s + rollout_steps / acting_steps_per_s,
                             "how": f"{ccfg.total_steps:,} x (1/{sac['updates_per_s']:,.0f} "
                                    f"SAC updates/s + 1/{acting_steps_per_s:,.0f} batched "
                                    f"steps/s) + {rollout_steps:,} rollout steps"}
    rows = max(1, int(sizes.train_rows * (1 - cfg.dynamics.holdout_fraction)))
    real_rows = int(ccfg.train_transitions * (1 - cfg.dynamics.holdout_fraction))
    if "dynamics epoch" in by:
        d = by["dynamics epoch"]
        # Measured epoch: ceil(rows/batch) member steps + ceil(T*rows/batch) reward steps;
        # the preset's epoch scales with its dataset size.
        bs = cfg.dynamics.batch_size
        measured = math.ceil(rows / bs) + math.ceil(n_tasks * rows / bs)
        real = math.ceil(real_rows / bs) + math.ceil(n_tasks * real_rows / bs)
        per_epoch = d["s_median"] * real / measured
        out["stage 1 (dynamics, max_epochs)"] = {
            "s": per_epoch * cfg.dynamics.max_epochs,
            "how": f"{cfg.dynamics.max_epochs} epochs x {per_epoch:.2f} s ({real} steps)"}
    if "representation epoch" in by:
        r = by["representation epoch"]
        rc = cfg.representation
        scale = (rc.encoder_updates + rc.adversary_updates) / (sizes.encoder_updates
                                                               + sizes.adversary_updates)
        per_epoch = r["s_median"] * scale
        out["stage 2 (representation)"] = {
            "s": per_epoch * rc.num_epochs,
            "how": f"{rc.num_epochs} epochs x {per_epoch:.2f} s"}
    if "meta-policy epoch" in by:
        m = by["meta-policy epoch"]
        per_epoch = m["s_median"] * cfg.meta.updates_per_epoch / sizes.meta_updates
        out["stage 3 (meta-policy)"] = {
            "s": per_epoch * cfg.meta.num_epochs,
            "how": f"{cfg.meta.num_epochs} epochs x {per_epoch:.2f} s"}
    if eval_steps_per_s:
        n_evals = cfg.meta.num_epochs // cfg.meta.eval_every + (
            cfg.meta.num_epochs % cfg.meta.eval_every != 0)
        horizon = cfg.eval.max_steps or 1000
        steps = n_evals * 2 * 5 * len(task_set.all_tasks) * cfg.eval.num_episodes * horizon
        out["stage 3 evaluations"] = {
            "s": steps / eval_steps_per_s,
            "how": f"{n_evals} x 2 protocols x 5 seeds x {len(task_set.all_tasks)} tasks x "
                   f"{cfg.eval.num_episodes} episodes x {horizon} steps at "
                   f"{eval_steps_per_s:,.0f} env steps/s"}
    out["total"] = {"s": sum(v["s"] for v in out.values()), "how": "sum"}
    return out


def _e2e(trainer) -> dict:
    """A short whole run (one epoch of each stage, both evaluations) of a Trainer made by
    `stage_programs` at the preset's shapes; its programs come from the compilation cache."""
    t = time.perf_counter()
    res = trainer.run()
    return {"wall_s": time.perf_counter() - t, "timing_s": res["timing_s"],
            "mean_return": {p: v["mean_return"] for p, v in res["protocols"].items()},
            "seeds": trainer.num_seeds}


def preset_epoch_flops(preset: str, task_set, seeds: int, train_rows: int | None = None
                       ) -> dict[str, float]:
    """Matmul FLOPs of one full epoch of each stage of `preset` at `seeds` vmapped seeds,
    counted from the jaxpr (nothing is compiled or run; states are abstract). train_rows:
    synthetic transitions per training task (default: the preset's N)."""
    from experiments.harness import epoch_name, synthetic_train_data
    from reda_jax.presets import collect_preset, train_preset
    from reda_jax.stage_loop import epoch_keys, seed_keys
    from reda_jax.train import Trainer
    cfg = train_preset(preset, task_set.name, num_seeds=seeds)
    rows = train_rows or collect_preset(cfg.data_preset, task_set.name).train_transitions
    data = synthetic_train_data(task_set, rows, 1000)
    tr = Trainer(cfg, data, tempfile.mkdtemp(), show_progress=False)
    out, epochs, upstream = {}, {}, {}
    for stage in tr.method.stages:   # each epoch reads the previous stage's initial output
        keys = seed_keys(0, seeds, stage.index)
        state = jax.eval_shape(jax.vmap(stage.init, in_axes=(0, None)), keys, stage.data)
        name = epoch_name(stage.name)
        out[name] = perf.matmul_flops(jax.vmap(stage.epoch, in_axes=(0, 0, None, 0)), state,
                                      upstream, stage.data, epoch_keys(keys, 1))
        epochs[name] = stage.num_epochs
        upstream = stage.output(state)
    return {**out, "epochs": epochs}


def _markdown(report: dict) -> str:
    lines = [f"# Device check ({report['mode']})", "",
             f"{report['date']}; {report['device']}; jax {report['jax']}; "
             f"{report['wall_s']:.0f} s wall", "",
             f"Theoretical ceiling: {report['peak']['ceiling_how']}", "",
             "| what | seeds | s per call, median [range] | updates/s per seed | GFLOP/s "
             "(matmul) | of peak | compile s |", "|---|---|---|---|---|---|---|",
             f"| {report['peak']['what']} (peak) | | {report['peak']['s_median']:.4f} "
             f"[{report['peak']['s_min']:.4f}-{report['peak']['s_max']:.4f}] | | "
             f"{report['peak']['gflops_median']:,.1f} | 100% | |"]
    for r in report["stages"]:
        ups = f"{r['seed_updates_per_s'] / r['seeds']:,.1f}" if r["seed_updates_per_s"] else ""
        lines.append(f"| {r['stage']} | {r['seeds']} | {r['s_median']:.4f} [{r['s_min']:.4f}-"
                     f"{r['s_max']:.4f}] | {ups} | {r['gflops_median']:,.1f} | "
                     f"{r['of_peak']:.0%} | {r['compile_s']:.1f} |")
    lines.append("")
    for k in ("sac", "acting_steps_per_s", "eval", "e2e"):
        if report.get(k) is not None:
            lines.append(f"- {k}: `{json.dumps(report[k])}`")
    lines += ["", f"## Projected wall time of the `{report['preset']}` preset, one task set, "
                  "5 seeds (a projection from the figures above, not a measurement)", "",
              "| stage | hours | how |", "|---|---|---|"]
    for k, v in report["projection"].items():
        lines.append(f"| {k} | {v['s'] / 3600:,.2f} | {v['how']} |")
    if report["skipped"]:
        lines += ["", "Skipped (budget or missing packages): " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def run_check(sizes: Sizes, task_set_name: str, out_dir: str, budget_s: float) -> dict:
    """Measures, projects, writes out_dir/device_check.{json,md}; returns the report."""
    from experiments.harness import measure_stages, stage_programs, synthetic_train_data
    from reda_jax.envs.tasks import get_task_set
    t0 = time.perf_counter()
    left = lambda: budget_s - (time.perf_counter() - t0)
    task_set = get_task_set(task_set_name)
    dev = jax.devices()[0]
    skipped: list[str] = []
    # Programs compiled ahead of time for timing are reused by the end-to-end run's jits.
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jax_cache_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    data = synthetic_train_data(task_set, sizes.train_rows, sizes.test_rows)
    tmp = tempfile.mkdtemp(prefix="device_check_")
    programs, trainers = [], {}
    for seeds in sizes.seeds:
        if left() < 0.5 * budget_s and programs:
            skipped.append(f"stages at {seeds} seeds")
            continue
        progs, tr = stage_programs(task_set, _config(sizes, task_set_name, seeds), data,
                                   f"{tmp}/{seeds}")
        programs += progs
        trainers[seeds] = (tr, progs)
    stage_rows, peak = measure_stages(programs, sizes.repeats, sizes.peak_size)
    sac = None
    if left() > 0.3 * budget_s:
        sac = _sac_rate(sizes, task_set, len(task_set.all_tasks))
    else:
        skipped.append("behavior SAC")
    acting = eval_row = None
    if left() > 0.25 * budget_s:
        from experiments.harness import acting_rate
        acting = acting_rate(task_set, 50 if sizes.preset == "smoke" else 500)
        from reda_jax.eval import protocols
        seeds = max(trainers)
        tr, progs = trainers[seeds]
        params = (tr.method.act_params(progs[2].state), progs[1].state.encoder.params)
        act_fn = lambda p, q, c, m: tr.act_fn(p[0], p[1], q, c, m)
        res = protocols.evaluate(task_set.all_tasks, act_fn, params, seeds,
                                 tr.config.window, "on_policy", sizes.eval_episodes,
                                 0, max_steps=sizes.eval_max_steps)
        eval_row = {"seeds": seeds, "episodes": sizes.eval_episodes,
                    "env_steps": res.env_steps, "wall_s": res.wall_time_s,
                    "env_steps_per_s": res.env_steps / res.wall_time_s}
    else:
        skipped.append("acting and evaluation rates")
    e2e = None
    if left() > 0.2 * budget_s:
        e2e = _e2e(trainers[max(trainers)][0])
    else:
        skipped.append("end-to-end run")
    projection = project(sizes, task_set, stage_rows, sac, acting,
                         eval_row["env_steps_per_s"] if eval_row else None)
    report = {
        "mode": "tiny (smoke shapes)" if sizes.preset == "smoke" else f"{sizes.preset} shapes",
        "preset": sizes.preset, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": f"{dev.platform}: {getattr(dev, 'device_kind', '')} x {len(jax.devices())}; "
                  f"host {platform.node()} ({os.cpu_count()} CPUs)",
        "jax": jax.__version__, "sizes": dataclasses.asdict(sizes), "peak": peak,
        "stages": stage_rows, "sac": sac, "acting_steps_per_s": acting, "eval": eval_row,
        "e2e": e2e, "projection": projection, "skipped": skipped,
        "wall_s": time.perf_counter() - t0}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "device_check.json"), "w") as f:
        json.dump(report, f, indent=1, default=float)
    with open(os.path.join(out_dir, "device_check.md"), "w") as f:
        f.write(_markdown(report))
    return report


def main(_):
    if FLAGS.count_flops:
        from reda_jax.envs.tasks import get_task_set
        counts = preset_epoch_flops(FLAGS.count_flops, get_task_set(FLAGS.task_set), 5)
        epochs = counts.pop("epochs")
        for k, v in counts.items():
            print(f"{FLAGS.count_flops} {k}, 5 seeds: {v / 1e12:,.3f} TFLOP/epoch x "
                  f"{epochs[k]} epochs = {v * epochs[k] / 1e15:,.2f} PFLOP")
        return
    sizes = dataclasses.replace(TINY if FLAGS.tiny else PAPER, repeats=FLAGS.repeats)
    out = FLAGS.out or os.environ.get("OUT") or "runs/device_check"
    print(f"devices: {jax.devices()}; ceiling: {perf.machine_ceiling()[1]}", flush=True)
    report = run_check(sizes, FLAGS.task_set, out, FLAGS.budget_s)
    print(open(os.path.join(out, "device_check.md")).read())
    print(f"wrote {out}/device_check.json and .md in {report['wall_s']:.0f} s")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
