"""The house rules, checked on the source: layers never cross and imports never cycle.

- tasks/ (the contract) imports neither workers nor producers;
- producers never import workers (the CLI's ``worker`` and ``optimize`` verbs aside,
  which dispatch to the worker side's entry points: ``producers.cli``, the parser, and
  ``producers.cli_fleet``, the verbs);
- workers never import producers;
- gateway/ (``embedfleet serve``) imports tasks and producers, never workers; nothing
  imports gateway but the CLI's ``serve`` verb;
- no import cycle among the project's modules, counting imports inside functions and
  under ``if TYPE_CHECKING:``: a cycle hidden that way is still a cycle (two modules
  that need each other's names); move the shared piece down a floor instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "workers", "producers", "gateway")
#: The CLI may dispatch to the worker side's entry points, nothing else of it.
CLI_DISPATCH = {"workers.serving.main", "workers.optimize.cli", "gateway.serve"}
#: The CLI's modules that may: the parser (``optimize``'s arguments) and the fleet verbs.
CLI_MODULES = {"producers.cli", "producers.cli_fleet"}


def _modules() -> dict[str, Path]:
    found = {"celeryconfig": ROOT / "celeryconfig.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target in known and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_layers_never_cross() -> None:
    crossings = []
    for module, targets in _graph().items():
        for target in targets:
            src, dst = _layer(module), _layer(target)
            if src == "tasks" and dst in ("workers", "producers", "gateway"):
                crossings.append(f"{module} -> {target}")
            elif src == "gateway" and dst == "workers":
                crossings.append(f"{module} -> {target}")
            elif src == "workers" and dst == "gateway":
                crossings.append(f"{module} -> {target}")
            elif src == "producers" and dst == "gateway":
                if not (module in CLI_MODULES and target in CLI_DISPATCH):
                    crossings.append(f"{module} -> {target}")
            elif src == "workers" and dst == "producers":
                crossings.append(f"{module} -> {target}")
            elif src == "producers" and dst == "workers":
                if not (module in CLI_MODULES and target in CLI_DISPATCH):
                    crossings.append(f"{module} -> {target}")
    assert not crossings, "layers cross:\n" + "\n".join(sorted(crossings))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_a_cycle_through_type_checking_or_a_function_counts(tmp_path: Path) -> None:
    # Given a imports b only for type checkers, c imports a inside a function, b imports c
    (tmp_path / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\n"
    )
    (tmp_path / "b.py").write_text("import c\n")
    (tmp_path / "c.py").write_text("def f():\n    import a\n")
    known = {"a", "b", "c"}
    graph = {name: _imports(name, tmp_path / f"{name}.py", known) for name in known}
    # Then the three make one cycle
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_checks_can_fail() -> None:
    # Given a graph with a cycle and a crossing, the helpers see both.
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _layer("workers.cache") == "workers"
