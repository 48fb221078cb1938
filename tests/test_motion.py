"""Motion decoding with the template, pose EMA, and the MotionSequence value type."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import PARITY
from helpers_precision import gamma
from joyvasa_core.motion import MotionSequence, MotionTemplate, PoseEMA, decode_motion, smooth_pose
from joyvasa_core.parity.fixture import Fixture


def random_sequence(n: int = 12, fps: float = 25.0) -> MotionSequence:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return MotionSequence(exp=r(n, 21, 3), scale=r(n, 1), t=r(n, 3), pitch=r(n), yaw=r(n), roll=r(n), fps=fps)


def synthetic_template() -> MotionTemplate:
    stats = {"mean_exp": np.linspace(-1, 1, 63), "std_exp": np.linspace(0.1, 0.2, 63),
             "min_scale": [1.0], "max_scale": [2.0], "min_t": [-1, -2, -3], "max_t": [1, 2, 3],
             "min_pitch": [-20], "max_pitch": [20], "min_yaw": [-30], "max_yaw": [30],
             "min_roll": [-10], "max_roll": [10], "mean_R": np.eye(3).reshape(-1)}
    return MotionTemplate.from_dict(stats)


def test_decode_layout():
    tpl = synthetic_template()
    coef = torch.zeros(3, 70)
    coef[1] = 1.0
    coef[2, 63:] = 0.5
    seq = decode_motion(coef[None], tpl, fps=30)
    assert len(seq) == 3 and seq.fps == 30
    assert torch.allclose(seq.exp[0].reshape(-1), tpl.mean_exp)
    assert torch.allclose(seq.exp[1].reshape(-1), tpl.mean_exp + tpl.std_exp)
    assert seq.scale[:, 0].tolist() == [1.0, 2.0, 1.5]
    assert seq.t[1].tolist() == [1, 2, 3] and seq.t[2].tolist() == [0, 0, 0]
    assert (seq.pitch.tolist(), seq.yaw.tolist(), seq.roll.tolist()) == \
        ([-20, 20, 0], [-30, 30, 0], [-10, 10, 0])
    with pytest.raises(ValueError, match="70"):
        decode_motion(torch.zeros(3, 69), tpl)


def test_template_needs_its_keys():
    with pytest.raises(KeyError, match="std_exp"):
        MotionTemplate.from_dict({"mean_exp": np.zeros(63)})


@pytest.mark.parametrize("tag,smooth", [("decoded", False), ("smoothed", True)])
def test_decode_and_smooth_match_official(tag, smooth):
    """pipeline_motion: the official decode (and EMA) of a fixed coefficient sequence."""
    fx = Fixture.open(PARITY, "pipeline_motion")
    tpl = MotionTemplate.from_dict({k.split(".", 1)[1]: fx.tensor(k).numpy()
                                    for k in fx.specs if k.startswith("template.")})
    n = fx.specs[f"{tag}.exp"]["shape"][0]
    seq = decode_motion(fx.tensor("motion_coef")[0, :n], tpl)
    if smooth:
        seq = smooth_pose(seq)
    ours = dict(exp=seq.exp, scale=seq.scale, t=seq.t, pitch=seq.pitch[:, None], yaw=seq.yaw[:, None],
                roll=seq.roll[:, None], R=seq.rotation())
    for name, value in ours.items():
        torch.testing.assert_close(value, fx.tensor(f"{tag}.{name}"), atol=1e-5, rtol=1e-5)


def test_smooth_pose_is_the_ema():
    seq = random_sequence(50)
    out = smooth_pose(seq, alpha=0.2)
    assert torch.equal(out.exp, seq.exp)
    x, y = seq.pose(), out.pose()
    expected = x[0]
    for i in range(1, len(seq)):
        expected = 0.2 * x[i] + 0.8 * expected
        torch.testing.assert_close(y[i], expected)
    assert torch.equal(y[0], x[0])
    assert smooth_pose(seq, strength=0.0) is seq
    half = smooth_pose(seq, alpha=0.01, strength=0.5).pose()        # a = 0.01 ** 0.5 = 0.1
    torch.testing.assert_close(half[1], 0.1 * x[1] + 0.9 * x[0])
    with pytest.raises(ValueError):
        smooth_pose(seq, alpha=0.0)


def test_sequence_slicing_and_shapes():
    seq = random_sequence(12)
    part = seq[2:7]
    assert len(part) == 5 and torch.equal(part.yaw, seq.yaw[2:7]) and part.fps == seq.fps
    assert len(seq[-1]) == 1 and torch.equal(seq[-1].exp, seq.exp[-1:])
    assert seq.duration == pytest.approx(12 / 25)
    with pytest.raises(ValueError, match="scale"):
        MotionSequence(exp=seq.exp, scale=seq.scale[:5], t=seq.t, pitch=seq.pitch, yaw=seq.yaw,
                       roll=seq.roll)


def test_rotation_is_orthonormal_and_identity_at_rest():
    seq = random_sequence(8)
    r = seq.rotation()
    assert r.shape == (8, 3, 3)
    # entries: ≤ 8 float32 roundings (cos/sin within one ulp, products, sums); R·Rᵀ: 3-term dots
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3).expand(8, 3, 3), atol=gamma(3 + 2 * 8),
                               rtol=0)
    zero = MotionSequence(exp=seq.exp, scale=seq.scale, t=seq.t, pitch=torch.zeros(8),
                          yaw=torch.zeros(8), roll=torch.zeros(8))
    assert torch.equal(zero.rotation(), torch.eye(3).expand(8, 3, 3))


def test_save_load_round_trip(tmp_path):
    seq = random_sequence(9, fps=29.97)
    path = tmp_path / "motion.safetensors"
    seq.save(path)
    back = MotionSequence.load(path)
    assert back.fps == pytest.approx(29.97) and len(back) == 9
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        assert torch.equal(getattr(back, name), getattr(seq, name))
    from safetensors.torch import save_file
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other))
    with pytest.raises(ValueError, match="not a JoyVASA motion"):
        MotionSequence.load(other)


def test_rescaled_scales_changes_from_frame0():
    g = torch.Generator().manual_seed(3)
    T = 6
    seq = MotionSequence(exp=torch.randn(T, 21, 3, generator=g), scale=1.5 + torch.rand(T, 1, generator=g),
                         t=torch.randn(T, 3, generator=g), pitch=torch.randn(T, generator=g),
                         yaw=torch.randn(T, generator=g), roll=torch.randn(T, generator=g))
    same = seq.rescaled()
    for name in ("exp", "scale", "t", "pitch", "yaw", "roll"):
        torch.testing.assert_close(getattr(same, name), getattr(seq, name))
    half = seq.rescaled(pose=0.5, expression=2.0)
    torch.testing.assert_close(half.yaw - seq.yaw[:1], 0.5 * (seq.yaw - seq.yaw[:1]))
    torch.testing.assert_close(half.t - seq.t[:1], 0.5 * (seq.t - seq.t[:1]))
    torch.testing.assert_close(half.exp - seq.exp[:1], 2.0 * (seq.exp - seq.exp[:1]))
    torch.testing.assert_close(half.scale, seq.scale)
    still = seq.rescaled(pose=0.0, expression=0.0)
    torch.testing.assert_close(still.pitch, seq.pitch[:1].expand(T))
    torch.testing.assert_close(still.exp, seq.exp[:1].expand(T, 21, 3))


def test_pose_ema_over_chunks_equals_the_whole():
    """The EMA is causal: carried across chunks of any sizes it equals the whole-sequence filter bit for bit."""
    seq = random_sequence(40)
    whole = smooth_pose(seq, alpha=0.05)
    ema = PoseEMA(alpha=0.05)
    parts = [ema(seq[a:b]) for a, b in ((0, 1), (1, 9), (9, 9), (9, 31), (31, 40))]
    joined = MotionSequence.cat(parts)
    assert torch.equal(joined.pose(), whole.pose()) and torch.equal(joined.exp, seq.exp)


def test_rescaled_chunk_uses_the_stream_reference():
    seq = random_sequence(10)
    whole = seq.rescaled(pose=0.5, expression=2.0)
    tail = seq[4:].rescaled(pose=0.5, expression=2.0, reference=seq[:1])
    assert torch.equal(tail.exp, whole.exp[4:]) and torch.equal(tail.yaw, whole.yaw[4:])
    assert not torch.equal(seq[4:].rescaled(pose=0.5).yaw, whole.yaw[4:])
