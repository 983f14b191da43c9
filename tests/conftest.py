"""Test-session setup: one persistent XLA compilation cache for the whole session.

Most of a smoke run's time on a CPU is XLA compilation (measured: 222-241 s cold, 46 s with
the cache warm, for the same ReDA smoke run), and the suite compiles the same programs many
times over: resumed runs, subprocess apps, the same stage across tests. The cache is keyed
by the compiled program, so a hit returns the same executable and results are unchanged.
Subprocesses inherit it through the environment. Set JAX_COMPILATION_CACHE_DIR yourself to
keep the cache between sessions; otherwise a fresh directory is used and removed at the end.
"""
import os
import shutil
import tempfile

_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:   # before anything imports jax, which reads the variable once
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="reda-jax-xla-cache-")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
