"""run_info.json: the host it ran on, and every earlier process of a resumed run."""
import json
from pathlib import Path

import pytest

from reda_jax.run_info import prepare_run_dir


def _info(workdir: Path) -> dict:
    return json.loads((workdir / "run_info.json").read_text())


def test_run_info_names_the_cpu_and_keeps_each_earlier_process_of_a_resumed_run(
        tmp_path, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    prepare_run_dir(tmp_path, {"seed": 0})
    first = _info(tmp_path)
    assert first["history"] == []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        if models:
            assert first["host"]["cpu"] == models[0]
    assert first["host"]["xla_flags"] == ""
    # Resumed in another process with other XLA flags: the first process is kept.
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    prepare_run_dir(tmp_path, {"seed": 0})
    second = _info(tmp_path)
    assert second["host"]["xla_flags"] == "--xla_cpu_enable_fast_math=false"
    assert second["history"] == [{k: v for k, v in first.items() if k != "history"}]
    prepare_run_dir(tmp_path, {"seed": 0})
    third = _info(tmp_path)
    assert [h["host"]["xla_flags"] for h in third["history"]] == [
        "", "--xla_cpu_enable_fast_math=false"]


def test_an_unreadable_run_info_is_replaced_not_fatal(tmp_path):
    (tmp_path / "run_info.json").write_text("{not json")
    prepare_run_dir(tmp_path, {"seed": 0})
    assert _info(tmp_path)["history"] == []


def test_run_info_names_the_compilation_cache_that_supplied_the_compiled_code(tmp_path):
    import jax
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "xla-cache"))
    try:
        prepare_run_dir(tmp_path / "run", {"seed": 0})
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    assert _info(tmp_path / "run")["host"]["compilation_cache_dir"] == str(tmp_path / "xla-cache")


_HOLD = """
import sys, time
from reda_jax.run_info import prepare_run_dir
prepare_run_dir(sys.argv[1], {"a": 1})
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_second_process_on_a_run_directory_is_refused_naming_the_holder(tmp_path):
    """While one process holds a run directory, another is refused in one line naming the
    holder's PID; once the holder is gone (here: killed), the directory opens again."""
    import signal
    import subprocess
    import sys

    from reda_jax.run_info import prepare_run_dir, release_run_dir
    from reda_jax.validate import InputError
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"in use by another process \\(PID {holder.pid}\\)"):
            prepare_run_dir(run, {"a": 1})
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    prepare_run_dir(run, {"a": 1})      # the killed holder left no stale lock
    prepare_run_dir(run, {"a": 1})      # this process again: re-entrant
    release_run_dir(run)


def test_a_config_json_that_is_not_json_is_named(tmp_path):
    from reda_jax.run_info import prepare_run_dir
    from reda_jax.validate import InputError
    (tmp_path / "config.json").write_text("{\n")
    with pytest.raises(InputError, match="config.json is not valid JSON"):
        prepare_run_dir(tmp_path, {"a": 1})


def test_a_run_in_a_collection_directory_is_refused_in_plain_words(tmp_path):
    from reda_jax.validate import InputError
    prepare_run_dir(tmp_path, {"task_set": "x", "preset": "mini", "collect": {"seed": 0}})
    with pytest.raises(InputError, match="holds a data collection, not a run"):
        prepare_run_dir(tmp_path, {"train": {"seed": 0}})
