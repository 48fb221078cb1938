"""Image loading: formats, alpha, grayscale, 16-bit, EXIF, errors, detection view."""
import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from joyvasa_core.face.errors import ImageLoadError  # noqa: E402
from joyvasa_core.face.image_io import MAX_DETECT_SIDE, detection_view, load_image  # noqa: E402


def test_rgb_png_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (31, 47, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_rgba_composite_over_white_or_drop(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 0
    arr[0, 0, 3] = 255
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    comp = load_image(tmp_path / "t.png")
    assert comp[1, 1].tolist() == [255, 255, 255] and comp[0, 0].tolist() == [200, 0, 0]
    dropped = load_image(tmp_path / "t.png", alpha="drop")
    assert dropped[1, 1].tolist() == [200, 0, 0]
    half = arr.copy()
    half[..., 3] = 128
    assert load_image(half)[2, 2].tolist() == [227, 127, 127]


def test_grayscale_and_16bit(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (8, 8, 3) and np.array_equal(out[..., 1], gray)
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out16 = load_image(tmp_path / "d.png")
    np.testing.assert_allclose(out16[..., 0], np.rint(deep / 257.0), atol=1)
    assert np.array_equal(load_image(deep[..., None].repeat(3, 2))[..., 2], out16[..., 2])


def test_float_tensor_and_comfy_batch():
    t = torch.full((1, 5, 6, 3), 0.5)
    out = load_image(t)
    assert out.shape == (5, 6, 3) and (out == 128).all()


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6                               # rotate 90 degrees clockwise
    im.save(tmp_path / "r.jpg", exif=exif)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50


def test_not_an_image_names_the_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ImageLoadError, match="notes.txt"):
        load_image(bad)
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5)))


def test_detection_view_of_8k_keeps_full_resolution_elsewhere():
    big = np.zeros((4320, 7680, 3), np.uint8)
    view, factor = detection_view(big)
    assert max(view.shape[:2]) == MAX_DETECT_SIDE and factor == pytest.approx(1280 / 7680)
    small, f1 = detection_view(big[:100, :100])
    assert f1 == 1.0 and small.shape == (100, 100, 3)
