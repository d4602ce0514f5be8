"""The import-layer contract (run by `make lint` and `make test`): the package's import graph is one-way.

Every module belongs to one layer below; a module imports only from its own layer or the layers under
it, and the graph has no cycle. A new module must be placed in a layer here. (import-linter cannot see
privaudit.attacks and privaudit.canaries: they live in top-level folders mapped into the namespace.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"privaudit": "privaudit", "attacks": "privaudit.attacks", "canaries": "privaudit.canaries"}

# Top to bottom.
LAYERS: list[tuple[str, set[str]]] = [
    ("interface", {"__main__", "cli", "console"}),
    ("CI audit: several audits from one config", {"audit"}),
    ("facade", {"api", "bench"}),
    ("sweep: train and audit at several epsilons", {"sweep"}),
    ("policy: the gate for every audit kind", {"gate"}),
    ("audit pipelines", {"mia", "canaries.audit"}),
    (
        "attacks and canaries",
        {
            "attacks",
            "attacks.base",
            "attacks.label_only",
            "attacks.lira",
            "attacks.loss",
            "attacks.modiva",
            "attacks.rmia",
            "attacks.shokri",
            "attacks.vocabulary",
            "canaries",
            "canaries.calibration",
            "canaries.exposure",
            "canaries.generate",
            "canaries.templates",
            "shadows",
        },
    ),
    ("training and model files", {"targets", "training", "bundle", "manifest", "usermodel"}),
    ("DP-SGD audit instruments, run inside training", {"canaries.gradient", "canaries.onerun"}),
    (
        "models, DP-SGD, data",
        {
            "classifier",
            "models",
            "tokenization",
            "dpsgd",
            "optim",
            "accounting",
            "recipe",
            "source",
            "demo",
            "data",
            "queries",
            "devices",
            "config",
        },
    ),
    ("reports: one module per format", {"reports"}),
    ("report pieces", {"reports.html", "reports.markdown", "reports.junit", "reports.jsondoc"}),
    ("report figures and tables", {"reports.svg", "reports.tables"}),
    ("results", {"headline", "results", "metrics"}),
    ("foundation", {"__init__", "allocator", "errors", "fileio", "options", "versions"}),
]


def module_name(path: Path) -> str:
    folder, *inner = path.relative_to(ROOT).with_suffix("").parts
    parts = [FOLDERS[folder], *inner]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(node: ast.AST):
    """Every node that runs: `if TYPE_CHECKING:` blocks (annotations only) are left out."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
            continue
        yield child
        yield from _runtime_nodes(child)


def imports_of(path: Path) -> set[str]:
    """privaudit modules imported anywhere in the file at run time (function-level imports included)."""
    name = module_name(path)
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]  # what `from .x` is relative to
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from . import api` names a module
    return {m for m in found if m == "privaudit" or m.startswith("privaudit.")}


def graph() -> dict[str, set[str]]:
    files = [p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    # A module's own parent packages are not its imports: Python initialises them before it anyway.
    return {
        name: {m for m in imports_of(path) if m in modules and m != name and not name.startswith(m + ".")}
        for name, path in modules.items()
    }


def layer_of(module: str) -> int:
    short = "__init__" if module == "privaudit" else module.removeprefix("privaudit.")
    for index, (_, members) in enumerate(LAYERS):
        if short in members:
            return index
    raise AssertionError(f"{module} is in no layer: place it in tests/test_import_layers.py LAYERS")


def test_every_import_points_down_or_sideways():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in graph().items()
        for target in targets
        if layer_of(target) < layer_of(module)
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            assert state.get(target) != 1, " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
