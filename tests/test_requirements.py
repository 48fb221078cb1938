"""The requirement files cover every import of the library, and never touch ComfyUI's own packages.

A headless venv is ``pip install torch`` then ``pip install -r requirements-headless.txt``
(README). So every third-party module that ``joyvasa_core`` imports anywhere (at the
top of a module or lazily inside a function) must come from a distribution listed there
or from torch. ``requirements.txt`` is what ComfyUI-Manager installs into ComfyUI's own
environment: it must leave torch, numpy and av to ComfyUI.
"""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
#: Supplied by ComfyUI (and installed first, by hand, for the headless command).
COMFYUI_OWNED = {"torch", "torchvision", "torchaudio", "numpy", "av"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> set[str]:
    """Distribution names in a pip requirements file, following ``-r`` includes."""
    names: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r"):
            names |= requirement_names(path.parent / line[2:].strip())
        else:
            names.add(_norm(Requirement(line).name))
    return names


def imported_modules(package: Path) -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports, any depth)."""
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_library_import_comes_from_the_headless_requirements():
    # requirements-ray.txt: the optional extra of ``joyvasa_core.batch --ray`` (imported lazily);
    # requirements-agents.txt: the voice-agent extra (aiortc, pipecat, livekit; imported when used).
    declared = requirement_names(ROOT / "requirements-headless.txt") | {"torch"} \
        | requirement_names(ROOT / "requirements-ray.txt") | requirement_names(ROOT / "requirements-agents.txt")
    providers = metadata.packages_distributions()
    third_party = {m: files for m, files in imported_modules(ROOT / "joyvasa_core").items()
                   if m not in sys.stdlib_module_names and m != "joyvasa_core"}
    assert {"torch", "av", "numpy", "soxr"} <= set(third_party)   # the scan sees real imports
    missing = {}
    for module, files in sorted(third_party.items()):
        dists = {_norm(d) for d in providers.get(module, [module])}
        if not dists & declared:
            missing[module] = (sorted(dists), sorted(files))
    assert not missing, f"imported but not in requirements-headless.txt: {missing}"


def test_comfyui_requirements_leave_comfyuis_packages_alone():
    names = requirement_names(ROOT / "requirements.txt")
    assert names and not names & COMFYUI_OWNED


def test_headless_requirements_add_exactly_what_comfyui_supplies():
    extra = requirement_names(ROOT / "requirements-headless.txt") - requirement_names(ROOT / "requirements.txt")
    assert extra == {"numpy", "av"}       # torch is installed first, any build


def test_pyproject_dependencies_match_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {_norm(Requirement(d).name) for d in project["dependencies"]} == \
        requirement_names(ROOT / "requirements.txt")


def test_readme_headless_steps_use_the_headless_file():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements-headless.txt" in readme


def test_importing_the_library_imports_no_agent_framework():
    """aiortc, pipecat and livekit load only when their adapter (or a WebRTC offer) is used."""
    import subprocess

    code = ("import sys, joyvasa_core, joyvasa_core.serve, joyvasa_core.integrations, "
            "joyvasa_core.integrations.livekit_worker, joyvasa_core.avatar; "
            "print(sorted(m for m in ('aiortc', 'pipecat', 'livekit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_comfyui_requirements_leave_the_agent_frameworks_out():
    assert not requirement_names(ROOT / "requirements.txt") & requirement_names(ROOT / "requirements-agents.txt")
