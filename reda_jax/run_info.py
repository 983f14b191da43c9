"""What every run directory records: resolved config, git commit, versions, devices, host.

run_info.json describes the process that last opened the run; the processes before it (a
resumed run) are kept under its "history", so a run continued on another CPU, commit or
package set says so (XLA:CPU results can depend on all three)."""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import jax

from reda_jax.configs import differing_fields
from reda_jax.validate import InputError

PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "mujoco", "gymnasium", "orbax-checkpoint",
            "minari", "numpy", "reda-jax")


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def host() -> dict[str, object]:
    """The machine: CPU model (Linux /proc/cpuinfo, else platform.processor()), logical
    cores, OS, XLA_FLAGS, and JAX's persistent compilation cache directory (a cache filled
    on another machine hands its compiled code, and so its rounding, to this one)."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or "unknown", "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "compilation_cache_dir": jax.config.jax_compilation_cache_dir or ""}


def earlier_processes(info_path: Path) -> list[dict]:
    """The records of every process that opened the run before, oldest first, from its
    run_info.json ([] if there is none or it is unreadable)."""
    try:
        earlier = json.loads(info_path.read_text())
        return list(earlier.pop("history", [])) + [earlier]
    except (OSError, json.JSONDecodeError, AttributeError, TypeError):
        return []


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


LOCK_FILE = "run.lock"
_held_locks: dict[Path, int] = {}
"""Run directories this process has locked: path -> open file descriptor. The kernel drops
an flock when its process ends, however it ends, so a killed run never leaves a stale lock."""


def lock_run_dir(workdir: str | os.PathLike) -> None:
    """Takes the run directory's lock for the rest of this process (again: nothing to do).
    Another live process holding it: InputError naming its PID, so that two processes
    never write one run's metrics and checkpoints at once."""
    import fcntl
    path = Path(workdir).absolute()
    if path in _held_locks:
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise InputError(f"{workdir} is in use by another process (PID {holder}); wait for "
                         "it to end or stop it, then rerun to resume") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held_locks[path] = fd


def release_run_dir(workdir: str | os.PathLike) -> None:
    """Gives up this process's lock on the run directory (if held), e.g. before handing
    the run to a subprocess."""
    fd = _held_locks.pop(Path(workdir).absolute(), None)
    if fd is not None:
        os.close(fd)


def read_json(path: str | os.PathLike):
    """A JSON file's content; a file that is not JSON is an InputError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON ({e}); fix or delete it") from None


def prepare_run_dir(workdir: str | os.PathLike, config: dict, resume_check: bool = True) -> Path:
    """Locks `workdir` for this process (`lock_run_dir`), writes config.json and
    run_info.json. If a config.json from an earlier run is there and differs, raises
    InputError (a ValueError) naming the differing fields (a resumed run must use the same
    config)."""
    workdir = Path(workdir)
    lock_run_dir(workdir)
    config = json.loads(json.dumps(config, default=str))
    cfg_path = workdir / "config.json"
    if resume_check and cfg_path.exists():
        old = read_json(cfg_path)
        kinds = [("a data collection" if "collect" in c else "a run") for c in (old, config)]
        if isinstance(old, dict) and kinds[0] != kinds[1]:
            raise InputError(f"{workdir} holds {kinds[0]}, not {kinds[1]}: use another "
                             "--workdir (a run's data live in its --data_dir)")
        diff = differing_fields(old, config)
        if diff:
            raise InputError(f"{workdir} holds a run with a different config (fields {diff}); "
                             "use another --workdir or delete it")
    write_json_atomic(cfg_path, config)
    info_path = workdir / "run_info.json"
    write_json_atomic(info_path, dict(
        git_commit=git_commit(), versions=versions(), command=sys.argv,
        devices=[str(d) for d in jax.devices()], backend=jax.default_backend(), host=host(),
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), history=earlier_processes(info_path)))
    return workdir


def quiet_logs() -> None:
    """Keeps orbax's and absl's per-save INFO lines out of the console."""
    for name in ("absl", "orbax", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
    except ImportError:
        pass
