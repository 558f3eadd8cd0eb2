"""The package's layering: imports run downward only, and no module imports itself back.

The layer order is written once, here and in README's "How the code is organised"; a module may
import its own package and any package below it, never one above. ``skincls`` itself (the
public API, which re-exports from every layer) and ``__main__`` are above everything, so no
module of the package imports them. Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skincls"
LAYERS = ["core", "data", "model", "run", "serving", "training", "cli"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the skincls modules it imports (at module level or inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    deps.add(t)
                    break
        graph[name] = deps
    return graph


def layer(module: str) -> int:
    """The layer index; ``skincls`` itself (the public API, re-exporting from every layer) and
    ``__main__`` sit above all layers, so no module of the package may import them."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return len(LAYERS)
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: not in a layer package {LAYERS}")
    return LAYERS.index(parts[1])


def test_every_module_is_in_a_layer_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
    for name in import_graph():
        layer(name)


def test_imports_run_downward_only():
    upward = [
        f"{a} -> {b}" for a, deps in import_graph().items() for b in deps if layer(b) > layer(a)
    ]
    assert upward == []


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_checks_see_a_violation(tmp_path, monkeypatch):
    """The graph really follows imports: a planted upward import and a planted cycle are found."""
    pkg = tmp_path / "skincls"
    for sub in ("core", "cli"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from skincls.cli import b\n")
    (pkg / "cli" / "b.py").write_text("from skincls.core.a import f\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGE", pkg)
    with pytest.raises(AssertionError):
        test_imports_run_downward_only()
    with pytest.raises(AssertionError):
        test_no_import_cycle()


def spelled_families(source: str) -> list[str]:
    """Tuples, lists, sets and ``Literal[...]`` in ``source`` that hold every name of one family
    of :mod:`skincls.core.names`: the family spelled again outside its table. (A chosen subset,
    such as the columns of the NIA-layout table, is a choice, not the family.)"""
    from skincls.core import names

    families = {
        "losses": set(names.LOSSES),
        "metrics": set(names.METRIC_TABLE),
        "resize policies": set(names.RESIZE_POLICIES),
        "sources": set(names.SOURCES) - {"auto"},
        "decision rules": set(names.DECISIONS),
        "samplers": set(names.SAMPLERS) - {"none"},
    }
    found = []
    for node in ast.walk(ast.parse(source)):
        elts = None
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = node.elts
        if elts is None or not all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elts
        ):
            continue
        values = {e.value for e in elts}
        for family, members in families.items():
            if members <= values:
                found.append(f"line {node.lineno}: {family} {sorted(members)}")
    return found


def test_each_family_of_names_is_spelled_once():
    spelled = {
        str(path.relative_to(PACKAGE)): found
        for path in PACKAGE.rglob("*.py")
        if path.name != "names.py" and (found := spelled_families(path.read_text()))
    }
    assert spelled == {}


def test_the_family_check_sees_a_family_spelled_again():
    assert spelled_families('x: Literal["squash", "pad", "crop"] = "crop"\n')
    assert spelled_families('SOURCES = ["auto", "aihub", "folder", "csv"]\n')
    assert not spelled_families('x = ("squash", "pad")\n')


def test_no_public_function_takes_over_seven_parameters():
    """Library functions group the rest into the run context or a small options object. The
    commands in ``skincls/cli`` are exempt: their parameters are the command's options."""
    crowded = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                a = node.args
                names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
                names = [n for n in names if n not in ("self", "cls")]
                if len(names) > 7:
                    crowded.append(f"{path.relative_to(PACKAGE)}:{node.name} ({len(names)})")
    assert crowded == []


def test_the_public_api_resolves_and_import_skincls_stays_light():
    import subprocess
    import sys

    import skincls

    for name in skincls.API:
        obj = getattr(skincls, name)
        assert obj.__module__ == skincls.API[name], name
    code = "import sys, skincls; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        skincls.nope  # noqa: B018
