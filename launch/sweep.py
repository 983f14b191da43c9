"""The paper's experiment grid as experiments.train runs: list, run here, on Slurm, or on
several hosts.

  python -m launch.sweep --mode=list                                  # the full grid, counted
  python -m launch.sweep --mode=local --parallel=2 --task_sets=hopper-gravity --checkpoints=1
  python -m launch.sweep --mode=slurm --slurm_partition=gpu           # writes launch_runs/*.sbatch
  python -m launch.sweep --mode=multihost --coordinator_address=host0:1234 \\
      --num_processes=4 --process_id=$I                               # on each host (or auto-detect)

The grid (Tables 1-5 of the paper):
* main: --task_sets (default: the 7 task sets of Tables 1-2) x --checkpoints x --methods x
  --seeds x --collect_seeds;
* ReDA ablations (Tables 3-4): --ablation_task_sets (default: Walker2d Gravity and
  Dof-Damping, as in the paper) x --checkpoints x --ablations x --seeds x --collect_seeds;
* numbers of dynamics models (Table 5): --models_task_sets (default walker2d-gravity) x
  --models_checkpoints (default 1) x --num_models x --seeds x --collect_seeds; the default
  number (3) is the main ReDA run and is not repeated.
Each run is one `python -m experiments.train ... --seed=s [--num_seeds=S] [--collect_seed=c]`
(its seeds are vmapped inside the run) with --workdir=<runs_root>/<task_set>/<method>/
<preset>-ckpt<k>-seed<s>[-models<n>][-collect<c>], the layout experiments.tables and
experiments.plots read. --collect_seeds (default: the preset's collection seed only) adds
independent behavior data collections: collection c's datasets live at
<data_root>/<data preset>/<task_set>-seed<c> (`experiment.collection_dir`).

Modes: `list` prints the commands and counts. `local` runs the unfinished ones (a run whose
workdir has results.json is skipped, so a re-launch resumes), one at a time or --parallel=N
at once (logs then go to <workdir>/sweep.log), and reports failures at the end (exit code 1).
Runs whose datasets are still missing never collect them concurrently: until a task set's
datasets exist, only one of its runs is started. `slurm` writes <out>/commands.txt and an
sbatch array script (one unfinished run per array index), plus a collection array for task
sets whose datasets are missing, and prints how to submit them. `multihost`: every host
starts the same command; jax.distributed.initialize (from the flags, or auto-detected when
they are omitted) gives each host its index, the host runs the grid entries with
index % process_count == process_index (as in `local`). Collect the datasets first
(python -m launch.collect_all) when the hosts share a file system.

Length: one grid and its four launch modes (list, local, slurm, multihost) share the grid
expansion, the run arguments and the failure report; they stay together.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from absl import flags

from reda_jax import configs, presets
from reda_jax.envs.tasks import TASK_SETS
from reda_jax.method_names import ABLATIONS, method_name
from reda_jax.report.paper_results import PAPER_TASK_SETS
from reda_jax.validate import InputError, at_least, choices, ints, run_app, writable_dir

DIDACTIC = "inverted-pendulum-gravity"
"""The didactic task set (paper Section 5.1): not in the grid."""
assert set(PAPER_TASK_SETS) == set(TASK_SETS) - {DIDACTIC}
ABLATION_TASK_SETS = ("walker2d-gravity", "walker2d-damping")   # paper Tables 3-4
MODELS_TASK_SETS = ("walker2d-gravity",)                        # paper Table 5
MODELS_CHECKPOINTS = (1,)
DEFAULT_DATA_ROOT = "runs/data"                                 # experiments.train's default
MODES = ("list", "local", "slurm", "multihost")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    task_set: str
    checkpoints: int
    algo: str
    seed: int
    preset: str
    ablation: str = "none"
    num_models: int | None = None        # None: the config's default
    num_seeds: int | None = None         # None: the preset's
    collect_seed: int | None = None      # None: the data preset's collection seed
    runs_root: str = "runs"
    data_root: str = DEFAULT_DATA_ROOT

    @property
    def method(self) -> str:
        return method_name(self.algo, self.ablation)

    @property
    def _data_preset(self) -> str:
        return presets.train_preset(self.preset, self.task_set).data_preset

    @property
    def _other_collection(self) -> bool:
        """Whether the run reads another collection than the data preset's."""
        return self.collect_seed is not None and self.collect_seed != presets.collect_preset(
            self._data_preset, self.task_set).seed

    @property
    def workdir(self) -> str:
        models = f"-models{self.num_models}" if self.num_models is not None else ""
        collection = f"-collect{self.collect_seed}" if self._other_collection else ""
        return (f"{self.runs_root}/{self.task_set}/{self.method}/"
                f"{self.preset}-ckpt{self.checkpoints}-seed{self.seed}{models}{collection}")

    @property
    def data_dir(self) -> str:
        """Where experiments.train finds (or collects) this run's datasets."""
        base = f"{self.data_root}/{self._data_preset}/{self.task_set}"
        return f"{base}-seed{self.collect_seed}" if self._other_collection else base

    @property
    def finished(self) -> bool:
        return (Path(self.workdir) / "results.json").exists()

    def command(self) -> list[str]:
        cmd = ["python", "-m", "experiments.train", f"--task_set={self.task_set}",
               f"--checkpoints={self.checkpoints}", f"--algo={self.algo}"]
        if self.ablation != "none":
            cmd.append(f"--ablation={self.ablation}")
        if self.num_models is not None:
            cmd.append(f"--num_models={self.num_models}")
        cmd += [f"--preset={self.preset}", f"--seed={self.seed}"]
        if self.num_seeds is not None:
            cmd.append(f"--num_seeds={self.num_seeds}")
        if self._other_collection:
            cmd.append(f"--collect_seed={self.collect_seed}")
        cmd.append(f"--workdir={self.workdir}")
        if self.data_root != DEFAULT_DATA_ROOT:
            cmd.append(f"--data_dir={self.data_dir}")
        return cmd

    def shell(self) -> str:
        return shlex.join(self.command())


