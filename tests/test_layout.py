"""The package's import graph: no circles, and the config on the ground floor.

The graph is read from the source with ``ast`` (every ``import`` statement, at module level or inside a
function, except those under ``if TYPE_CHECKING:``): an edge A → B when module A imports module B of
gradjax (``from pkg import name`` counts as an import of ``pkg.name`` where that is a module).
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gradjax"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _type_checking_lines(tree) -> set:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports_of(name: str) -> set:
    """The gradjax modules ``name`` imports."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "gradjax")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "gradjax":
                continue
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in out if m in MODULES and m != name}


def _cycles():
    graph = {m: imports_of(m) for m in MODULES}
    state, stack, found = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_the_import_graph_is_read():
    # independent check of the reader on lines written in this repository
    assert "gradjax.config" in imports_of("gradjax.nn.stack")
    assert "gradjax.theory.gaussian" in imports_of("gradjax.theory.meanfield")


def test_no_import_cycle():
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_config_imports_only_its_validation_helpers():
    assert imports_of("gradjax.config") <= {"gradjax._validate", "gradjax.names"}
    assert imports_of("gradjax.names") <= {"gradjax._validate"}
    assert imports_of("gradjax._validate") == set()


def test_registries_are_keyed_by_the_names_config_validates_against():
    import gradjax.names
    from gradjax.nn.activations import ACTIVATIONS
    from gradjax.nn.init import INITIALIZERS

    assert tuple(ACTIVATIONS) == gradjax.names.ACTIVATION_NAMES
    assert tuple(INITIALIZERS) == gradjax.names.INIT_NAMES
