"""The layout docs/architecture.md promises, checked on the source: every import, lazy and type-only included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "sojourn"


def _imports() -> dict[str, set[str]]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sojourn"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges[name].add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name.startswith("sojourn"))
    return edges


def test_no_module_imports_one_that_imports_it_back():
    edges = _imports()
    circles = sorted({tuple(sorted((a, b))) for a, targets in edges.items() for b in targets if a != b and a in edges.get(b, ())})
    assert circles == []


def test_services_never_import_the_http_layer_and_tables_never_import_services():
    edges = _imports()
    wrong = sorted((a, b) for a, targets in edges.items() for b in targets
                   if (a.startswith("sojourn.services") and b.startswith("sojourn.api"))
                   or (a.startswith("sojourn.store") and b.startswith(("sojourn.services", "sojourn.api"))))
    assert wrong == []
