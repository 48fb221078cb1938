"""Motion extractor M and stitching/retargeting MLPs: checkpoint layouts and parity."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import PARITY, SCHEMA
from joyvasa_core.config import MOTION_EXTRACTOR, STITCHING_FILE_PARTS, STITCHING_RETARGETING
from joyvasa_core.models.convnextv2 import ConvNeXtV2
from joyvasa_core.models.motion_extractor import MotionExtractor
from joyvasa_core.models.stitching import StitchingRetargetingNetwork, build_stitching_retargeting
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.parity.runner import run_fixture


def layout(module: torch.nn.Module) -> list[tuple[str, list[int]]]:
    return [(k, list(v.shape)) for k, v in module.state_dict().items()]


def test_motion_extractor_matches_schema():
    schema = json.loads((SCHEMA / "motion_extractor.json").read_text())
    model = MotionExtractor(**MOTION_EXTRACTOR)
    assert layout(model) == [(e["key"], e["shape"]) for e in schema["entries"]]
    assert sum(p.numel() for p in model.parameters()) == schema["num_parameters"]


def test_stitching_parts_match_schema():
    schema = json.loads((SCHEMA / "stitching_retargeting_module.json").read_text())
    parts = build_stitching_retargeting(STITCHING_RETARGETING)
    for file_part, ours in STITCHING_FILE_PARTS.items():
        spec = schema["parts"][file_part]
        assert layout(parts[ours]) == [(e["loaded_key"], e["shape"]) for e in spec["entries"]]
        assert ["module." + e["loaded_key"] for e in spec["entries"]] == [e["key"] for e in spec["entries"]]
        assert sum(p.numel() for p in parts[ours].parameters()) == spec["num_parameters"]


def test_tiny_convnext_forward_shapes_and_dtype():
    net = ConvNeXtV2(depths=(1, 1), dims=(8, 16), num_kp=4).eval().double()
    image = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = net(image)
        single = net(image[1:])
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"pitch": (2, 66), "yaw": (2, 66), "roll": (2, 66), "t": (2, 3),
                      "exp": (2, 12), "scale": (2, 1), "kp": (2, 12)}
    assert all(v.dtype == torch.float64 for v in out.values())
    # Batch items are independent (no cross-batch statistics) and differ per image.
    for key in out:
        torch.testing.assert_close(single[key][0], out[key][1])
    assert not torch.allclose(out["kp"][0], out["kp"][1])


def test_stitching_mlp_structure():
    net = StitchingRetargetingNetwork(5, [7, 3], 2)
    kinds = [type(m).__name__ for m in net.mlp]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert net(torch.randn(4, 5)).shape == (4, 2)


@pytest.mark.parametrize("name", ["motion_extractor", "stitching_retargeting"])
def test_parity(name):
    results = run_fixture(Fixture.open(PARITY, name), torch.device("cpu"))
    failed = [(r.output, r.max_abs_err, r.note) for r in results if not r.ok]
    assert results and not failed, failed
