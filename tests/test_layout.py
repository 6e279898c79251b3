"""The architecture of DESIGN.md, checked: arrows point one way (sim, real, analysis and the
CLI may import the core; the core imports none of them, nor torch or matplotlib), no import
loops between modules, and no module of the core grows past ~400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("allocbench", "sim", "real", "analysis", "cli")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (lazy imports included)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_the_core_imports_no_environment_analysis_or_cli():
    known = modules()
    bad = [(name, target) for name, path in known.items() if name.split(".")[0] == "allocbench"
           for target in imports(path, name, known) if target.split(".")[0] != "allocbench"]
    assert not bad, f"the core imports outside itself: {bad}"


def test_nothing_imports_the_cli():
    known = modules()
    bad = [(name, target) for name, path in known.items() if name.split(".")[0] != "cli"
           for target in imports(path, name, known) if target.split(".")[0] == "cli"]
    assert not bad


def test_no_import_loops():
    known = modules()
    graph = {name: imports(path, name, known) for name, path in known.items()}
    # a package's __init__ re-exporting its own modules is not a loop
    graph = {n: {t for t in ts if not n or not t.startswith(n + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import loop: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_importing_the_core_loads_no_heavy_or_outer_package():
    code = ("import sys, allocbench, allocbench.tune, allocbench.compare, allocbench.config, allocbench.envs; "
            "print(' '.join(sorted(m for m in ('sim', 'real', 'analysis', 'cli', 'torch', 'matplotlib') "
            "if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_core_modules_stay_small():
    big = {str(p.relative_to(REPO)): n for p in (REPO / "allocbench").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 420}
    assert not big, f"core modules over ~400 lines: {big}"
