"""The layering rules, checked on the source (ast, nothing imported) and on fresh processes:

* ``core`` never imports Qt (PySide6), pyqtgraph or ``app``: it is the model layer the
  command line, the GUI and the tests share;
* no two modules import each other, directly or round a loop, at module level; an import
  inside a function breaks a loop at run time, so those are allowed but reported (as
  warnings), being loops all the same for a reader;
* the command line starts without torch, numpy or Qt, so ``diesight --help`` and
  ``diesight runs`` answer at once.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "app")
GUI_LIBRARIES = ("PySide6", "pyqtgraph", "shiboken6")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (a module of ours, or the top name of a library)
    line: int
    lazy: bool  # inside a function: runs only when the function does


def _module_names() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _module_names()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> list[Import]:
    """Every import in ``module`` (TYPE_CHECKING blocks left out: they never run)."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def resolve(name: str | None, level: int) -> str:
        if not level:
            return name or ""
        base = module.split(".")
        base = base[:len(base) - level + (1 if is_package else 0)]
        return ".".join(base + ([name] if name else []))

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, lazy)
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, _ours(alias.name), child.lineno, lazy))
            elif isinstance(child, ast.ImportFrom):
                base = resolve(child.module, child.level)
                for alias in child.names:
                    # `from core import cli` imports the module core.cli
                    submodule = f"{base}.{alias.name}"
                    target = submodule if submodule in MODULES else _ours(base)
                    found.append(Import(module, target, child.lineno, lazy))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return found


def _ours(name: str) -> str:
    """The module of ours that ``import name`` runs, else the library's top-level name."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return parts[0]


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def test_core_never_imports_qt_pyqtgraph_or_app():
    bad = [f"{imp.importer} (line {imp.line}) imports {imp.target}" for imp in IMPORTS
           if imp.importer.split(".")[0] == "core"
           and (imp.target.split(".")[0] == "app" or imp.target in GUI_LIBRARIES)]
    assert not bad, "core must stay free of the GUI:\n" + "\n".join(bad)


def _cycles(lazy: bool) -> list[list[str]]:
    """Loops among our modules (Tarjan's strongly connected components of size > 1, and
    modules importing themselves)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target != imp.importer and (lazy or not imp.lazy):
            graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _describe(component: list[str]) -> str:
    members = set(component)
    edges = sorted(f"  {imp.importer} -> {imp.target} (line {imp.line}"
                   f"{', in a function' if imp.lazy else ''})"
                   for imp in set(IMPORTS) if imp.importer in members and imp.target in members
                   and imp.importer != imp.target)
    return " <-> ".join(component) + ":\n" + "\n".join(edges)


def test_no_import_cycles_at_module_level():
    cycles = _cycles(lazy=False)
    assert not cycles, "modules that import each other:\n" + "\n".join(map(_describe, cycles))


def test_no_import_cycles_through_function_level_imports():
    """A function-level import runs after both modules are loaded, but a loop closed by one
    still means two modules each need the other: move the shared piece down a layer."""
    cycles = _cycles(lazy=True)
    assert not cycles, "modules that need each other:\n" + "\n".join(map(_describe, cycles))


def test_the_walker_sees_imports():
    """The rules above would pass vacuously if the walk missed imports."""
    assert "core.cli" in MODULES and "app.entry" in MODULES
    targets = {(imp.importer, imp.target, imp.lazy) for imp in IMPORTS}
    assert ("app.entry", "core.cli", True) in targets  # lazy: inside main()
    assert ("core.dataset", "numpy", False) in targets
    assert any(imp.importer.startswith("app.") and imp.target == "PySide6" for imp in IMPORTS)


# --- start-up of the front ends, in fresh processes --------------------------------------

HEAVY = ("torch", "numpy", "PySide6", "pyqtgraph", "scipy", "PIL", "tqdm")

PROBE = """\
import sys
{code}
print("LOADED:", *sorted({{m.split(".")[0] for m in sys.modules}} & set(sys.argv[1:])))
"""

RUN_ENTRY = """\
from app.entry import main
try:
    main({argv!r})
except SystemExit:
    pass
"""


def _loaded(code: str, *libraries: str, cwd: Path = ROOT) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("QT_QPA_PLATFORM", None)
    result = subprocess.run([sys.executable, "-c", PROBE.format(code=code), *libraries],
                            capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("LOADED:"), result.stdout
    return set(last.split()[1:])


def test_importing_the_command_line_loads_no_heavy_library():
    assert _loaded("import core.cli", *HEAVY) == set()


@pytest.mark.parametrize("argv", [["--help"], ["runs", "--help"], ["train", "--help"],
                                  ["score", "--help"]], ids=" ".join)
def test_help_loads_no_heavy_library(argv):
    assert _loaded(RUN_ENTRY.format(argv=argv), *HEAVY) == set()


def test_demo_data_help_needs_neither_torch_nor_qt():
    """Its help lists the demo styles, which imports the renderers (numpy, PIL, scipy)."""
    argv = ["demo-data", "--help"]
    assert _loaded(RUN_ENTRY.format(argv=argv), "torch", "PySide6", "pyqtgraph") == set()


def test_listing_runs_needs_neither_torch_nor_qt(tmp_path):
    """`diesight runs DATA` on a folder with a workspace: reads the database, no network."""
    from core.workspace import Workspace

    data = tmp_path / "data"
    data.mkdir()
    Workspace.for_dataset(data)  # an empty workspace: the command reads its runs table
    argv = ["runs", str(data)]
    assert _loaded(RUN_ENTRY.format(argv=argv), "torch", "PySide6", "pyqtgraph") == set()


# --- file length ---------------------------------------------------------------------------

MAX_LINES = 800


def test_no_file_over_800_lines():
    lengths = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8")
                                                       .splitlines())
               for path in MODULES.values()}
    too_long = sorted(f"{p}: {n} lines" for p, n in lengths.items() if n > MAX_LINES)
    assert not too_long, f"over {MAX_LINES} lines: " + ", ".join(too_long)
