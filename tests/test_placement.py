"""Paste-back of face crops of any size through a Placement (photo and video frames).

Real photos from skimage: the retina (1411x1411, fine vessels) shows whether a
large crop keeps its detail; the astronaut is a portrait.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage import data

from joyvasa_core.face import crop as g
from joyvasa_core.face.paste import feathered_mask, mask_to_original
from joyvasa_core.placement import Placement, PlacementError, paste_crops

KPS5 = np.array([[180, 140], [222, 135], [203, 160], [185, 180], [222, 176.]])   # eyes, nose, mouth


def _face(center, size) -> np.ndarray:
    """Face outline points of a face ``size`` times the reference one, centred at ``center``."""
    pts = (KPS5 - KPS5.mean(0)) * size + np.asarray(center, float)
    return g.outline_from_kps5(pts)


def _scaled_crop_transform(M_o2c: np.ndarray, k: int) -> np.ndarray:
    """The crop transform of the same square at k times the resolution (pixel centres:
    ``x_k = (x + 0.5) * k - 0.5``, as an upscaler maps them)."""
    up = np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1.0]])
    return up @ M_o2c


def _crops(photo: np.ndarray, M_o2c: np.ndarray, size: int, n: int = 1) -> torch.Tensor:
    """The photo's own crop at ``size`` px, as an IMAGE batch of n frames [n, S, S, 3]."""
    crop = g.warp_crop(photo, M_o2c, size)
    return (torch.from_numpy(crop).float() / 255)[None].expand(n, -1, -1, -1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def _pasted(placement, crops, **kw) -> np.ndarray:
    return torch.cat(list(paste_crops(placement, crops, **kw))).numpy()


def test_a_large_crop_pastes_back_at_its_own_sharpness():
    """A 1024 crop of a ~1000 px face square pastes back almost exactly; the 512 crop of the
    same square (what the renderer makes) loses the fine detail: the large crop is not
    shrunk to 512 on its way back."""
    photo = data.retina()                                               # [1411, 1411, 3]
    M_o2c, M_c2o = g.crop_transform(_face((705, 690), 10.0))
    placement = Placement(torch.from_numpy(photo).float()[None] / 255, None, M_c2o)
    inside = mask_to_original(feathered_mask(), M_c2o, photo.shape[1::-1]) > 0.99
    assert inside.sum() > 500_000                                       # a large face region
    truth = photo[inside] / 255.0
    sharp = _pasted(placement, _crops(photo, _scaled_crop_transform(M_o2c, 2), 1024))
    small = _pasted(placement, _crops(photo, M_o2c, 512))
    psnr_sharp = _psnr(sharp[0, :1411, :1411][inside], truth)
    psnr_small = _psnr(small[0, :1411, :1411][inside], truth)
    assert psnr_sharp >= 44.0                                           # measured 47.2 dB
    assert psnr_sharp >= psnr_small + 5.0                               # 512 crop: 40.6 dB


def test_upscaled_crops_paste_like_the_512_crops():
    """Crops upscaled 2x and 4x (bilinear or bicubic, as a plain upscaler) paste to the paste
    of the 512 crops within 0.75 levels on average and 45 dB PSNR over the face's footprint
    (measured: 0.07-0.55 levels, 46.7-59.5 dB; the difference is the upscaler's own
    interpolation at sharp edges), and leave every pixel outside the face untouched."""
    photo = data.astronaut()
    M_o2c, M_c2o = g.crop_transform(_face((240, 150), 1.6))
    placement = Placement(torch.from_numpy(photo)[None], None, M_c2o)  # uint8 pixels work too
    crops = _crops(photo, M_o2c, 512, n=3) * torch.tensor([1.0, 0.9, 0.8]).view(3, 1, 1, 1)
    base = _pasted(placement, crops, batch_size=2)
    footprint = mask_to_original(feathered_mask(), M_c2o, (512, 512))
    outside = ~ndimage.binary_dilation(footprint > 0, iterations=2)      # both masks' zero
    for factor, mode in [(2, "bilinear"), (2, "bicubic"), (4, "bilinear"), (4, "bicubic")]:
        up = F.interpolate(crops.permute(0, 3, 1, 2), scale_factor=factor, mode=mode,
                           align_corners=False).clamp(0, 1).permute(0, 2, 3, 1)
        pasted = _pasted(placement, up, batch_size=2)
        assert pasted.shape == base.shape == (3, 512, 512, 3)
        face, face_base = pasted[:, footprint > 0], base[:, footprint > 0]
        assert np.abs(face - face_base).mean() <= 0.75 / 255, (factor, mode)
        assert _psnr(face, face_base) >= 45.0, (factor, mode)
        assert np.array_equal(pasted[:, outside], base[:, outside])
    assert np.abs(base[:, outside] - photo[outside] / 255.0).max() < 1e-6     # the photo's own


def test_video_frames_each_take_their_own_crop_and_frames_without_a_face_pass():
    photo = data.astronaut()
    frames = torch.from_numpy(np.stack([np.roll(photo, 9 * i, axis=1) for i in range(4)]))
    frames = frames.float() / 255                                        # [4, 512, 512, 3]
    transforms = [g.crop_transform(_face((240 + 9 * i, 150), 1.6)) for i in range(4)]
    index = np.array([0, 1, 2, 3, 2, 1])                                # ping-pong
    placement = Placement(frames, index, np.stack([transforms[i][1] for i in index]),
                          np.array([True, True, False, True, True, True]))
    crops = torch.stack([_crops((frames[i].numpy() * 255).round().astype(np.uint8),
                                transforms[i][0], 512)[0] for i in index])
    pasted = _pasted(placement, crops, batch_size=4)
    assert pasted.shape == (6, 512, 512, 3)
    assert np.array_equal(pasted[2], frames[2].numpy())                 # no face: untouched
    for k, i in enumerate(index):
        inside = mask_to_original(feathered_mask(), transforms[i][1], (512, 512)) > 0.99
        assert np.abs(pasted[k][inside] - frames[i].numpy()[inside]).mean() < 0.01
    # a background (another face's paste) replaces the source frames
    background = torch.zeros(1, 512, 512, 3)
    into = _pasted(placement, crops, background=background)
    assert np.array_equal(into[2], np.zeros((512, 512, 3), np.float32))
    assert into[0].max() > 0.5


@pytest.mark.parametrize("crops, background, message", [
    (torch.rand(5, 64, 64, 3), None, "5 crops for a paste of 6 frames"),
    (torch.rand(6, 64, 48, 3), None, "not square"),
    (torch.rand(6, 64, 64), None, "IMAGE batch"),
    (torch.rand(0, 64, 64, 3), None, "no crops"),
    (torch.rand(6, 64, 64, 3), torch.rand(2, 100, 80, 3), "2 background frames for 6 crops"),
    (torch.rand(6, 64, 64, 3), torch.rand(1, 50, 80, 3), "the background is 80x50"),
])
def test_crops_that_do_not_fit_are_refused_in_one_line(crops, background, message):
    placement = Placement(torch.rand(1, 100, 80, 3), np.zeros(6, np.int64),
                          np.eye(3)[None].repeat(6, axis=0))
    with pytest.raises(PlacementError) as err:
        next(paste_crops(placement, crops, background=background))
    assert message in str(err.value) and "\n" not in str(err.value)
