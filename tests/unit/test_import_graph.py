"""chaoslab's import graph: no cycle between its modules (module-level imports; TYPE_CHECKING-only
imports and imports inside functions are not cycles at import time and are left out), and
dependencies that point down the layers (every import, inside functions too; TYPE_CHECKING-only
imports are left out)."""

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


# -- dependencies point down ------------------------------------------------------------------------
# chaoslab's layers, bottom to top. A module may import its own package (same prefix) and any
# layer below its own; never a layer above, and never another package of its own layer (probes
# and steps, say, share what they both need from below instead). The longest matching prefix
# places a module; "chaoslab" alone is the package's __init__.
LAYERS: list[tuple[str, ...]] = [
    ("chaoslab",),                             # the package itself
    ("chaoslab.errors",),
    ("chaoslab.settings",),
    ("chaoslab.http", "chaoslab.wait", "chaoslab.record", "chaoslab.rates", "chaoslab.procedures", "chaoslab.text"),
    ("chaoslab.lab",),                         # the engine and compose driver
    ("chaoslab.observe", "chaoslab.pulsar_lookup"),
    ("chaoslab.spec",),                        # the vocabulary's base and the experiment schema
    ("chaoslab.workload",),                    # the vocabulary, in three tiers
    ("chaoslab.probes", "chaoslab.steps"),
    ("chaoslab.checks", "chaoslab.monitor", "chaoslab.stories"),
    ("chaoslab.run",),
    ("chaoslab.report", "chaoslab.reference"),
    ("chaoslab.ci",),                          # JUnit, --json, GitHub step summary: above the report
    ("chaoslab.gate", "chaoslab.bundle", "chaoslab.progress", "chaoslab.plan", "chaoslab.doctor", "chaoslab.live"),
    ("chaoslab.cli",),
]

# (importer, imported) edges that point up and stay for now, each with its reason. Keep it short.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
}


def place(module: str) -> tuple[int, str]:
    """(layer index, the prefix that placed it); KeyError for a module no layer names."""
    best = None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or (prefix != "chaoslab" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    if best is None:
        raise KeyError(module)
    return best


def all_imports(source: str, modules: set[str]) -> set[str]:
    """Every chaoslab module `source` imports, at module level or inside functions and classes;
    only what an `if TYPE_CHECKING:` block imports is left out (never imported at run time)."""
    tree = ast.parse(source)
    skip = {id(sub) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
            for stmt in node.body for sub in ast.walk(stmt)}
    out = set()
    for sub in ast.walk(tree):
        if id(sub) in skip:
            continue
        if isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module and sub.module.startswith("chaoslab"):
            for a in sub.names:   # `from chaoslab.report import blocks` imports the module report.blocks
                full = f"{sub.module}.{a.name}"
                out.add(full if full in modules else sub.module)
        elif isinstance(sub, ast.Import):
            out |= {a.name for a in sub.names if a.name.startswith("chaoslab")}
    return {m for m in out if m in modules}


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges that import a higher layer, or another package of the same layer."""
    bad = []
    for src, targets in sorted(graph.items()):
        (i, own) = place(src)
        for dst in sorted(targets):
            (j, theirs) = place(dst)
            if j > i or (j == i and theirs != own):
                bad.append((src, dst))
    return bad


def test_the_layer_checker_finds_an_upward_edge():
    graph = {"chaoslab.lab.cluster": {"chaoslab.errors", "chaoslab.run.runner"},   # lab -> run: up
             "chaoslab.steps.pulsar": {"chaoslab.probes.pulsar", "chaoslab.spec.base"},   # a sibling
             "chaoslab.checks.loss": {"chaoslab.workload.history", "chaoslab.checks.client"},   # down, own
             "chaoslab.cli": {"chaoslab.gate"}}
    assert upward_edges(graph) == [("chaoslab.lab.cluster", "chaoslab.run.runner"),
                                   ("chaoslab.steps.pulsar", "chaoslab.probes.pulsar")]
    assert place("chaoslab") == (0, "chaoslab") and place("chaoslab.lab.status") == (4, "chaoslab.lab")
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from chaoslab.run import runner\n"
              "def f():\n    from chaoslab.report import blocks\n")
    modules = {"chaoslab.run", "chaoslab.run.runner", "chaoslab.report", "chaoslab.report.blocks"}
    assert all_imports(source, modules) == {"chaoslab.report.blocks"}   # in a function counts; TYPE_CHECKING not


def test_dependencies_point_down():
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    unplaced = []
    for m in files:
        try:
            place(m)
        except KeyError:
            unplaced.append(m)
    assert not unplaced, f"modules no layer names (add them to LAYERS): {sorted(unplaced)}"
    graph = {m: all_imports(p.read_text(), set(files)) - {m} for m, p in files.items()}
    assert "chaoslab.lab.status" in graph["chaoslab.steps.rabbitmq"]   # the graph is real
    bad = [e for e in upward_edges(graph) if e not in ALLOWED_UPWARD]
    assert not bad, "imports that point up: " + "; ".join(f"{a} -> {b}" for a, b in bad)
    stale = [e for e in ALLOWED_UPWARD if e not in upward_edges(graph)]
    assert not stale, f"allowed upward edges that are gone (delete them from ALLOWED_UPWARD): {stale}"
