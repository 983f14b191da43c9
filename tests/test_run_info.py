"""run_info.json: the host it ran on, and every earlier process of a resumed run."""
import json
from pathlib import Path

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
