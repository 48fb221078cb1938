"""Static structure of ``joyvasa_core``: its import graph, circles in it, and links in the docs.

Everything here reads files; nothing is imported or executed, so the checks see imports
that never run at import time too (inside functions, under ``if TYPE_CHECKING:``, inside
``try``/``except``).

How imports become edges (module names are dotted, e.g. ``joyvasa_core.edits.track``):

- Every ``ast.Import`` / ``ast.ImportFrom`` node anywhere in a file's AST counts.
- Relative imports are resolved against the importing module's package (a package's
  ``__init__.py`` is its own package; ``pkg/__main__.py`` belongs to ``pkg``).
- ``import a.b.c`` targets ``a.b.c``; ``from a.b import name`` targets ``a.b.name`` when
  ``a/b/name.py`` or ``a/b/name/__init__.py`` exists, else ``a.b`` itself. A target that is
  not a module of the tree falls back to its longest prefix that is.
- **Packages.** Python also runs ``a/__init__.py`` (and ``a/b/__init__.py``) when it imports
  ``a.b.c``; those implicit parent imports are *not* edges, only the precise target is. So a
  package ``__init__`` that imports its submodules, and a submodule that imports a sibling,
  is not a circle. A module that imports its package's ``__init__`` itself (``from . import
  Name`` where ``Name`` is defined in ``__init__.py``, ``from .. import edits``, ``from
  .edits import Edits``) has an edge to that package module (``joyvasa_core.edits``), and a
  circle through it is reported.
- ``__main__`` modules are never targets (nothing imports them; ``python -m`` runs them as
  ``__main__``), but their own imports are edges.
- Only edges between modules of the tree count; a module importing itself is dropped.
"""
from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

Graph = Mapping[str, Iterable[str]]


# --- modules and imports --------------------------------------------------------------------

