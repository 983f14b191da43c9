"""Every app module imports (in its own process: each defines absl flags). An import of a
name that a refactor removed fails here, not only in the app's own end-to-end test."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = sorted(f"{pkg}.{m.name}" for pkg in ("experiments", "launch")
              for m in pkgutil.iter_modules([str(ROOT / pkg)]))


def test_the_app_list_is_complete():
    assert {"experiments.train", "experiments.didactic", "launch.sweep"} <= set(APPS)


@pytest.mark.parametrize("module", APPS)
def test_app_module_imports(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
