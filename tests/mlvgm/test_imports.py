"""The module graph: imports run one way (no cycle), each module imports alone in a fresh process,
evaluation and the recipe never pull in the training loop, and an import inside a function is only
ever of an optional dependency (DALI, FFCV, Triton, matplotlib, tensorboard), a command's front loading
its implementation once its arguments passed (tests/test_fast_errors.py: errors before torch loads), or the
generator registry loading a built-in generator when a spec names it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Imports a function may make: packages mlvgm runs without (extras, or CUDA builds only).
OPTIONAL = ("nvidia.dali", "ffcv", "numba", "triton", "matplotlib", "torch.utils.tensorboard")
# Torch-free modules a command starts from: they import the model stack inside main, after the arguments pass.
# Registries that import a built-in entry's module when it is first asked for: the protocol loads without them.
REGISTRIES = {"mlvgm.generators"}
FRONTS = {"mlvgm.cli", "mlvgm.train", "mlvgm.evaluate", "mlvgm.quantify", "mlvgm.experiments", "mlvgm.backbone",
          "mlvgm.grid", "mlvgm.audit", "mlvgm.data.export", "mlvgm.zoo.train", "mlvgm.zoo.evidence",
          "mlvgm.zoo.control"}  # fmt: skip


def package_files() -> dict[str, Path]:
    """mlvgm.* module names -> source file (mlvgm.kernels from the top-level kernels/ folder)."""
    files = {}
    for path in sorted((ROOT / "mlvgm").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((ROOT / "kernels").glob("*.py")):
        name = "mlvgm.kernels" + ("" if path.stem == "__init__" else f".{path.stem}")
        files[name] = path
    return files


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, whether inside a function) for every import statement of a file."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module, inner))
                found.extend((f"{child.module}.{alias.name}", inner) for alias in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    files = package_files()
    edges = {}
    for name, path in files.items():
        edges[name] = {target for target, _ in imports(path) if target in files and target != name}
    return edges


def test_the_module_graph_has_no_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target] if target in stack else [node, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                walk(target, [*stack, target])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])


def test_imports_inside_functions_are_of_optional_dependencies_only():
    late = [f"{path.relative_to(ROOT)}: {module}" for name, path in package_files().items()
            for module, inside in imports(path)
            if inside and not module.startswith(OPTIONAL) and name not in FRONTS | REGISTRIES]  # fmt: skip
    assert late == []


def test_the_recipe_and_evaluation_do_not_depend_on_the_training_loop():
    edges = graph()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in edges[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    for module in ("mlvgm.recipe", "mlvgm.evaluate", "mlvgm.probes", "mlvgm.quantify", "mlvgm.views"):
        assert "mlvgm.train" not in reach(module), module
    assert {"mlvgm.recipe", "mlvgm.train"}.isdisjoint(reach("mlvgm.probes"))


@pytest.mark.parametrize("module", ["mlvgm.recipe", "mlvgm.evaluate", "mlvgm.probes"])
def test_each_module_imports_alone_and_leaves_the_loop_out(module):
    """In a fresh interpreter, what importing the module really loads (the ast graph above can miss a
    dynamic import)."""
    code = f"import sys, {module}; print('mlvgm.train' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_every_module_imports_alone():
    """Each module imports on its own, none of mlvgm loaded before it (one interpreter, for time: torch
    stays loaded, mlvgm's modules are dropped between imports)."""
    code = (
        "import importlib, sys, torch\n"
        f"for name in {sorted(package_files())!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'mlvgm' or m.startswith('mlvgm.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_the_generator_protocol_loads_without_the_networks():
    code = ("import sys, mlvgm.generators.base, mlvgm.generators as g; "
            "print(sorted(m for m in ('shapes', 'stylegan2', 'bigbigan', 'embedded', 'safe_pickle') "
            "if f'mlvgm.generators.{m}' in sys.modules)); g.load_generator('shapes:resolution=32'); "
            "print('mlvgm.generators.shapes' in sys.modules, g.ShapesWorld.__name__)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True ShapesWorld"]
