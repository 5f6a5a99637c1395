"""No import circle anywhere in the repository's packages (issue 25).

Every ``.py`` file of the packages that ``pyproject.toml`` installs is parsed with ``ast``; every
``import`` and ``from ... import`` counts, at module level or inside a function, a class or an
``if`` (relative imports resolved against the file's package), as does
``importlib.import_module("a.b")`` with a literal name. An edge goes from the importing module to
the in-repository module it names: ``from pkg import name`` names ``pkg.name`` when that is a
module, else ``pkg`` itself. Parent packages that Python runs on the way (``import a.b`` runs
``a/__init__.py``) are not edges of their own: a package's ``__init__`` that imports its own
submodules would otherwise close a loop with each of them.

A circle is a strongly connected group of two or more modules (or a module importing itself);
the test lists each group with one cycle through every member and the file:line of each import
inside the group.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from shared.configs import REPO_ROOT as REPO

# Circles tolerated while someone removes them, each by its member modules and a reason (none
# since issue 25 removed the crater and S5Mars circles); an entry whose circle is gone fails the
# test, so that it is removed with the circle.
ALLOWED: dict[frozenset[str], str] = {}


def packages(root: Path) -> list[str]:
    """The top-level packages ``pyproject.toml`` installs (``include = ["shared*", ...]``)."""
    with open(root / "pyproject.toml", "rb") as fh:
        include = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.rstrip("*").rstrip(".") for p in include})


def module_files(root: Path, tops: list[str]) -> dict[str, tuple[Path, bool]]:
    """``{module name: (file, is_package)}`` for every ``.py`` file under the packages."""
    found = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_pkg)
    return found


def _resolve(name: str, modules) -> str | None:
    """The longest prefix of a dotted name that is an in-repository module."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, is_pkg: bool, modules) -> list[tuple[str, int]]:
    """``[(imported in-repository module, line)]`` for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if is_pkg else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []

    def add(name: str | None, line: int) -> None:
        target = _resolve(name, modules) if name else None
        if target is not None:
            out.append((target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                sub = f"{stem}.{alias.name}"
                add(sub if sub in modules else stem, node.lineno)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in ("import_module", "__import__")))):
            add(node.args[0].value, node.lineno)
    return out


def import_graph(root: Path, tops: list[str] | None = None
                 ) -> dict[str, dict[str, list[tuple[Path, int]]]]:
    """``{module: {imported module: [(file, line), ...]}}`` over the in-repository modules."""
    modules = module_files(root, tops if tops is not None else packages(root))
    graph: dict[str, dict[str, list[tuple[Path, int]]]] = {m: defaultdict(list) for m in modules}
    for module, (path, is_pkg) in modules.items():
        for target, line in imports_of(module, path, is_pkg, modules):
            graph[module][target].append((path, line))
    return graph


def strongly_connected(graph) -> list[list[str]]:
    """Tarjan's groups of two or more modules, or of one module that imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:  # iterative, so a deep package cannot hit the recursion cap
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in graph[node]:
                        groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def cycle_through(graph, group: list[str], start: str) -> list[str]:
    """A shortest import path from ``start`` back to itself inside the group."""
    members = set(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    return [start]


def describe(graph, group: list[str], root: Path) -> str:
    cycles, seen = [], set()
    for member in group:
        cycle = cycle_through(graph, group, member)
        key = frozenset(zip(cycle, cycle[1:]))  # one cycle, whichever member it starts at
        if key not in seen:
            seen.add(key)
            cycles.append(" -> ".join(cycle))
    lines = [f"circle of {len(group)} modules: {', '.join(group)}"]
    lines += [f"  cycle: {c}" for c in cycles]
    for module in group:
        for target in sorted(graph[module]):
            if target in group:
                where = ", ".join(f"{p.relative_to(root)}:{n}"
                                  for p, n in sorted(set(graph[module][target])))
                lines.append(f"  {module} imports {target} ({where})")
    return "\n".join(lines)


def test_no_import_circle():
    graph = import_graph(REPO)
    assert len(graph) > 150  # every package was read
    found = strongly_connected(graph)
    bad = [describe(graph, g, REPO) for g in found if frozenset(g) not in ALLOWED]
    assert not bad, "import circles:\n" + "\n".join(bad)
    stale = [why for members, why in ALLOWED.items() if list(sorted(members)) not in found]
    assert not stale, f"allow-list entries whose circle is gone (remove them): {stale}"


@pytest.fixture
def toy(tmp_path) -> Path:
    """A package with a circle through a function-level relative import and one through a
    ``from package import submodule``, beside modules that are fine."""
    files = {
        "pyproject.toml": '[tool.setuptools.packages.find]\ninclude = ["toy*"]\n',
        "toy/__init__.py": "from toy.base import VALUE\n",
        "toy/base.py": "VALUE = 1\n",
        "toy/a.py": "import os\nfrom toy.base import VALUE\n\n"
                    "def f():\n    from .sub import b\n    return b\n",
        "toy/sub/__init__.py": "",
        "toy/sub/b.py": "from ..a import f\n",
        "toy/c.py": "from toy import d\n",
        "toy/d.py": "import importlib\n\n"
                    "def g():\n    return importlib.import_module('toy.c')\n",
        "toy/e.py": "import toy.base\nfrom toy import VALUE\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_scan_finds_circles_inside_functions_and_relative(toy):
    graph = import_graph(toy)
    assert set(graph) == {"toy", "toy.base", "toy.a", "toy.sub", "toy.sub.b", "toy.c", "toy.d",
                          "toy.e"}
    assert set(graph["toy.e"]) == {"toy.base", "toy"}
    groups = strongly_connected(graph)
    assert groups == [["toy.a", "toy.sub.b"], ["toy.c", "toy.d"]]
    text = describe(graph, groups[0], toy)
    assert "toy.a -> toy.sub.b -> toy.a" in text
    assert "toy/a.py:5" in text and "toy/sub/b.py:1" in text


def test_scan_finds_a_self_import_and_a_three_module_circle(tmp_path):
    for rel, text in {"p/__init__.py": "", "p/x.py": "import p.x\n",
                      "p/q.py": "from p import r\n", "p/r.py": "from p.s import T\n",
                      "p/s.py": "T = 1\n\ndef h():\n    import p.q\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path, ["p"])
    groups = strongly_connected(graph)
    assert groups == [["p.q", "p.r", "p.s"], ["p.x"]]
    assert "p.q -> p.r -> p.s -> p.q" in describe(graph, groups[0], tmp_path)
