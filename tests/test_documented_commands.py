"""Every command the README and docs/ name runs after the install they document.

A venv is built exactly as the front page says for the headless command
(``python3 -m venv``, ``pip install torch``, ``pip install -r
requirements-headless.txt``), plus the one package the benchmarks page adds;
then each documented ``python -m joyvasa_core...`` and ``python
benchmarks/....py`` answers ``--help``, and everything the benchmarks import
(with the test helpers they borrow) imports there. Building the venv needs the
package index, so it runs when ``JOYVASA_DOC_VENV=1`` (``.ci/run`` sets it).
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python3? (-m joyvasa_core[\w.]*|benchmarks/\w+\.py)\b")
CODE_SPAN = re.compile(r"`([^`]+)`")
BENCHMARK_EXTRA = "scikit-image"      # docs/benchmarks.md: "pip install scikit-image"

pytestmark = pytest.mark.skipif(os.environ.get("JOYVASA_DOC_VENV") != "1",
                                reason="builds a venv from the package index: JOYVASA_DOC_VENV=1")


def documented_commands() -> list[str]:
    """``-m module`` or ``benchmarks/script.py`` of every command in a code block or an
    inline code span of the pages."""
    found = set()
    for page in PAGES:
        in_code = False
        for line in page.read_text().splitlines():
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            for code in [line] if in_code else CODE_SPAN.findall(line):
                if match := COMMAND.match(code.strip().removeprefix("$ ")):
                    found.add(match.group(1))
    return sorted(found)


def benchmark_imports() -> set[str]:
    """Third-party top-level modules imported by benchmarks/*.py and the test helpers
    they borrow (followed transitively)."""
    local = {p.stem for d in ("benchmarks", "tests") for p in (ROOT / d).glob("*.py")}
    todo, seen, third = sorted((ROOT / "benchmarks").glob("*.py")), set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 \
                and node.module else []
            for top in (n.split(".")[0] for n in names):
                if top in local:
                    todo += [p for p in (ROOT / "benchmarks" / f"{top}.py",
                                         ROOT / "tests" / f"{top}.py") if p.exists()]
                elif top not in sys.stdlib_module_names and top != "joyvasa_core":
                    third.add(top)
    return third


def _run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT,
                          timeout=900, **kw)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """The front page's headless venv, then the benchmarks page's package."""
    folder = tmp_path_factory.mktemp("doc") / ".venv"
    torch_version = torch.__version__.split("+")[0]   # "any build": this one is in pip's cache
    for step in ([sys.executable, "-m", "venv", folder],
                 [folder / "bin" / "pip", "install", "-q", f"torch=={torch_version}"],
                 [folder / "bin" / "pip", "install", "-q", "-r", "requirements-headless.txt"],
                 [folder / "bin" / "pip", "install", "-q", BENCHMARK_EXTRA]):
        done = _run(step)
        assert done.returncode == 0, f"{' '.join(map(str, step))}: {done.stderr[-2000:]}"
    return folder / "bin" / "python"


def test_the_pages_name_the_commands_users_run():
    commands = documented_commands()
    assert {"-m joyvasa_core", "-m joyvasa_core.batch", "-m joyvasa_core.serve",
            "benchmarks/run_all.py", "benchmarks/latency.py"} <= set(commands), commands
    for command in commands:
        if command.startswith("benchmarks/"):
            assert (ROOT / command).is_file(), command


@pytest.mark.parametrize("command", documented_commands())
def test_each_documented_command_answers_help(venv, command):
    args = command.split() if command.startswith("-m") else [command]
    done = _run([venv, *args, "--help"])
    assert done.returncode == 0 and "usage:" in done.stdout, (command, done.stderr[-2000:])


def test_everything_the_benchmarks_import_is_installed(venv):
    modules = sorted(benchmark_imports())
    assert {"torch", "numpy", "skimage"} <= set(modules)
    done = _run([venv, "-c", "import " + ", ".join(modules)])
    assert done.returncode == 0, done.stderr[-2000:]
