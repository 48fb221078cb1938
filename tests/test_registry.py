"""The Comfy Registry's view of the pack: pyproject fields, the icon, the package contents,
and comfy-cli's own validation when comfy-cli is installed (CI installs it)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RAW = "https://raw.githubusercontent.com/"


def test_project_fields_the_registry_reads():
    project = PYPROJECT["project"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", project["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert (ROOT / project["license"]["file"]).is_file()
    assert project["description"] and project["requires-python"]
    assert project["urls"]["Repository"].startswith("https://github.com/")
    os_values = [c for c in project["classifiers"] if c.startswith("Operating System :: ")]
    assert os_values == ["Operating System :: OS Independent"]
    for c in project["classifiers"]:
        if c.startswith("Environment :: "):
            assert c[len("Environment :: "):] in {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm",
                                                  "GPU :: Intel Arc", "NPU :: Huawei Ascend",
                                                  "GPU :: Apple Metal"}


def test_comfy_table_names_publisher_display_name_icon_and_folders():
    comfy = PYPROJECT["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{2,}", comfy["PublisherId"])
    assert comfy["DisplayName"] == "ComfyUI-JoyVASA"
    assert re.fullmatch(r">=\d+\.\d+\.\d+", comfy["requires-comfyui"])
    icon = comfy["Icon"]
    repo = PYPROJECT["project"]["urls"]["Repository"].removeprefix("https://github.com/")
    assert icon.startswith(f"{RAW}{repo}/main/")
    local = ROOT / icon.removeprefix(f"{RAW}{repo}/main/")
    assert local.is_file() and local.suffix == ".png"           # the icon ships in the repo
    from PIL import Image
    with Image.open(local) as image:
        assert image.size[0] == image.size[1] >= 128
    assert set(comfy["includes"]) == {"web", "locales", "workflows"}
    for folder in comfy["includes"]:
        assert (ROOT / folder).is_dir(), folder


def test_the_registry_package_leaves_out_only_what_users_never_run():
    ignored = [line.strip() for line in (ROOT / ".comfyignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ignored == ["tests/", "benchmarks/", ".ci/"]
    for needed in ("joyvasa_core", "nodes", "__init__.py", "requirements.txt", "LICENSE",
                   *PYPROJECT["tool"]["comfy"]["includes"]):
        assert not any(needed.startswith(pattern.rstrip("/")) for pattern in ignored), needed


def _comfy_cli() -> str | None:
    return os.environ.get("COMFY_CLI") or shutil.which("comfy")


@pytest.mark.skipif(_comfy_cli() is None, reason="comfy-cli not installed (.ci/run installs it)")
def test_comfy_cli_validates_the_pack():
    """``comfy node validate``: the checks ``comfy node publish`` runs first (the pyproject
    fields, and ruff's exec / eval / one-line-statements rules over the code)."""
    done = subprocess.run([_comfy_cli(), "--skip-prompt", "--no-enable-telemetry", "node",
                           "validate"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "All validation checks passed" in out and "Warning" not in out, out
