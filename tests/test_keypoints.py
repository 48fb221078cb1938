"""Properties of the keypoint math in joyvasa_core.keypoints."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from joyvasa_core import keypoints as kpm
from helpers_precision import U64, gamma

torch.manual_seed(0)


def random_angles(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(3, n, generator=g, dtype=torch.float64) * 2 - 1) * 90
    return a[0], a[1], a[2]


def test_rotation_is_orthonormal_with_unit_determinant():
    rot = kpm.rotation_matrix(*random_angles(16))
    assert rot.shape == (16, 3, 3)
    eye = torch.eye(3, dtype=rot.dtype).expand_as(rot)
    # entries: ≤ 6 float64 roundings of cos/sin products; R·Rᵀ: 3-term dots of unit rows
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, atol=(3 + 2 * 6) * U64, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(16, dtype=rot.dtype))


def test_rotation_single_axes_and_row_vector_convention():
    zero = torch.zeros(1, dtype=torch.float64)
    ang = torch.tensor([30.0], dtype=torch.float64)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    # Official returns (Rz Ry Rx)^T: for a pure pitch that is Rx^T.
    rx = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    rz = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(kpm.rotation_matrix(ang, zero, zero)[0], rx.T)
    torch.testing.assert_close(kpm.rotation_matrix(zero, zero, ang)[0], rz.T)
    torch.testing.assert_close(kpm.rotation_matrix(zero, zero, zero)[0], torch.eye(3, dtype=torch.float64))


def test_rotation_composes_roll_yaw_pitch():
    p, y, r = random_angles(4)
    zero = torch.zeros_like(p)
    rx = kpm.rotation_matrix(p, zero, zero).transpose(-1, -2)
    ry = kpm.rotation_matrix(zero, y, zero).transpose(-1, -2)
    rz = kpm.rotation_matrix(zero, zero, r).transpose(-1, -2)
    torch.testing.assert_close(kpm.rotation_matrix(p, y, r), (rz @ ry @ rx).transpose(-1, -2))


def test_rotation_keeps_batch_shape():
    a = torch.zeros(2, 5)
    assert kpm.rotation_matrix(a, a, a).shape == (2, 5, 3, 3)


def test_headpose_degrees_peaked_and_uniform():
    logits = torch.full((3, 66), -1e4)
    for row, idx in enumerate((0, 32, 65)):
        logits[row, idx] = 0.0
    torch.testing.assert_close(kpm.headpose_logits_to_degrees(logits),
                               torch.tensor([-97.5, -1.5, 97.5]))
    # Uniform bins average to bin 32.5 -> 0 degrees.
    # float32 softmax (U relative) and a 66-term sum of p_i·i ≤ 32.5 in all, ×3: γ_67·97.5 degrees
    assert abs(float(kpm.headpose_logits_to_degrees(torch.zeros(1, 66)))) <= gamma(67) * 97.5


def test_transform_keypoints_drops_tz_and_broadcasts():
    kp = torch.randn(1, 21, 3)
    exp = torch.randn(1, 21, 3)
    t = torch.tensor([[0.1, -0.2, 5.0]])
    rot = torch.eye(3)[None].repeat(4, 1, 1)
    x = kpm.transform_keypoints(kp, rot, exp, torch.full((4, 1), 2.0), t)
    assert x.shape == (4, 21, 3)
    expected = 2.0 * (kp + exp) + torch.tensor([0.1, -0.2, 0.0])
    torch.testing.assert_close(x, expected.expand(4, 21, 3))


def test_keypoint_info_from_raw_shapes_and_transform():
    raw = {"pitch": torch.randn(2, 66), "yaw": torch.randn(2, 66), "roll": torch.randn(2, 66),
           "t": torch.randn(2, 3), "exp": torch.randn(2, 63), "scale": torch.rand(2, 1) + 1,
           "kp": torch.randn(2, 63)}
    info = kpm.KeypointInfo.from_raw(raw)
    assert info.pitch.shape == (2,) and info.kp.shape == (2, 21, 3) and info.exp.shape == (2, 21, 3)
    x = info.transform()
    # Undo the transform: kp = ((x - t) / s - exp) @ R^T
    t = kpm.drop_tz(info.t)[:, None]
    kp_back = ((x - t) / info.scale[..., None] - info.exp) @ info.rotation().transpose(-1, -2)
    # ~16 float32 roundings (rotation entries, two 3-term products, ±t, ×s, ÷s, ±exp) of values
    # up to (|x| + |t|) / s
    bound = gamma(16) * ((x.abs().max() + t.abs().max()) / info.scale.min()).item()
    torch.testing.assert_close(kp_back, info.kp, atol=bound, rtol=0)


class ConstantNet(nn.Module):
    """Returns a fixed row for every input; records the last input."""

    def __init__(self, row: torch.Tensor):
        super().__init__()
        self.row = row
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return self.row.expand(x.shape[0], -1)


def test_stitching_delta_layout():
    x_s = torch.randn(1, 21, 3)
    x_d = torch.randn(5, 21, 3)
    row = torch.zeros(65)
    row[0] = 1.0          # keypoint 0, x
    row[63:65] = torch.tensor([0.5, -0.25])
    net = ConstantNet(row)
    out = kpm.apply_stitching(net, x_s, x_d)
    assert net.seen.shape == (5, 126)
    torch.testing.assert_close(net.seen[:, :63], x_s.flatten(1).expand(5, 63))
    torch.testing.assert_close(net.seen[:, 63:], x_d.flatten(1))
    expected = x_d.clone()
    expected[:, 0, 0] += 1.0
    expected[..., 0] += 0.5
    expected[..., 1] -= 0.25
    torch.testing.assert_close(out, expected)


def test_retarget_inputs_and_normalize_lip_threshold():
    x_s = torch.randn(2, 21, 3)
    net = ConstantNet(torch.arange(63.0))
    delta = kpm.lip_retarget_delta(net, x_s, torch.tensor([[0.2, 0.0], [0.4, 0.0]]))
    assert delta.shape == (2, 21, 3) and net.seen.shape == (2, 65)
    gated = kpm.normalize_lip_delta(net, x_s, torch.tensor([[0.01], [0.05]]), threshold=0.03)
    assert torch.all(gated[0] == 0) and torch.equal(gated[1], delta[1])
    torch.testing.assert_close(net.seen[:, 63:], torch.tensor([[0.01, 0.0], [0.05, 0.0]]))
    eye = kpm.eye_retarget_delta(ConstantNet(torch.ones(63)), x_s, torch.rand(2, 3))
    assert eye.shape == (2, 21, 3)


def test_open_ratios_from_landmarks():
    lmk = torch.zeros(1, 203, 2)
    lmk[0, 0], lmk[0, 12] = torch.tensor([0.0, 0.0]), torch.tensor([10.0, 0.0])   # left eye width 10
    lmk[0, 6], lmk[0, 18] = torch.tensor([5.0, -2.0]), torch.tensor([5.0, 2.0])   # lids 4 apart
    lmk[0, 24], lmk[0, 36] = torch.tensor([20.0, 0.0]), torch.tensor([28.0, 0.0])  # right width 8
    lmk[0, 30], lmk[0, 42] = torch.tensor([24.0, 0.0]), torch.tensor([24.0, 2.0])
    lmk[0, 48], lmk[0, 66] = torch.tensor([0.0, 30.0]), torch.tensor([20.0, 30.0])
    lmk[0, 90], lmk[0, 102] = torch.tensor([10.0, 28.0]), torch.tensor([10.0, 33.0])
    # integer distances: norms exact; the eps moves ratio = num / den by ratio·RATIO_EPS/den
    # (≤ 0.05·RATIO_EPS here), plus the division's rounding
    atol = 0.05 * kpm.RATIO_EPS + gamma(2)
    torch.testing.assert_close(kpm.eye_open_ratio(lmk), torch.tensor([[0.4, 0.25]]), atol=atol, rtol=0)
    torch.testing.assert_close(kpm.lip_open_ratio(lmk), torch.tensor([[0.25]]), atol=atol, rtol=0)


def test_convex_hull_volume_and_multiplier():
    cube = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=torch.float32)
    pts = torch.cat([cube, torch.full((3, 3), 0.5)])   # interior points do not count
    assert kpm.convex_hull_volume(pts) == pytest.approx(1.0)
    x_s = torch.randn(1, 21, 3)
    # Doubling every coordinate multiplies the volume by 8: multiplier 1/sqrt(8).
    # two float64 hull volumes (sums of ≤ 2·21 facet terms: relative ≤ 42·U64 each) under square roots
    assert kpm.expression_friendly_multiplier(x_s, 2 * x_s) == pytest.approx(8 ** -0.5, rel=2 * 42 * U64)
