"""The didactic example (paper Section 5.1, Appendix B.3, Figure 2): `reda_jax.report.didactic`.

  python -m experiments.didactic                         # 95 min on a 2-core CPU (README)
  python -m experiments.didactic --preset=smoke --workdir=/tmp/didactic   # ~2 min
  python -m experiments.didactic --workdir=runs/didactic_q0 --set=meta.q_weight=0   # a probe

For each collection seed (--collect_seeds): trains behavior SAC on InvertedPendulum at
gravity x1.0 and x2.0, picks checkpoints by return (`reda_jax.report.didactic.choose_checkpoints`),
trains every method (--methods; bc and oracle are the sanity floor and ceiling) on D1_train
and D2_train with --num_seeds vmapped seeds, and evaluates on task 1: with D1_test contexts
(the paper's Figure 2(a)), with D1_train contexts and on-policy. Prints one table pooled
over seeds x collections (mean and 95% t-interval), d(phi) of Eq. 8, the critics' largest
epoch mean Q, the checkpoints each collection used, and whether Figure 2 holds. Draws
Figure 2 with the `viz` extra. Everything lands in --workdir; rerunning resumes.

With several collections and at least 2 cores (`os.cpu_count()`) the collections run side
by side, one process of this app per collection (`--worker`; at most one per core at a
time, each logging to <workdir>/collect<s>/didactic.log), and then this process pools them:
it restores every finished run, evaluates it and prints the table. On one core, or with
--noparallel, the collections run one after the other in this process. Either way one
progress bar with an ETA covers the whole job.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from absl import flags

from reda_jax.presets import didactic_train_config
from reda_jax.report.didactic import DEFAULT_METHODS, METHODS, JobProgress, behavior_return, \
    behavior_row, didactic_data, draw_figure, figure2_verdict, floor_verdict, format_roles, \
    format_table, pool, run_method
from reda_jax.run_info import quiet_logs
from reda_jax.validate import InputError, at_least, choices, ints, run_app, writable_dir

_PRESET = flags.DEFINE_enum("preset", "default", ["default", "smoke"],
                            "default: the sizes in reda_jax.report.didactic; smoke: seconds.")
_METHODS = flags.DEFINE_list("methods", list(DEFAULT_METHODS),
                             f"Methods to compare, any of {', '.join(METHODS)}.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 5, "Learner seeds per collection (vmapped).")
_COLLECT_SEEDS = flags.DEFINE_list("collect_seeds", ["0", "1"],
                                   "Independent data collections (behavior SAC seeds).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/didactic", "Output directory.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show the job's progress bar.")
_PARALLEL = flags.DEFINE_bool(
    "parallel", True, "Run the collections side by side, one process per collection, where "
    "os.cpu_count() >= 2, then pool them; --noparallel: one after the other in this process.")
_WORKER = flags.DEFINE_bool(
    "worker", False, "Internal (the parallel run's processes): train the given collections, "
    "report progress on stdout as '@progress' lines, print no table.")
_SET = flags.DEFINE_multi_string(
    "set", [], "Override one config field of every method, dotted as in config.json, e.g. "
    "--set=meta.q_weight=0 (repeatable; values are Python literals). Needs --workdir, so that "
    "a probe never mixes into the default run.")


def check_flags(argv: list[str], f=flags.FLAGS) -> list[int]:
    """Every flag range-checked before any work; returns the collection seeds."""
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    choices("methods", f.methods, METHODS)
    at_least("num_seeds", f.num_seeds)
    seeds = ints("collect_seeds", f.collect_seeds, low=0)
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--collect_seeds: must be distinct integers >= 0, got {seeds}")
    if f.set and not f["workdir"].present:
        raise InputError("--set: give --workdir too, so that the overridden runs stay apart "
                         "from the default ones")
    for method in f.methods:
        try:
            didactic_train_config(method, f.preset, f.num_seeds, tuple(f.set))
        except ValueError as e:
            raise InputError(f"--set: {e}")
    writable_dir("workdir", f.workdir)
    return seeds


def _args_for_worker(root: Path, cs: int) -> list[str]:
    return ([sys.executable, "-m", "experiments.didactic", "--worker", "--noprogress",
             f"--workdir={root}", f"--preset={_PRESET.value}", f"--collect_seeds={cs}",
             f"--methods={','.join(_METHODS.value)}", f"--num_seeds={_NUM_SEEDS.value}"]
            + [f"--set={a}" for a in _SET.value])


def run_workers(root: Path, collect_seeds: list[int], job: JobProgress) -> None:
    """One process of this app per collection (at most os.cpu_count() at a time), their
    progress onto `job`; exits naming the log of a process that failed."""
    slots = max(1, min(len(collect_seeds), os.cpu_count() or 1))
    pending, running, logs = list(collect_seeds), {}, {}
    events: queue.Queue = queue.Queue()

    def read(cs: int, stream) -> None:
        for line in stream:
            events.put((cs, line.rstrip("\n")))
        events.put((cs, None))

    def start(cs: int) -> None:
        (root / f"collect{cs}").mkdir(parents=True, exist_ok=True)
        logs[cs] = root / f"collect{cs}" / "didactic.log"
        with open(logs[cs], "w") as err:
            proc = subprocess.Popen(_args_for_worker(root, cs), stdout=subprocess.PIPE,
                                    stderr=err, text=True, bufsize=1)
        running[cs] = proc
        threading.Thread(target=read, args=(cs, proc.stdout), daemon=True).start()
        job.write(f"collection {cs}: training in its own process (log: {logs[cs]})")

    try:
        while pending or running:
            while pending and len(running) < slots:
                start(pending.pop(0))
            cs, line = events.get()
            if line is None:
                code = running.pop(cs).wait()
                if code != 0:
                    tail = logs[cs].read_text().strip().splitlines()[-15:]
                    job.close()
                    sys.exit(f"error: collection {cs} failed (exit code {code}); its log "
                             f"{logs[cs]} ends:\n" + "\n".join(tail))
            elif line.startswith("@progress "):
                seed, part, fraction, restored = json.loads(line[len("@progress "):])
                job.update((seed, part), fraction, restored)
            elif line.strip():
                job.write(f"[collection {cs}] {line}")
    finally:
        for proc in running.values():
            proc.terminate()


def train_collections(root: Path, collect_seeds: list[int], job: JobProgress | None,
                      pooled: bool = False, emit=None):
    """Collects (or restores) each collection's data and trains (or restores) every method
    on it, in this process. job: the progress bar; pooled: every run is finished already
    (the parallel run's pooled pass: one line per collection); emit(part, fraction,
    restored): a worker's progress reports instead of a bar. -> (per method [row per
    collection], infos, behavior returns)."""
    per_method: dict[str, list[dict]] = {m: [] for m in _METHODS.value}
    infos, behavior = {}, []
    write = job.write if job is not None else (lambda line: print(line, flush=True))
    for cs in collect_seeds:
        workdir = root / f"collect{cs}"

        def progress(part):
            if emit is not None:
                return lambda f, r: emit(cs, part, f, r)
            key = (cs, part, "pool") if pooled and part != "collect" else (cs, part)
            if key not in job.weights:
                return None
            return lambda f, r: job.update(key, f, r)

        train, test, infos[cs] = didactic_data(workdir, _PRESET.value, cs,
                                               progress=progress("collect"))
        if emit is None:
            behavior.append(behavior_return(workdir, _PRESET.value, cs,
                                            infos[cs]["train1"]["checkpoint"]))
            infos[cs]["train1"]["eval_return"] = behavior[-1]
            write(f"collection {cs}: {format_roles(infos[cs])}")
        for m in _METHODS.value:
            per_method[m].append(run_method(
                m, _PRESET.value, _NUM_SEEDS.value, workdir, train, test, False,
                tuple(_SET.value), cs, progress=progress(m),
                log=(lambda line: None) if pooled else write))
        if pooled:
            write(f"collection {cs}: restored and evaluated {', '.join(_METHODS.value)}")
    return per_method, infos, behavior


def main(argv):
    collect_seeds = check_flags(argv)
    quiet_logs()
    root = Path(_WORKDIR.value)
    if _WORKER.value:
        def emit(cs, part, fraction, restored):
            print("@progress " + json.dumps([cs, part, fraction, restored]), flush=True)
        train_collections(root, collect_seeds, None, emit=emit)
        return
    parallel = _PARALLEL.value and len(collect_seeds) > 1 and (os.cpu_count() or 1) >= 2
    parts = [(cs, "collect") for cs in collect_seeds] + [
        (cs, m) for cs in collect_seeds for m in _METHODS.value]
    if parallel:
        parts += [(cs, m, "pool") for cs in collect_seeds for m in _METHODS.value]
    job = JobProgress(parts, enabled=_PROGRESS.value)
    if parallel:
        run_workers(root, collect_seeds, job)
    per_method, infos, behavior = train_collections(root, collect_seeds, job, pooled=parallel)
    job.close()
    rows = [behavior_row(behavior)] + [pool(v) for v in per_method.values()]
    table = format_table(rows, infos)
    verdict = floor_verdict(rows) + "\n\n" + figure2_verdict(rows)
    (root / "didactic.md").write_text(table + "\n\n" + verdict + "\n")
    (root / "didactic.json").write_text(json.dumps(
        {"rows": rows, "per_collection": per_method, "data": infos}, indent=1))
    print("\nDidactic example (InvertedPendulum, gravity x1.0 = task 1, x2.0 = task 2):\n"
          + table + "\n\n" + verdict)
    if draw_figure(rows, root / "figure2.png"):
        print(f"figure: {root / 'figure2.png'}")


if __name__ == "__main__":
    run_app(main)
