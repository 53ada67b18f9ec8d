"""The architecture as a test (DESIGN.md "Layout"): one-way imports, no cycles, no Flask below web.

Layers, top to bottom: web → backtest → execution → strategy → market, broker → storage →
config (with the shared words in Webapp/states.py, the bus and the rate limiter beside
it). A module may import its own layer or a lower one, never a higher one and never a
sibling of the same rank (market and broker do not reach into each other). Every import
counts, including those inside functions and under TYPE_CHECKING: a mixin that imports
its host class back is a cycle too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "Webapp"
# The app factory and the process entry points compose every layer.
COMPOSITION = {"Webapp", "Webapp.__main__", "Webapp.services"}
RANK = {
    "web": 6,
    "backtest": 5,
    "execution": 4,
    "strategy": 3,
    "market": 2,
    "broker": 2,
    "storage": 1,
    "config": 0,
    "states": 0,
    "event_bus": 0,
    "ratelimit": 0,
}
FLASK = ("flask", "flask_login", "flask_wtf", "flask_socketio", "flask_limiter", "werkzeug")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from Webapp.x import y` may name a module y: count it when it exists.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, set[str]]:
    """Each Webapp module and the Webapp modules it imports."""
    names = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in names.items():
        graph[name] = {m for m in imports_of(path) if m in names and m != name}
    return graph


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and module not in COMPOSITION else None


def test_every_webapp_module_belongs_to_a_known_layer():
    unknown = sorted(m for m in modules() if m not in COMPOSITION and layer(m) not in RANK)
    assert unknown == [], f"modules outside DESIGN.md's layers: {unknown}"


def test_no_module_imports_a_higher_layer_or_a_sibling_of_the_same_rank():
    wrong = []
    for module, targets in modules().items():
        src = layer(module)
        if src is None or src not in RANK:
            continue
        for target in sorted(targets):
            dst = layer(target)
            if target in COMPOSITION:
                wrong.append(f"{module} → {target} (the app factory)")
            elif dst != src and (RANK[dst] > RANK[src] or RANK[dst] == RANK[src]):
                wrong.append(f"{module} → {target}")
    assert wrong == [], "imports against DESIGN.md's layers:\n" + "\n".join(wrong)


def test_no_import_cycle_inside_webapp():
    graph = modules()
    cycles: list[list[str]] = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif state[nxt] == 0:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node)
    assert cycles == [], "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_nothing_below_web_imports_flask():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        if module in COMPOSITION or layer(module) == "web":
            continue
        flask = sorted(m for m in imports_of(path) if m.split(".")[0] in FLASK)
        if flask:
            offenders.append(f"{module}: {', '.join(flask)}")
    assert offenders == [], "Flask below web/:\n" + "\n".join(offenders)


def test_the_checks_see_a_wrong_import(tmp_path, monkeypatch):
    """The walker itself: an upward import written to a scratch module is found."""
    scratch = PACKAGE / "strategy" / "_layer_probe.py"
    scratch.write_text("from Webapp.execution import engine\nimport flask\n", encoding="utf-8")
    try:
        imported = imports_of(scratch)
        assert "Webapp.execution.engine" in imported and "flask" in imported
        graph = modules()
        assert "Webapp.execution.engine" in graph["Webapp.strategy._layer_probe"]
    finally:
        scratch.unlink()
