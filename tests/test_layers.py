"""The import rules of STYLE rule 6, read from the source (no module is imported).

Layers, lowest first: the bottom (schema, config, results, paths, special tokens); the model
and the objectives; data; training, evaluation and what uses a trained model; the sweep, and
beside it the analysis (neither imports the other); the command line, which brings them
together; the benchmarks on top. A module imports only from its own layer or a lower one
(the sweep and the analysis excepted), at module level or inside a function alike, and no group of modules imports each
other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .helpers import REPO

# The installed names of the repository's folders (pyproject.toml's package-dir).
ROOTS = {
    "dualsweep": "dualsweep",
    "dualsweep.analysis": "analysis",
    "dualsweep.benchmarks": "benchmarks",
}

LAYERS = (
    ("dualsweep", "dualsweep.schema", "dualsweep.paths", "dualsweep.config", "dualsweep.results",
     "dualsweep.special_tokens", "dualsweep.allocation", "dualsweep.schedules"),
    ("dualsweep.model", "dualsweep.objectives"),
    ("dualsweep.data",),
    ("dualsweep.training", "dualsweep.evaluate", "dualsweep.generation", "dualsweep.export"),
    ("dualsweep.sweep", "dualsweep.analysis"),
    ("dualsweep.cli", "dualsweep.__main__"),
    ("dualsweep.benchmarks",),
)  # fmt: skip
SIDE_BY_SIDE = {"dualsweep.sweep", "dualsweep.analysis"}
"""One layer, two groups that do not import each other (the command line joins them)."""


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module's imports of the project's modules (a name imported from a package's
    `__init__` counts as an import of the package)."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    imported.add(target)
        graph[name] = imported
    return graph


def layer_of(module: str) -> tuple[int, str]:
    """The module's layer and the group it belongs to (its longest matching prefix)."""
    matches = [
        (len(prefix), i, prefix)
        for i, group in enumerate(LAYERS)
        for prefix in group
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module}: in no layer of tests/test_layers.py"
    _, layer, prefix = max(matches)
    return layer, prefix


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_relative_lazy_and_package_imports(tmp_path):
    # A negative control on the real tree: known edges of each kind are found.
    graph = import_graph()
    assert "dualsweep.schema" in graph["dualsweep.config.run"]  # absolute, module level
    assert "dualsweep.analysis.data" in graph["dualsweep.analysis.surface"]  # relative
    assert "dualsweep.analysis.plots" in graph["dualsweep.cli.fit"]  # inside a function
    assert "dualsweep.config" in graph["dualsweep.objectives.registry"]  # a package's name
    # And a circle is found when there is one.
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_objective_module_imports_the_data_layer():
    graph = import_graph()
    objectives = [m for m in graph if m.startswith("dualsweep.objectives")]
    assert len(objectives) >= 4
    for module in objectives:
        assert not any(d.startswith("dualsweep.data") for d in graph[module]), module


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_every_import_goes_down_the_layers_or_stays_in_its_package():
    wrong = []
    for module, imported in sorted(import_graph().items()):
        layer, group = layer_of(module)
        for target in sorted(imported):
            target_layer, target_group = layer_of(target)
            beside = target_layer == layer and {group, target_group} == SIDE_BY_SIDE
            if target_group != group and (target_layer > layer or beside):
                wrong.append(f"{module} -> {target}")
    assert wrong == []