def _check(values, valid, what):
    bad = [v for v in values if v not in valid]
    if bad:
        raise ValueError(f"unknown {what} {bad}; valid: {', '.join(map(str, valid))}")


def expand_grid(task_sets: Sequence[str] = PAPER_TASK_SETS,
                checkpoints: Sequence[int] = (1, 3, 5),
                methods: Sequence[str] = configs.ALGOS,
                ablations: Sequence[str] = ("wo_model", "wo_adv", "wo_up", "wo_tc"),
                ablation_task_sets: Sequence[str] = ABLATION_TASK_SETS,
                num_models: Sequence[int] = (1, 3, 5),
                models_task_sets: Sequence[str] = MODELS_TASK_SETS,
                models_checkpoints: Sequence[int] = MODELS_CHECKPOINTS,
                seeds: Sequence[int] = (0,), preset: str = "paper",
                num_seeds: int | None = None, runs_root: str = "runs",
                data_root: str = DEFAULT_DATA_ROOT,
                collect_seeds: Sequence[int | None] = (None,)) -> list[RunSpec]:
    """The runs, collection by collection and seed by seed: main grid, then ablations, then
    numbers of models. A run that appears twice (e.g. num_models=3 = the main ReDA run, or a
    collection seed equal to the preset's) is kept once."""
    _check(list(task_sets) + list(ablation_task_sets) + list(models_task_sets), TASK_SETS,
           "task sets")
    _check(list(checkpoints) + list(models_checkpoints), (1, 3, 5), "checkpoint counts")
    _check(methods, configs.ALGOS, "methods")
    _check(ablations, [a for a in ABLATIONS if a != "none"], "ablations")
    _check([preset], presets.PRESETS, "presets")
    if any(n < 1 for n in num_models):
        raise ValueError(f"numbers of models must be >= 1, got {list(num_models)}")
    out: dict[str, RunSpec] = {}

    def add(spec):
        out.setdefault(spec.workdir, spec)

    for c, s in ((c, s) for c in collect_seeds for s in seeds):
        common = dict(preset=preset, num_seeds=num_seeds, runs_root=runs_root,
                      data_root=data_root, collect_seed=c)
        for ts in task_sets:
            for k in checkpoints:
                for m in methods:
                    add(RunSpec(ts, k, m, s, **common))
        for ts in ablation_task_sets:
            for k in checkpoints:
                for a in ablations:
                    add(RunSpec(ts, k, "reda", s, ablation=a, **common))
        for ts in models_task_sets:
            for k in models_checkpoints:
                for n in num_models:
                    add(RunSpec(ts, k, "reda", s,
                                num_models=None if n == configs.DEFAULT_NUM_MODELS else n, **common))
    return list(out.values())


