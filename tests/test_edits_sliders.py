"""The editor's slider semantics (joyvasa_core.edits.sliders) and their parity handler."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from joyvasa_core.edits.sliders import (EYE_BROW_KEYPOINTS, SLIDER_NAMES, slider_offsets,
                                        sliders_from_mapping)
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.parity.runner import run_fixture

PARITY = Path(__file__).parent / "data" / "parity"


def offsets(**values: float):
    return slider_offsets(sliders_from_mapping(values, torch.float64))


def moved(delta_exp: torch.Tensor) -> set[int]:
    return set(delta_exp.abs().sum(-1).nonzero().flatten().tolist())


def test_expression_edit_fixture_passes():
    results = run_fixture(Fixture.open(PARITY, "expression_edit"), torch.device("cpu"))
    assert len(results) == 16 and all(r.ok for r in results), [r for r in results if not r.ok]


def test_fixture_slider_order_is_read_from_the_sidecar(tmp_path):
    """The handler follows the sidecar's slider_names: a permuted order with permuted inputs passes."""
    import json
    from safetensors.torch import load_file, save_file

    meta = json.loads((PARITY / "expression_edit.json").read_text())
    tensors = load_file(PARITY / "expression_edit.safetensors")
    perm = list(reversed(range(len(SLIDER_NAMES))))
    meta["slider_names"] = [meta["slider_names"][i] for i in perm]
    for key in [k for k in tensors if k.startswith("sliders.")]:
        tensors[key] = tensors[key][perm].contiguous()
    (tmp_path / "expression_edit.json").write_text(json.dumps(meta))
    save_file(tensors, tmp_path / "expression_edit.safetensors")
    assert all(r.ok for r in run_fixture(Fixture.open(tmp_path, "expression_edit"),
                                         torch.device("cpu")))
    tensors["sliders.smile"][-1] += 0.5   # smile is first in the reversed order: now wrong
    meta["slider_names"] = list(SLIDER_NAMES)
    save_file(tensors, tmp_path / "expression_edit.safetensors")
    (tmp_path / "expression_edit.json").write_text(json.dumps(meta))
    assert not all(r.ok for r in run_fixture(Fixture.open(tmp_path, "expression_edit"),
                                             torch.device("cpu")))


def test_sign_conventions():
    # a positive rotate_yaw slider turns the yaw the other way; pitch and roll follow their sliders
    assert offsets(rotate_yaw=5).delta_rot.tolist() == [0, -5, 0]
    assert offsets(rotate_pitch=3, rotate_roll=-2).delta_rot.tolist() == [3, 0, -2]
    # aaa opens the mouth and tilts the pitch; wink turns roll and yaw
    assert torch.allclose(offsets(aaa=20).delta_rot, torch.tensor([-1.0, 0, 0], dtype=torch.float64))
    assert torch.allclose(offsets(wink=10).delta_rot, torch.tensor([0, -1.0, -1.0], dtype=torch.float64))
    # pupil_x responds with other coefficients on each side
    right, left = offsets(pupil_x=10).delta_exp, offsets(pupil_x=-10).delta_exp
    assert not torch.allclose(right, -left)
    assert torch.allclose(right[11, 0] / right[15, 0], torch.tensor(0.7, dtype=torch.float64))
    assert torch.allclose(left[15, 0] / left[11, 0], torch.tensor(0.7, dtype=torch.float64))
    # pupil_y also lowers the lids: half its value acts as blink
    lids = offsets(pupil_y=4).delta_exp - offsets(blink=-2).delta_exp
    assert moved(lids) == {11, 15}


def test_sliders_move_only_their_keypoints():
    assert moved(offsets(blink=-12).delta_exp) == set(EYE_BROW_KEYPOINTS) == {1, 2, 11, 13, 15, 16}
    assert moved(offsets(smile=0.8).delta_exp) == {3, 7, 13, 14, 16, 17, 20}
    assert moved(offsets(eyebrow=5).delta_exp) == {1, 2}
    assert offsets(smile=1.0).delta_rot.abs().sum() == 0


def test_batched_and_piecewise_linear():
    values = torch.randn(7, 12, dtype=torch.float64) * 5
    batch = slider_offsets(values)
    for i in range(7):
        one = slider_offsets(values[i])
        assert torch.allclose(batch.delta_exp[i], one.delta_exp)
        assert torch.allclose(batch.delta_rot[i], one.delta_rot)
    # linear within a sign: doubling a same-sign setting doubles the offsets
    same_sign = values.abs()
    assert torch.allclose(slider_offsets(2 * same_sign).delta_exp, 2 * slider_offsets(same_sign).delta_exp)
    assert slider_offsets(values.float()).delta_exp.dtype == torch.float32


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="12 entries"):
        slider_offsets(torch.zeros(5))
    with pytest.raises(ValueError, match="unknown sliders"):
        sliders_from_mapping({"grin": 1.0})
