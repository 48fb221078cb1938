"""The structure check of issue 19, read from the source tree (nothing is imported):

1. no import circle in ``joyvasa_core``, every import counted (module level, in functions,
   under ``if TYPE_CHECKING:``, in ``try``) — how packages' ``__init__`` count is in
   ``helpers_structure``'s docstring;
2. nothing under ``joyvasa_core/batch``, ``joyvasa_core/serve`` or ``joyvasa_core/live.py``
   imports ``joyvasa_core.cli``;
3. ``README.md`` is at most 15,000 characters, every ``docs/`` file it links exists, and
   every ``.md`` page a ``docs/*.md`` page links exists.

The graph builder, the circle finder and the link reader are tested on small hand-made
inputs below, so a passing check means something.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

import helpers_structure as hs

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "joyvasa_core"
README_LIMIT = 15_000

# The modules that must not import the CLI (issue 19: the batch command, the live server and
# live mode share the option parser and error line through a module that is not cli.py).
NO_CLI_PACKAGES = ("joyvasa_core.batch", "joyvasa_core.serve")
NO_CLI_MODULES = ("joyvasa_core.live",)


@pytest.fixture(scope="module")
def graph():
    return hs.import_graph(CORE)


# --- 1. no import circle ---------------------------------------------------------------------

def test_no_import_circle_in_joyvasa_core(graph):
    cycles = hs.find_cycles({m: list(t) for m, t in graph.items()})
    assert not cycles, (
        f"{len(cycles)} import circle(s) in joyvasa_core (every import counted: in functions, "
        "under TYPE_CHECKING, in try):\n" + hs.describe_cycles(cycles, graph, prefix="joyvasa_core."))


# --- 2. batch, serve and live do not import the CLI ------------------------------------------

def test_batch_serve_live_do_not_import_cli(graph):
    sources = [m for m in graph if m in NO_CLI_MODULES
               or any(m == p or m.startswith(p + ".") for p in NO_CLI_PACKAGES)]
    assert "joyvasa_core.batch.run" in sources and "joyvasa_core.serve" in sources   # found them
    importers = hs.importers_of(graph, "joyvasa_core.cli", sources)
    assert not importers, "modules that must not import joyvasa_core.cli do:\n" + "\n".join(
        f"  {m}: {', '.join(where)}" for m, where in sorted(importers.items()))


# --- 3. README front page and docs links -----------------------------------------------------

def test_readme_is_at_most_15000_characters():
    n = len((REPO / "README.md").read_text(encoding="utf-8"))
    assert n <= README_LIMIT, (
        f"README.md is {n:,} characters; the front page may have at most {README_LIMIT:,} "
        "(move the rest to docs/*.md pages linked from it)")


def test_readme_docs_links_exist():
    readme = REPO / "README.md"
    broken = hs.broken_links(readme, hs.markdown_links(readme.read_text(encoding="utf-8")), REPO,
                             keep=lambda rel: rel.startswith("docs/"))
    assert not broken, "README.md links docs/ files that do not exist:\n  " + "\n  ".join(broken)


def test_docs_pages_md_links_exist():
    broken = []
    for page in sorted((REPO / "docs").glob("*.md")):
        broken += hs.broken_links(page, hs.markdown_links(page.read_text(encoding="utf-8")), REPO,
                                  keep=lambda rel: rel.endswith(".md"))
    assert not broken, "docs pages link .md files that do not exist:\n  " + "\n  ".join(broken)


# --- the circle finder on hand-made graphs ---------------------------------------------------

def test_find_cycles_finds_a_two_module_circle():
    graph = {"a": ["b"], "b": ["a", "c"], "c": []}
    assert hs.find_cycles(graph) == [["a", "b", "a"]]
    assert hs.describe_cycles(hs.find_cycles(graph)) == "  a -> b -> a"


def test_find_cycles_passes_a_dag():
    graph = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "e": ["a"]}
    assert hs.find_cycles(graph) == []
    assert all(len(c) == 1 for c in hs.strongly_connected_components(graph))


def test_find_cycles_covers_every_member_of_a_larger_component():
    # a -> b -> c -> a plus d <-> b: one component {a, b, c, d}; x -> x is a self-loop
    graph = {"a": ["b"], "b": ["c", "d"], "c": ["a"], "d": ["b"], "x": ["x"], "y": ["a"]}
    assert hs.strongly_connected_components(graph) == [["a", "b", "c", "d"], ["x"], ["y"]]
    cycles = hs.find_cycles(graph)
    assert cycles == [["a", "b", "c", "a"], ["d", "b", "d"], ["x", "x"]]
    assert "d -> b -> d" in hs.describe_cycles(cycles)


def test_find_cycles_deep_chain_without_recursion():
    n = 5000
    graph = {f"m{i}": [f"m{i + 1}"] for i in range(n)}
    assert hs.find_cycles(graph) == []
    graph[f"m{n}"] = ["m0"]
    [cycle] = hs.find_cycles(graph)
    assert len(cycle) == n + 2 and cycle[0] == cycle[-1]


# --- the import resolver on a tiny package ---------------------------------------------------

def write_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> source) under ``root``; return ``root / "pkg"``."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root / "pkg"


TINY = {
    "pkg/__init__.py": "from .sub import helper\nVERSION = 1\n",
    "pkg/a.py": """
        from typing import TYPE_CHECKING
        import os
        if TYPE_CHECKING:
            from .b import Thing
        def late():
            from . import c
            return c
        """,
    "pkg/b.py": """
        try:
            from .sub.deep import x
        except ImportError:
            import pkg.d as d
        """,
    "pkg/c.py": "VALUE = 1\n",
    "pkg/d.py": "class Method:\n    def m(self):\n        from pkg import cli\n        return cli\n",
    "pkg/cli.py": "",
    "pkg/sub/__init__.py": "from .deep import x\nfrom . import shallow\n",
    "pkg/sub/deep.py": "from .. import cli\nfrom ..a import late\n",
    "pkg/sub/shallow.py": "from .deep import x\n",
    "pkg/sub/__main__.py": "from . import helper\nfrom ..cli import run\n",
}


def test_import_graph_counts_imports_in_functions_type_checking_and_try(tmp_path):
    graph = hs.import_graph(write_package(tmp_path, TINY))
    edges = {m: sorted(t) for m, t in graph.items()}
    assert edges == {
        "pkg": ["pkg.sub"],                          # from .sub import helper: not a submodule
        "pkg.a": ["pkg.b", "pkg.c"],                 # TYPE_CHECKING and in a function
        "pkg.b": ["pkg.d", "pkg.sub.deep"],          # both branches of try/except
        "pkg.c": [],
        "pkg.cli": [],
        "pkg.d": ["pkg.cli"],                        # from pkg import cli: the submodule, in a method
        "pkg.sub": ["pkg.sub.deep", "pkg.sub.shallow"],
        "pkg.sub.deep": ["pkg.a", "pkg.cli"],        # from .. import cli -> the module pkg.cli
        "pkg.sub.shallow": ["pkg.sub.deep"],         # a sibling, not the package __init__
        "pkg.sub.__main__": ["pkg.cli", "pkg.sub"],  # outgoing edges of __main__ count
    }
    assert graph["pkg.a"]["pkg.b"] == ["pkg/a.py:5"]
    assert graph["pkg.a"]["pkg.c"] == ["pkg/a.py:7"]

    # pkg.sub's __init__ imports its submodules and they import each other: no circle
    # through pkg.sub; the real circle a -> b -> sub.deep -> a is found.
    cycles = hs.find_cycles({m: list(t) for m, t in graph.items()})
    assert cycles == [["pkg.a", "pkg.b", "pkg.sub.deep", "pkg.a"]]
    message = hs.describe_cycles(cycles, graph, prefix="pkg.")
    assert "a -> b -> sub.deep -> a" in message and "pkg/sub/deep.py:2" in message

    assert hs.importers_of(graph, "pkg.cli", ["pkg.sub.deep", "pkg.sub.shallow", "pkg.sub.__main__"]) == {
        "pkg.sub.deep": ["pkg/sub/deep.py:1"], "pkg.sub.__main__": ["pkg/sub/__main__.py:2"]}


def test_submodule_importing_its_package_init_is_an_edge_to_init(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/edits/__init__.py": "from .track import Edits\nNAMES = ()\n",
        "pkg/edits/track.py": "def f():\n    from . import NAMES\n",
    }
    graph = hs.import_graph(write_package(tmp_path, files))
    assert dict(graph["pkg.edits.track"]) == {"pkg.edits": ["pkg/edits/track.py:2"]}
    assert hs.find_cycles({m: list(t) for m, t in graph.items()}) == [
        ["pkg.edits", "pkg.edits.track", "pkg.edits"]]


def test_main_modules_are_never_targets(tmp_path):
    files = {"pkg/__init__.py": "", "pkg/__main__.py": "from . import a\n",
             "pkg/a.py": "from . import __main__\nimport pkg.__main__\n"}
    graph = hs.import_graph(write_package(tmp_path, files))
    assert dict(graph["pkg.a"]) == {}
    assert list(graph["pkg.__main__"]) == ["pkg.a"]


def test_import_targets_resolution_forms():
    modules = {"r", "r.cli", "r.x", "r.x.y", "r.x.y.z"}
    def targets(source, module="r.x.y.z", is_package=False):
        return sorted(t for t, _ in hs.import_targets(ast.parse(source), module, is_package, modules))
    assert targets("from ... import cli") == ["r.cli"]
    assert targets("from ...cli import main") == ["r.cli"]
    assert targets("import r.cli.sub") == ["r.cli"]               # longest existing prefix
    assert targets("import json\nfrom os import path") == []      # outside the tree
    assert targets("from . import z") == []                        # itself
    assert targets("from .. import y") == ["r.x.y"]                # __init__ of a package
    assert targets("from . import z, other", module="r.x.y", is_package=True) == ["r.x.y.z"]
    assert targets("from . import *", module="r.x.y.z") == ["r.x.y"]
    with pytest.raises(ValueError):
        targets("from ..... import cli")


# --- the link reader --------------------------------------------------------------------------

def test_markdown_links_and_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "cli.md").write_text(
        "[back](../README.md) [live](live.md#wire) [x](https://e.org/a.md)\n")
    (tmp_path / "docs" / "pic.png").write_bytes(b"")
    text = textwrap.dedent("""\
        See [the CLI](docs/cli.md#flags), ![pic](docs/pic.png "Title") and [gone](docs/gone.md).
        [ref]: docs/missing.md
        [web](https://example.org/docs/x.md) [anchor](#install) [other](LICENSE)
        `[code](docs/in_code.md)`
        ```
        [fenced](docs/in_fence.md)
        ```
        """)
    links = hs.markdown_links(text)
    assert sorted(links) == sorted(["docs/cli.md#flags", "docs/pic.png", "docs/gone.md", "docs/missing.md",
                                    "https://example.org/docs/x.md", "#install", "LICENSE"])
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert hs.broken_links(readme, links, tmp_path, keep=lambda rel: rel.startswith("docs/")) == [
        "docs/gone.md (README.md)", "docs/missing.md (README.md)"]
    page = tmp_path / "docs" / "cli.md"
    assert hs.broken_links(page, hs.markdown_links(page.read_text()), tmp_path,
                           keep=lambda rel: rel.endswith(".md")) == ["live.md#wire (docs/cli.md)"]