def host_slice(specs: Sequence[RunSpec], process_index: int, process_count: int):
    """The runs of one host: grid index % process_count == process_index."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index} not in [0, {process_count})")
    return [s for i, s in enumerate(specs) if i % process_count == process_index]


# ----------------------------------------------------------------------------------------
# local

def _default_argv(spec: RunSpec, quiet: bool) -> list[str]:
    cmd = [sys.executable] + spec.command()[1:]
    return cmd + (["--noprogress"] if quiet else [])


def _datasets_ready(data_dir: str) -> bool:
    return (Path(data_dir) / "datasets").is_dir()


def run_local(specs: Sequence[RunSpec], parallel: int = 1, echo: Callable = print,
              argv_fn: Callable[[RunSpec, bool], list[str]] = _default_argv,
              poll_s: float = 1.0, log_to_files: bool | None = None) -> list[tuple[RunSpec, int]]:
    """Runs the unfinished specs, `parallel` at a time; returns the failures (spec, exit
    code). While a task set's datasets are missing only one of its runs runs (it collects
    them); its other runs start once a run of it has loaded them (wrote config.json in its
    workdir) or finished."""
    parallel = max(1, int(parallel))
    log_to_files = parallel > 1 if log_to_files is None else log_to_files
    pending = []
    for s in specs:
        if s.finished:
            echo(f"[skip] finished: {s.workdir}")
        else:
            pending.append(s)
    echo(f"{len(pending)} of {len(specs)} runs to do, {parallel} at a time")
    ready = {d for d in {s.data_dir for s in pending} if _datasets_ready(d)}
    running: dict[subprocess.Popen, tuple[RunSpec, float, object]] = {}
    failures: list[tuple[RunSpec, int]] = []
    done = 0
    total = len(pending)
    try:
        while pending or running:
            for p in list(running):
                rc = p.poll()
                spec, t0, log = running[p]
                if rc is None:
                    cfg = Path(spec.workdir) / "config.json"
                    if spec.data_dir not in ready and cfg.exists() and cfg.stat().st_mtime >= t0:
                        ready.add(spec.data_dir)
                    continue
                del running[p]
                if log is not None:
                    log.close()
                done += 1
                if rc == 0:
                    ready.add(spec.data_dir)
                    echo(f"[done {done}/{total}] {spec.workdir} ({time.time() - t0:.0f} s)")
                else:
                    failures.append((spec, rc))
                    echo(f"[FAILED {done}/{total}] exit code {rc}: {spec.workdir}"
                         + (f" (log: {spec.workdir}/sweep.log)" if log is not None else ""))
            while len(running) < parallel:
                busy = {s.data_dir for s, _, _ in running.values()}
                nxt = next((s for s in pending if s.data_dir in ready or s.data_dir not in busy),
                           None)
                if nxt is None:
                    break
                pending.remove(nxt)
                log = None
                if log_to_files:
                    Path(nxt.workdir).mkdir(parents=True, exist_ok=True)
                    log = open(Path(nxt.workdir) / "sweep.log", "a")
                echo(f"[start] {nxt.shell()}")
                p = subprocess.Popen(argv_fn(nxt, log_to_files), stdout=log,
                                     stderr=subprocess.STDOUT if log is not None else None)
                running[p] = (nxt, time.time(), log)
            if running:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for p in running:
            p.terminate()
        for p in running:
            p.wait()
        raise
    return failures


def report_failures(failures, echo=print) -> int:
    if not failures:
        echo("all runs finished")
        return 0
    echo(f"{len(failures)} run(s) failed:")
    for spec, rc in failures:
        echo(f"  exit code {rc}: {spec.shell()}")
    return 1


# ----------------------------------------------------------------------------------------
# slurm

@dataclasses.dataclass(frozen=True)
class SlurmResources:
    partition: str | None = None
    time: str = "48:00:00"
    cpus: int = 8
    mem: str = "32G"
    gpus: int = 1
    max_concurrent: int | None = None
    setup: str = ""
    extra: tuple[str, ...] = ()


def slurm_script(commands_file: str, num_tasks: int, log_dir: str, repo_dir: str,
                 res: SlurmResources, job_name: str = "reda-sweep",
                 skip_finished: bool = True) -> str:
    """An sbatch array script: array index i runs line i + 1 of `commands_file`."""
    if num_tasks < 1:
        raise ValueError("nothing to submit")
    array = f"0-{num_tasks - 1}" + (f"%{res.max_concurrent}" if res.max_concurrent else "")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --array={array}",
             f"#SBATCH --output={log_dir}/%x-%A_%a.out", f"#SBATCH --cpus-per-task={res.cpus}",
             f"#SBATCH --mem={res.mem}", f"#SBATCH --time={res.time}"]
    if res.gpus:
        lines.append(f"#SBATCH --gres=gpu:{res.gpus}")
    if res.partition:
        lines.append(f"#SBATCH --partition={res.partition}")
    lines += [f"#SBATCH {x}" for x in res.extra]
    lines += ["set -euo pipefail", f"cd {shlex.quote(repo_dir)}"]
    if res.setup:
        lines.append(res.setup)
    lines += [f'CMD=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(commands_file)})',
              'if [ -z "$CMD" ]; then echo "no command for index $SLURM_ARRAY_TASK_ID"; exit 1; fi']
    if skip_finished:
        lines += ["WORKDIR=$(echo \"$CMD\" | sed -n 's/.*--workdir=\\([^ ]*\\).*/\\1/p')",
                  'if [ -n "$WORKDIR" ] && [ -f "$WORKDIR/results.json" ]; then',
                  '  echo "finished already: $WORKDIR"; exit 0', "fi"]
    lines += ['echo "$CMD"', 'eval "$CMD"', ""]
    return "\n".join(lines)


def collect_commands(specs: Sequence[RunSpec]) -> list[str]:
    """experiments.collect commands for the data dirs of `specs` that lack datasets."""
    out = {}
    for s in specs:
        if s.data_dir not in out and not _datasets_ready(s.data_dir):
            data_preset = Path(s.data_dir).parent.name
            seed = [f"--seed={s.collect_seed}"] if s.collect_seed is not None else []
            out[s.data_dir] = shlex.join(["python", "-m", "experiments.collect",
                                          f"--task_set={s.task_set}", f"--preset={data_preset}",
                                          *seed, f"--workdir={s.data_dir}"])
    return list(out.values())


def write_slurm(specs: Sequence[RunSpec], out: str, res: SlurmResources,
                repo_dir: str | None = None, echo: Callable = print) -> list[Path]:
    """Writes <out>/commands.txt + sweep.sbatch (unfinished runs only) and, for missing
    datasets, collect_commands.txt + collect.sbatch; prints how to submit."""
    out_dir = Path(out).resolve()
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    repo_dir = str(Path(repo_dir or os.getcwd()).resolve())
    pending = [s for s in specs if not s.finished]
    echo(f"{len(pending)} of {len(specs)} runs unfinished")
    written = []
    if not pending:
        return written
    cmds = out_dir / "commands.txt"
    cmds.write_text("".join(s.shell() + "\n" for s in pending))
    script = out_dir / "sweep.sbatch"
    script.write_text(slurm_script(str(cmds), len(pending), str(out_dir / "logs"), repo_dir, res))
    written += [cmds, script]
    collect = collect_commands(pending)
    if collect:
        ccmds = out_dir / "collect_commands.txt"
        ccmds.write_text("".join(c + "\n" for c in collect))
        cscript = out_dir / "collect.sbatch"
        cres = dataclasses.replace(res, max_concurrent=None)
        cscript.write_text(slurm_script(str(ccmds), len(collect), str(out_dir / "logs"),
                                        repo_dir, cres, job_name="reda-collect",
                                        skip_finished=False))
        written += [ccmds, cscript]
        echo(f"{len(collect)} task set(s) lack datasets; collect them first, then train:\n"
             f"  jid=$(sbatch --parsable {cscript}) && "
             f"sbatch --dependency=afterok:$jid {script}")
    else:
        echo(f"submit with:\n  sbatch {script}")
    return written


# ----------------------------------------------------------------------------------------
# multihost

def distributed_info(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> tuple[int, int]:
    """(process index, process count) from jax.distributed.initialize (arguments left None
    are auto-detected: Slurm, Open MPI, TPU, ...). Shut down again right away, so a host
    that finishes early cannot bring down the others; no accelerator is touched here."""
    import jax
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    try:
        from jax._src import distributed as _distributed
        index = _distributed.global_state.process_id
        count = _distributed.global_state.num_processes
        if index is None or count is None:
            raise AttributeError
    except (ImportError, AttributeError):
        index, count = jax.process_index(), jax.process_count()
    jax.distributed.shutdown()
    return int(index), int(count)


def run_multihost(specs: Sequence[RunSpec], process_index: int, process_count: int,
                  parallel: int = 1, echo: Callable = print, **local_kw):
    mine = host_slice(specs, process_index, process_count)
    echo(f"host {process_index} of {process_count}: {len(mine)} of {len(specs)} runs")
    missing = sorted({s.data_dir for s in mine if not _datasets_ready(s.data_dir)})
    if missing and process_count > 1:
        echo("warning: datasets missing in " + ", ".join(missing) + "; hosts that share a file "
             "system may collect them concurrently (run launch.collect_all first)")
    return run_local(mine, parallel, echo=echo, **local_kw)


# ----------------------------------------------------------------------------------------
# The app.

def define_flags() -> None:
    """Defined on demand (not at import) so that tests can import several apps at once."""
    flags.DEFINE_enum("mode", "list", list(MODES), "list, local, slurm or multihost.")
    flags.DEFINE_list("task_sets", list(PAPER_TASK_SETS), "Task sets of the main grid.")
    flags.DEFINE_list("checkpoints", ["1", "3", "5"], "Behavior checkpoint counts.")
    flags.DEFINE_list("methods", list(configs.ALGOS), "Methods of the main grid.")
    flags.DEFINE_list("ablations", ["wo_model", "wo_adv", "wo_up", "wo_tc"],
                      "ReDA ablations (Tables 3-4); empty for none.")
    flags.DEFINE_list("ablation_task_sets", list(ABLATION_TASK_SETS),
                      "Task sets of the ablations (paper: Walker2d Gravity / Dof-Damping).")
    flags.DEFINE_list("num_models", ["1", "3", "5"],
                      f"Numbers of dynamics models (Table 5); {configs.DEFAULT_NUM_MODELS} is the main "
                      "ReDA run; empty for none.")
    flags.DEFINE_list("models_task_sets", list(MODELS_TASK_SETS),
                      "Task sets of the numbers-of-models runs (paper: Walker2d Gravity).")
    flags.DEFINE_list("models_checkpoints", [str(k) for k in MODELS_CHECKPOINTS],
                      "Checkpoint counts of the numbers-of-models runs (paper: 1).")
    flags.DEFINE_list("seeds", ["0"], "Base seeds (one run each).")
    flags.DEFINE_list("collect_seeds", [], "Seeds of independent behavior data collections "
                      "(one run each; default: the preset's collection only).")
    flags.DEFINE_integer("num_seeds", None, "Seeds vmapped inside each run; default the preset's.")
    flags.DEFINE_enum("preset", "paper", list(presets.PRESETS), "Size preset.")
    flags.DEFINE_string("runs_root", "runs", "Run directories go under this.")
    flags.DEFINE_string("data_root", DEFAULT_DATA_ROOT,
                        "Datasets are in <data_root>/<data preset>/<task_set>.")
    flags.DEFINE_integer("parallel", 1, "local / multihost: runs at once.")
    flags.DEFINE_string("out", "launch_runs", "slurm: where the scripts and logs go.")
    flags.DEFINE_string("slurm_partition", None, "slurm: --partition.")
    flags.DEFINE_string("slurm_time", "48:00:00", "slurm: --time per run.")
    flags.DEFINE_integer("slurm_cpus", 8, "slurm: --cpus-per-task.")
    flags.DEFINE_string("slurm_mem", "32G", "slurm: --mem.")
    flags.DEFINE_integer("slurm_gpus", 1, "slurm: GPUs per run (--gres=gpu:N); 0 for none.")
    flags.DEFINE_integer("slurm_max_concurrent", None, "slurm: at most this many at once (%N).")
    flags.DEFINE_string("slurm_setup", "source .venv/bin/activate",
                        "slurm: shell line run before each command.")
    flags.DEFINE_list("slurm_extra", [], "slurm: extra #SBATCH options, e.g. --account=abc.")
    flags.DEFINE_string("coordinator_address", None, "multihost: host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "multihost: number of hosts.")
    flags.DEFINE_integer("process_id", None, "multihost: this host's index.")


def check_flags(argv: list[str], f=flags.FLAGS) -> list[RunSpec]:
    """Every flag range-checked before any work; returns the grid (InputError naming the
    flag otherwise)."""
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    for name in ("task_sets", "ablation_task_sets", "models_task_sets"):
        choices(name, f[name].value, sorted(TASK_SETS), nonempty=False)
    choices("methods", f.methods, configs.ALGOS, nonempty=False)
    choices("ablations", f.ablations, [a for a in ABLATIONS if a != "none"], nonempty=False)
    checkpoints = ints("checkpoints", f.checkpoints, allowed=(1, 3, 5), nonempty=False)
    models_checkpoints = ints("models_checkpoints", f.models_checkpoints, allowed=(1, 3, 5),
                              nonempty=False)
    num_models = ints("num_models", f.num_models, low=1, nonempty=False)
    seeds = ints("seeds", f.seeds, low=0)
    collect_seeds = ints("collect_seeds", f.collect_seeds, low=0, nonempty=False) or [None]
    at_least("num_seeds", f.num_seeds)
    at_least("parallel", f.parallel)
    at_least("slurm_cpus", f.slurm_cpus)
    at_least("slurm_gpus", f.slurm_gpus, 0)
    at_least("slurm_max_concurrent", f.slurm_max_concurrent)
    at_least("num_processes", f.num_processes)
    at_least("process_id", f.process_id, 0)
    if f.mode in ("local", "multihost"):
        writable_dir("runs_root", f.runs_root)
    if f.mode == "slurm":
        writable_dir("out", f.out)
    if Path(f.data_root).exists() and not Path(f.data_root).is_dir():
        raise InputError(f"--data_root: {f.data_root} exists and is not a directory")
    specs = expand_grid(
        f.task_sets, checkpoints, f.methods, f.ablations, f.ablation_task_sets, num_models,
        f.models_task_sets, models_checkpoints, seeds, f.preset, f.num_seeds, f.runs_root,
        f.data_root, collect_seeds)
    if not specs:
        raise InputError("the grid is empty: give --task_sets, --checkpoints and --methods, "
                         "or --ablations, or --num_models")
    return specs


def main(argv):
    f = flags.FLAGS
    specs = check_flags(argv)
    if f.mode == "list":
        for s in specs:
            print(s.shell())
        n_main = sum(1 for s in specs if s.ablation == "none" and s.num_models is None)
        n_abl = sum(1 for s in specs if s.ablation != "none")
        n_fin = sum(1 for s in specs if s.finished)
        print(f"# {len(specs)} runs ({n_main} main, {n_abl} ablations, "
              f"{len(specs) - n_main - n_abl} numbers of models); {n_fin} finished")
    elif f.mode == "local":
        sys.exit(report_failures(run_local(specs, f.parallel)))
    elif f.mode == "slurm":
        res = SlurmResources(f.slurm_partition, f.slurm_time, f.slurm_cpus, f.slurm_mem,
                             f.slurm_gpus, f.slurm_max_concurrent, f.slurm_setup,
                             tuple(f.slurm_extra))
        write_slurm(specs, f.out, res)
    else:
        index, count = distributed_info(f.coordinator_address, f.num_processes, f.process_id)
        sys.exit(report_failures(run_multihost(specs, index, count, f.parallel)))


if __name__ == "__main__":
    define_flags()
    run_app(main)