def module_name(path: Path, root: Path) -> str:
    """Dotted module name of ``path`` (a .py file under the package directory ``root``).

    ``root/__init__.py`` -> ``root.name``; ``root/a/__init__.py`` -> ``root.a``;
    ``root/a/b.py`` -> ``root.a.b``; ``root/a/__main__.py`` -> ``root.a.__main__``.
    """
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str, is_package: bool) -> str:
    """The package that relative imports in ``module`` are resolved against."""
    return module if is_package else module.rpartition(".")[0]


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the package ``root`` (a directory with ``__init__.py``) -> its file."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def resolve_relative(package: str, level: int, module: str | None) -> str:
    """The absolute base of ``from <level dots><module> import ...`` inside ``package``.

    >>> resolve_relative("joyvasa_core.batch", 2, None)
    'joyvasa_core'
    >>> resolve_relative("joyvasa_core.batch", 1, "jobs")
    'joyvasa_core.batch.jobs'
    """
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        raise ValueError(f"relative import beyond the top package: level {level} in {package}")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def existing_module(name: str, modules: Iterable[str]) -> str | None:
    """``name`` if it is one of ``modules``, else its longest dotted prefix that is; or None."""
    known = set(modules)
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def import_targets(tree: ast.AST, module: str, is_package: bool,
                   modules: Iterable[str]) -> list[tuple[str, int]]:
    """Every module of ``modules`` that some import in ``tree`` names: (target, line).

    Walks the whole AST (``ast.walk``), so imports in functions, in ``if TYPE_CHECKING:``
    and in ``try`` blocks count. Targets outside ``modules`` and ``__main__`` modules are
    left out; so is ``module`` itself. A statement naming one target several times (``from
    .run import a, b``) gives it once.
    """
    known = set(modules)
    package = package_of(module, is_package)
    found: list[tuple[str, int]] = []

    def add(name: str, line: int) -> None:
        target = existing_module(name, known)
        if target is None or target == module or target.rpartition(".")[2] == "__main__":
            return
        if (target, line) not in found:      # one entry per statement, not per name
            found.append((target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_relative(package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if alias.name != "*" and sub in known else base, node.lineno)
    return found


def import_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """The import graph of the package ``root``: module -> {target module -> ["file:line", ...]}.

    Every module of the tree is a key (also those that import nothing); the locations say
    where each edge comes from, for failure messages.
    """
    files = module_files(root)
    graph: dict[str, dict[str, list[str]]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, list[str]] = {}
        where = path.relative_to(root.parent).as_posix()
        for target, line in import_targets(tree, module, path.name == "__init__.py", files):
            edges.setdefault(target, []).append(f"{where}:{line}")
        graph[module] = edges
    return graph


# --- circles ----------------------------------------------------------------------------------

def strongly_connected_components(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit). Components come out sorted, each
    one's members sorted; nodes that only appear as targets count as nodes too."""
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    succ = {n: sorted(set(graph.get(n, ()))) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(succ[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(succ[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle_through(graph: Graph, node: str, within: Iterable[str]) -> list[str] | None:
    """The shortest path ``node -> ... -> node`` that stays inside ``within`` (BFS), or None."""
    allowed = set(within)
    parent: dict[str, str] = {}
    queue = deque([node])
    seen = {node}
    while queue:
        current = queue.popleft()
        for child in sorted(set(graph.get(current, ()))):
            if child not in allowed:
                continue
            if child == node:
                path = [current]
                while path[-1] != node:
                    path.append(parent[path[-1]])
                return [*reversed(path), node]
            if child not in seen:
                seen.add(child)
                parent[child] = current
                queue.append(child)
    return None


def find_cycles(graph: Graph) -> list[list[str]]:
    """Circles in ``graph`` as closed paths ``[a, b, a]``: for every strongly connected
    component with more than one member (or a self-loop), shortest circles through its
    members until each member is on one. An acyclic graph gives ``[]``."""
    cycles: list[list[str]] = []
    for component in strongly_connected_components(graph):
        if len(component) == 1 and component[0] not in set(graph.get(component[0], ())):
            continue
        covered: set[str] = set()
        for member in component:
            if member in covered:
                continue
            cycle = shortest_cycle_through(graph, member, component)
            assert cycle is not None, (member, component)   # every member of an SCC is on a circle
            cycles.append(cycle)
            covered.update(cycle)
    return cycles


def describe_cycles(cycles: list[list[str]], graph: Mapping[str, Mapping[str, list[str]]] | None = None,
                    prefix: str = "") -> str:
    """One line per circle, ``a -> b -> a``, and under it where each edge is (when ``graph``
    carries locations, as ``import_graph`` gives). ``prefix`` is stripped from names."""
    def short(name: str) -> str:
        return name[len(prefix):] if prefix and name.startswith(prefix) else name

    lines = []
    for cycle in cycles:
        lines.append("  " + " -> ".join(short(n) for n in cycle))
        if graph is not None:
            for a, b in zip(cycle, cycle[1:]):
                where = ", ".join(graph.get(a, {}).get(b, []))
                lines.append(f"      {short(a)} -> {short(b)}: {where}")
    return "\n".join(lines)


# --- imports of one module ------------------------------------------------------------------

def importers_of(graph: Mapping[str, Mapping[str, list[str]]], target: str,
                 sources: Iterable[str]) -> dict[str, list[str]]:
    """Modules of ``sources`` with an edge to ``target`` or to a submodule of it -> locations."""
    found: dict[str, list[str]] = {}
    for source in sources:
        for dest, where in graph.get(source, {}).items():
            if dest == target or dest.startswith(target + "."):
                found.setdefault(source, []).extend(where)
    return found


# --- markdown links ---------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")


def markdown_links(text: str) -> list[str]:
    """Targets of inline links/images ``[x](t)``, ``![x](t "title")`` and reference
    definitions ``[x]: t`` in ``text``, outside fenced code blocks and inline code."""
    text = _FENCE.sub("", text)
    text = _INLINE_CODE.sub("", text)
    return _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)


def relative_link_path(link: str) -> str | None:
    """The file part of a relative link (anchor and query dropped), or None for external
    links (``https:``, ``mailto:``, ``//host``) and same-page anchors (``#x``)."""
    if _EXTERNAL.match(link):
        return None
    path = re.split(r"[#?]", link, maxsplit=1)[0]
    return path or None


def broken_links(page: Path, links: Iterable[str], repo: Path, keep=lambda rel: True) -> list[str]:
    """Relative links of ``page`` whose file does not exist (resolved from the page's folder),
    among those whose repository-relative path passes ``keep``; as ``"link (page)"``."""
    broken = []
    for link in links:
        path = relative_link_path(link)
        if path is None:
            continue
        resolved = (page.parent / path).resolve()
        try:
            rel = resolved.relative_to(repo.resolve()).as_posix()
        except ValueError:
            rel = path        # outside the repository: can't exist as a page of it
        if keep(rel) and not resolved.exists():
            broken.append(f"{link} ({page.relative_to(repo).as_posix()})")
    return broken
