"""Input validation shared by the apps: range checks, path checks, and `run_app`, which
turns every bad input into one line on stderr and exit code 2 (no traceback, no help).

Each check raises `InputError` whose message names the flag and the allowed values, e.g.
"--lambda1: must be a finite number >= 0, got -1.0". Apps validate every flag before any
work starts (`run_app` also catches flag-parsing errors the same way).
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """A flag, config value, dataset or run directory the app cannot use; one line."""


def finite_nonneg(flag: str, value: float | None) -> None:
    """None passes (the preset's value); otherwise a finite number >= 0."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise InputError(f"--{flag}: must be a finite number >= 0, got {value}")


def at_least(flag: str, value: int | None, low: int = 1) -> None:
    """None passes (the default); otherwise an integer >= low."""
    if value is not None and value < low:
        raise InputError(f"--{flag}: must be an integer >= {low}, got {value}")


def ints(flag: str, values: Iterable[str], low: int | None = None,
         allowed: Iterable[int] | None = None, nonempty: bool = True) -> list[int]:
    """A list flag of integers (each >= low and in `allowed` when given)."""
    values = list(values)
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise InputError(f"--{flag}: takes comma-separated integers, got {values}") from None
    if nonempty and not out:
        raise InputError(f"--{flag}: needs at least one value")
    if low is not None and any(v < low for v in out):
        raise InputError(f"--{flag}: every value must be >= {low}, got {out}")
    if allowed is not None:
        allowed = list(allowed)
        bad = [v for v in out if v not in allowed]
        if bad:
            raise InputError(f"--{flag}: {bad} not allowed; valid: "
                             f"{', '.join(map(str, allowed))}")
    return out


def choices(flag: str, values: Iterable[str], valid: Iterable[str],
            nonempty: bool = True) -> list[str]:
    """A list flag whose values must all be in `valid`."""
    values, valid = list(values), list(valid)
    if nonempty and not values:
        raise InputError(f"--{flag}: needs at least one of {', '.join(valid)}")
    bad = [v for v in values if v not in valid]
    if bad:
        raise InputError(f"--{flag}: unknown {bad}; valid: {', '.join(valid)}")
    return values


def writable_dir(flag: str, path: str | os.PathLike | None) -> None:
    """`path` is (or can be created as) a directory this process may write to."""
    if path is None:
        return
    p = Path(path)
    if str(path) == "":
        raise InputError(f"--{flag}: must be a directory path, got an empty string")
    if p.exists() and not p.is_dir():
        raise InputError(f"--{flag}: {p} exists and is not a directory")
    existing = p
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"--{flag}: {existing} is not a directory, cannot create {p} in it")
    try:  # os.access says yes to root even on read-only mounts: try it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise InputError(f"--{flag}: {existing} is not writable (needed for {p}: "
                         f"{e.strerror})") from None


def existing_dir(flag: str, path: str | os.PathLike | None) -> None:
    if path is not None and not Path(path).is_dir():
        raise InputError(f"--{flag}: {path} is not an existing directory")


def one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split("\n"))


def fail(message: str) -> None:
    """Prints `error: message` (one line) to stderr and exits with EXIT_BAD_INPUT."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


def bad_input_types() -> tuple[type[BaseException], ...]:
    """The exceptions `run_app` reports as one line: bad flags, datasets (`data.store`'s
    DatasetError is an InputError), run dirs."""
    from absl import app
    return (InputError, app.UsageError)


EXIT_INTERRUPTED = 130
"""Exit code of an interrupted app (the shell's 128 + SIGINT)."""


def _in_chain(error: BaseException, match: Callable[[BaseException], bool]
              ) -> BaseException | None:
    """The first exception in error's cause / context chain (itself first) that matches:
    a full disk or an interrupt often surfaces as another library's error raised while
    handling it (e.g. a checkpoint writer's closed event loop)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if match(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def guarded(main: Callable[..., object]) -> Callable[..., object]:
    """`main` with bad inputs reported as one line and exit code 2; a full disk as one line
    (exit 2) and an interrupt as one line (exit 130), each saying that rerunning the same
    command resumes."""
    import errno

    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except bad_input_types() as e:
            fail(one_line(e))
        except BaseException as e:   # noqa: BLE001 - re-raised unless recognised
            full = _in_chain(e, lambda x: isinstance(x, OSError) and x.errno == errno.ENOSPC)
            if full is not None:
                where = f" writing {full.filename}" if full.filename else ""
                fail(f"no space left on device{where}; free space and rerun the same command: "
                     "the run resumes from its last checkpoint")
            if _in_chain(e, lambda x: isinstance(x, KeyboardInterrupt)) is not None:
                print("error: interrupted; rerun the same command to resume from the last "
                      "checkpoint", file=sys.stderr, flush=True)
                sys.exit(EXIT_INTERRUPTED)
            raise
    wrapped.__doc__ = main.__doc__
    return wrapped


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, a parsing error as one line and exit code 2."""
    from absl import flags
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(one_line(e))


def run_app(main: Callable[[list[str]], object]) -> None:
    """`absl.app.run(main)`, with flag errors and bad inputs as one line and exit code 2."""
    from absl import app
    app.run(guarded(main), flags_parser=parse_flags)
