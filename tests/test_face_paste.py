"""Paste-back: round trip, batching, official blend, even output size."""
import numpy as np
import pytest
import torch

from joyvasa_core.face import crop as g
from joyvasa_core.face.image_io import to_uint8
from joyvasa_core.face.paste import PasteBack, feathered_mask, mask_to_original, paste_back
from helpers_precision import U, assert_float32_close, gamma


def _photo(h=300, w=401, seed=0):
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([127 + 100 * np.sin(xx / 23.0 + c) * np.cos(yy / 31.0) for c in range(3)], -1)
    return np.clip(img + np.random.default_rng(seed).normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def _face_points():
    return g.outline_from_kps5(np.array([[180, 140], [222, 135], [203, 160], [185, 180], [222, 176.]]))


def test_round_trip_restores_the_photo_inside_the_mask():
    photo = _photo()
    m_o2c, m_c2o = g.crop_transform(_face_points())
    crop = g.warp_crop(photo, m_o2c)
    frames = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    out = paste_back(frames, m_c2o, torch.from_numpy(photo))
    assert out.shape == (1, 300, 402, 3)                      # width padded to even
    mask = mask_to_original(feathered_mask(), m_c2o, (401, 300))
    inside = mask > 0.99
    assert inside.sum() > 5000
    err = (out[0, :, :401].numpy() - photo / 255.0)[inside]
    # two bilinear resamplings of a smooth image: small error
    assert np.abs(err).mean() < 0.02 and np.abs(err).max() < 0.2
    # outside the mask the photo is untouched
    outside = mask_to_original(feathered_mask(), m_c2o, (401, 300)) == 0
    assert np.abs(out[0, :, :401].numpy() - photo / 255.0)[outside].max() <= U   # x/255 rounded once
    # the padded column repeats the last one
    assert torch.equal(out[0, :, 401], out[0, :, 400])


def test_batched_equals_per_frame():
    photo = _photo(257, 320, 1)
    _, m_c2o = g.crop_transform(_face_points())
    frames = torch.rand(5, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    paster = PasteBack(m_c2o, photo)
    batched = paster(frames)
    assert batched.shape == (5, 258, 320, 3)
    reference = PasteBack(m_c2o, photo, dtype=torch.float64)(frames.double())
    for i in range(5):
        assert_float32_close(paster(frames[i:i + 1]), batched[i:i + 1], reference[i:i + 1])
    # different frames give different outputs in the ROI only
    assert not torch.equal(batched[0], batched[1])
    # the uint8 output is the rounded float output
    as_u8 = paster(frames, as_uint8=True)
    assert as_u8.dtype == torch.uint8
    assert (as_u8.int() - to_uint8(batched).int()).abs().max() <= 1


def test_matches_cv2_blend_of_the_official_paste_back():
    cv2 = pytest.importorskip("cv2")
    photo = _photo(240, 320, 2)
    _, m_c2o = g.crop_transform(_face_points())
    rendered = _photo(512, 512, 3)
    mask = feathered_mask()
    mask_ori = mask_to_original(mask, m_c2o, (320, 240))[..., None]
    warped = cv2.warpAffine(rendered, m_c2o[:2], (320, 240), flags=cv2.INTER_LINEAR)
    official = np.clip(mask_ori * warped + (1 - mask_ori) * photo, 0, 255)
    frames = torch.from_numpy(rendered).permute(2, 0, 1)[None].float() / 255
    ours = to_uint8(PasteBack(m_c2o, photo, mask=mask)(frames))[0].numpy().astype(float)
    assert np.abs(ours - official).max() <= 2.0
    assert np.abs(ours - official).mean() < 0.3


def test_half_precision_and_dtype_follow_frames():
    photo = _photo(120, 160, 4)
    _, m_c2o = g.crop_transform(_face_points() * 0.4)
    frames = torch.rand(2, 3, 512, 512)
    ref = paste_back(frames, m_c2o, photo)
    out = paste_back(frames.double(), m_c2o, photo)
    # same float32 sampling grid; grid_sample's own float32 arithmetic: the pixel coordinate
    # ((x + 1)·S − 1)/2 (≤ 2 roundings of S = 512 px, times a neighbour step ≤ 1), 4 bilinear
    # terms and a lerp on values ≤ 1
    atol = 2 * U * 512 + gamma(8)
    assert out.dtype == torch.float64 and torch.allclose(out.float(), ref, atol=atol, rtol=0)


def test_crop_outside_image_leaves_background():
    photo = _photo(100, 100, 5)
    m_o2c = np.array([[1.0, 0, -1000], [0, 1.0, -1000], [0, 0, 1]])
    out = paste_back(torch.rand(1, 3, 512, 512), np.linalg.inv(m_o2c), photo)
    assert torch.allclose(out[0], torch.from_numpy(photo).float() / 255, atol=2 * U, rtol=0)  # x/255 twice
