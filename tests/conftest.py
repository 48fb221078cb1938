"""Shared test fixtures: paths to the copied reference data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
PARITY = DATA / "parity"
SCHEMA = DATA / "schema"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    return SCHEMA
