"""No import cycle between chaoslab's modules (module-level imports; TYPE_CHECKING-only imports
and imports inside functions are not cycles at import time and are left out)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "chaoslab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []:
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("chaoslab"):
                out.add(sub.module)
                out |= {f"{sub.module}.{a.name}" for a in sub.names if f"{sub.module}.{a.name}" in modules}
            elif isinstance(sub, ast.Import):
                out |= {a.name for a in sub.names if a.name.startswith("chaoslab")}
    return {m for m in out if m in modules}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: top_level_imports(p, set(files)) - {m} for m, p in files.items()}
    assert "chaoslab.spec.base" in graph["chaoslab.steps.pulsar"]  # the graph is real
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
