"""The package's layering (README "Code layout"): a module of reda_jax imports only from its
own package and the layers below it, at module level or inside a function. (The method
registry names its builders as strings, `configs.METHOD_BUILDERS`, so a lower layer never
imports a method.)"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (   # bottom to top
    ("reda_jax.types", "reda_jax.configs", "reda_jax.presets", "reda_jax.optim",
     "reda_jax.validate", "reda_jax.checkpoint", "reda_jax.metrics_log", "reda_jax.run_info",
     "reda_jax.sharding", "reda_jax.perf", "reda_jax.method_names"),
    ("reda_jax.stage_checkpoints", "reda_jax.stage_loop"),
    ("reda_jax.envs",),
    ("reda_jax.networks",),
    ("reda_jax.data",),
    ("reda_jax.methods",),
    ("reda_jax.algos", "reda_jax.baselines"),
    ("reda_jax.behavior",),
    ("reda_jax.eval",),
    ("reda_jax.train",),
    ("reda_jax.experiment", "reda_jax.report"),
)


def layer_of(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def package_of(module: str) -> str:
    return next(n for names in LAYERS for n in names
                if module == n or module.startswith(n + "."))


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported reda_jax module, line) of every import statement in the file; `from
    reda_jax import x` counts as importing reda_jax.x."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "reda_jax":
                out += [(f"reda_jax.{a.name}", node.lineno) for a in node.names]
            elif node.module.startswith("reda_jax."):
                out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("reda_jax.")]
    return out


def modules():
    for path in sorted((ROOT / "reda_jax").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "reda_jax":
            yield name, path


def test_every_module_has_a_layer():
    assert [m for m, _ in modules() if layer_of(m) is None] == []


@pytest.mark.parametrize("module,path", list(modules()), ids=lambda x: str(x).split("/")[-1])
def test_no_module_imports_from_a_layer_above_it(module, path):
    mine = layer_of(module)
    upward = [f"line {line}: {target} (layer {layer_of(target)} > {mine})"
              for target, line in imports(path)
              if layer_of(target) is not None and layer_of(target) > mine
              and package_of(target) != package_of(module)]
    assert upward == [], f"{module} imports from above its layer: {upward}"


def test_the_check_catches_an_upward_import(tmp_path):
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from reda_jax.train import Trainer\n")
    found = [t for t, _ in imports(fake) if layer_of(t) > layer_of("reda_jax.data.context")]
    assert found == ["reda_jax.train"]
