"""Crop geometry: official fixture values, invariances, and the crop of a real photo."""
import math

import numpy as np
import pytest

from joyvasa_core.face import crop as g
from joyvasa_core.face import mtcnn
from joyvasa_core.face.backends import detect_and_crop, letterbox_o2c
from joyvasa_core.parity.fixture import Fixture

from conftest import PARITY
from helpers_precision import U64

# Hand-annotated on skimage.data.astronaut() (512x512), pixels: eye centres,
# nose tip, mouth corners, then brow top, chin bottom, left / right face edge
# at eye level (the extent a 106-point contour would cover).
ASTRONAUT_9 = np.array([[203.3, 100.0], [246.3, 102.5], [224.0, 126.5], [201.3, 138.3],
                        [243.8, 140.5], [224.5, 91.0], [222.0, 178.8], [187.5, 100.0],
                        [266.0, 102.0]])


@pytest.fixture(scope="module")
def fx():
    return Fixture.open(PARITY, "crop")


def test_float32_path_reproduces_official_matrices(fx):
    pts = fx.tensor("lmk106").numpy()
    m_o2c, m_c2o = g.crop_transform(pts, 512, 2.3, vy_ratio=-0.125, dtype=np.float32)
    assert np.array_equal(m_o2c, fx.tensor("lmk106.d512.s2.3.M_o2c").numpy())
    assert np.array_equal(m_c2o, fx.tensor("lmk106.d512.s2.3.M_c2o").numpy())


def test_float64_close_to_official_and_points_map(fx):
    pts = fx.tensor("lmk203").numpy()
    m_o2c, m_c2o = g.crop_transform(pts, 256, 2.3)
    ref = fx.tensor("lmk203.d256.s2.3.M_o2c").numpy()
    assert np.abs(m_o2c - ref).max() < 1e-3
    # 3-term float64 dot products, each matrix a few roundings off its exact value
    assert (np.abs(m_o2c @ m_c2o - np.eye(3)) <= 8 * U64 * (np.abs(m_o2c) @ np.abs(m_c2o))).all()
    np.testing.assert_allclose(g.transform_points(pts, m_o2c),
                               fx.tensor("lmk203.d256.s2.3.pt_crop").numpy(), atol=1e-3)


def test_crop_is_rotation_equivariant():
    """Rotating the face rotates the crop transform: the crop content is unchanged."""
    rng = np.random.default_rng(0)
    pts = g.outline_from_kps5(np.array([[90, 100], [130, 100], [110, 120], [95, 140], [125, 140.]]))
    pts = pts + rng.normal(0, 0.5, pts.shape)
    a = math.radians(25)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = np.array([300.0, 200.0])
    turned = (pts - centre) @ rot.T + centre
    m1, _ = g.crop_transform(pts)
    m2, _ = g.crop_transform(turned)
    np.testing.assert_allclose(g.transform_points(pts, m1), g.transform_points(turned, m2),
                               atol=1e-6)
    # upright crop (rotate=False) does not follow the roll
    m3, _ = g.crop_transform(turned, rotate=False)
    assert m3[0, 1] == 0                                    # sin(0) = 0 exactly


def test_vy_moves_crop_along_face_axis_and_scale_sets_size():
    kps = np.array([[90, 100], [130, 100], [110, 120], [95, 140], [125, 140.]])
    pts = g.outline_from_kps5(kps)
    c0, side0, _ = g.crop_rect(pts, scale=2.3, vy_ratio=0.0)
    c1, side1, _ = g.crop_rect(pts, scale=2.3, vy_ratio=-0.125)
    _, side2, _ = g.crop_rect(pts, scale=3.0)
    # a few float64 roundings of the centre and side
    np.testing.assert_allclose(c1 - c0, [0, -0.125 * side0[0]], atol=4 * U64 * (np.abs(c0).max() + side0[0]))
    assert side2[0] / side1[0] == pytest.approx(3.0 / 2.3)


def test_open_ratios_on_fixture_landmarks(fx):
    pts = fx.tensor("lmk203").numpy().astype(np.float64)
    eye = g.eye_open_ratio(pts)
    lip = g.lip_open_ratio(pts)
    expect_left = np.linalg.norm(pts[6] - pts[18]) / np.linalg.norm(pts[0] - pts[12])
    # the official eps 1e-6 added to the denominator, plus a few float64 roundings
    assert eye[0] == pytest.approx(expect_left, rel=1e-6 / np.linalg.norm(pts[0] - pts[12]) + 4 * U64)
    assert lip == pytest.approx(np.linalg.norm(pts[90] - pts[102]) / np.linalg.norm(pts[48] - pts[66]),
                                rel=1e-6 / np.linalg.norm(pts[48] - pts[66]) + 4 * U64)


def test_fallback_crop_of_astronaut_places_eyes_and_mouth_like_official():
    """MTCNN backend vs the official geometry on hand-annotated landmarks."""
    skdata = pytest.importorskip("skimage.data")
    if not mtcnn.available():
        pytest.skip("the no-download backend needs: pip install mtcnn")
    image = skdata.astronaut()
    fc = detect_and_crop(image, backend="mtcnn")
    assert fc.backend == "mtcnn" and fc.crop_512.shape == (512, 512, 3)
    assert fc.crop_256.shape == (1, 3, 256, 256) and 0 <= fc.crop_256.min() <= fc.crop_256.max() <= 1
    expected, _ = g.crop_transform(ASTRONAUT_9)
    anchors = ASTRONAUT_9[[0, 1, 3, 4]]
    got = g.transform_points(anchors, fc.M_o2c)
    want = g.transform_points(anchors, expected)
    # within 4 % of the crop size
    assert np.abs(got - want).max() < 0.04 * 512, (got, want)
    # the detected eyes lie on the annotated eyes (< 4 px in the photo)
    assert np.abs(fc.landmarks[:2] - ASTRONAUT_9[:2]).max() < 4
    # the crop shows the photo where M_o2c says
    assert np.abs(fc.crop_512[256].astype(int)
                  - g.warp_crop(image, fc.M_o2c)[256].astype(int)).max() == 0


def test_none_mode_letterboxes_the_cat():
    skdata = pytest.importorskip("skimage.data")
    cat = skdata.chelsea()                      # [300, 451, 3]
    fc = detect_and_crop(cat, backend="none")
    assert fc.backend == "none" and fc.landmarks is None
    np.testing.assert_allclose(fc.M_o2c, letterbox_o2c(*cat.shape[:2], 512))
    # the cat's eyes (hand-annotated: (176, 118), (263, 98)) land where M_o2c maps them
    for x, y in [(176, 118), (263, 98)]:
        u, v = g.transform_points(np.array([x, y], float), fc.M_o2c)
        assert np.abs(fc.crop_512[round(v), round(u)].astype(int) - cat[y, x].astype(int)).max() <= 12
    # the whole image is inside the crop, centred: top and bottom bands are black
    assert fc.crop_512[:10].max() == 0 and fc.crop_512[-10:].max() == 0
    assert fc.crop_512[256].mean() > 20


def test_box_mode_crops_around_the_box():
    skdata = pytest.importorskip("skimage.data")
    image = skdata.astronaut()
    fc = detect_and_crop(image, box=(180, 60, 266, 171))
    assert fc.backend == "none"
    eyes = g.transform_points(ASTRONAUT_9[:2], fc.M_o2c)
    expected, _ = g.crop_transform(ASTRONAUT_9)
    assert np.abs(eyes - g.transform_points(ASTRONAUT_9[:2], expected)).max() < 0.06 * 512
