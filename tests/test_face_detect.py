"""SCRFD decoding on a synthetic det_10g-shaped ONNX model; backends and errors."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from joyvasa_core.face import mtcnn  # noqa: E402
from joyvasa_core.face import scrfd  # noqa: E402
from joyvasa_core.face.backends import BUFFALO, detect_and_crop, get_backend  # noqa: E402
from joyvasa_core.face.errors import (DetectorFileMissing, FaceIndexError,  # noqa: E402
                                      NoFaceError)
from helpers_precision import gamma  # noqa: E402

SIZE = 640
# det_10g.onnx output names and order: scores s8/s16/s32, boxes, keypoints.
NAMES = ["448", "471", "494", "451", "474", "497", "454", "477", "500"]


def _constant_model(path, inputs, outputs):
    """An ONNX model that returns fixed arrays, with the given IO signature."""
    nodes, outs, inits = [], [], []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), name + "_value"))
        nodes.append(helper.make_node("Identity", [name + "_value"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
    graph = helper.make_graph(nodes, "synthetic", ins, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _plant(maps, stride, row, col, anchor, score, dist, kps):
    n = SIZE // stride
    i = (row * n + col) * 2 + anchor
    k = (8, 16, 32).index(stride)
    maps[NAMES[k]][i, 0] = score
    maps[NAMES[k + 3]][i] = dist
    maps[NAMES[k + 6]][i] = kps
    return np.array([col * stride, row * stride], float)


def _det_outputs():
    maps = {}
    for k, stride in enumerate((8, 16, 32)):
        a = (SIZE // stride) ** 2 * 2
        maps[NAMES[k]] = np.full((a, 1), 0.01, np.float32)
        maps[NAMES[k + 3]] = np.ones((a, 4), np.float32)
        maps[NAMES[k + 6]] = np.zeros((a, 10), np.float32)
    kps = np.array([-1.5, -1, 1.5, -1, 0, 0.3, -1, 1.5, 1, 1.5])          # stride units
    _plant(maps, 16, 10, 20, 1, 0.9, [3, 4, 3, 5], kps)                  # centre (320, 160)
    _plant(maps, 16, 10, 20, 0, 0.8, [3.1, 4, 3, 5], kps)                 # duplicate: NMS
    _plant(maps, 32, 6, 4, 0, 0.7, [2, 2.5, 2, 3], kps)                   # centre (128, 192)
    _plant(maps, 8, 50, 50, 0, 0.3, [2, 2, 2, 2], kps)                   # below threshold
    return {name: maps[name] for name in NAMES}                         # the real output order


def test_anchor_centres_order():
    c = scrfd.anchor_centres(64, 16)
    assert c.shape == (32, 2)
    np.testing.assert_array_equal(c[:6], [[0, 0], [0, 0], [16, 0], [16, 0], [32, 0], [32, 0]])
    np.testing.assert_array_equal(c[8], [0, 16])


def test_scrfd_decodes_synthetic_det_10g(tmp_path):
    path = tmp_path / "det_10g.onnx"
    _constant_model(path, {"input.1": [1, 3, SIZE, SIZE]}, _det_outputs())
    det = scrfd.SCRFD(path, threshold=0.5)
    assert det.size == SIZE and det.input_name == "input.1"
    image = np.zeros((320, 480, 3), np.uint8)         # letterbox scale 640/480
    faces = det.detect(image)
    assert len(faces) == 2                            # duplicate suppressed, weak one dropped
    scale = int(320 * SIZE / 480) / 320
    f0 = faces[0]
    assert f0.score == pytest.approx(0.9)
    # float32 decoding: distance × stride, anchor ± distance, ÷ scale: three roundings
    np.testing.assert_allclose(f0.box, np.array([320 - 48, 160 - 64, 320 + 48, 160 + 80]) / scale,
                               rtol=gamma(3))
    eyes = np.array([[320 - 24, 160 - 16], [320 + 24, 160 - 16]]) / scale
    np.testing.assert_allclose(f0.kps[:2], eyes, rtol=gamma(3))
    np.testing.assert_allclose(faces[1].box, np.array([128 - 64, 192 - 80, 128 + 64, 192 + 96]) / scale,
                               rtol=gamma(3))


def test_nms_keeps_best_of_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    keep = scrfd.nms(boxes, np.array([0.5, 0.9, 0.7]), 0.4)
    assert keep.tolist() == [1, 2]


def _lmk106_outputs():
    """2d106det-shaped output: every point at the square's centre, eyes and lips placed."""
    pts = np.zeros((106, 2), np.float32)
    pts[[33, 35, 40, 39]] = [-0.2, -0.2]
    pts[[87, 89, 94, 93]] = [0.2, -0.2]
    pts[[52, 61]] = [0.0, 0.25]
    pts[0], pts[32] = [-0.4, -0.1], [0.4, -0.1]
    pts[16] = [0, 0.5]
    return {"fc1": pts.reshape(1, 212)}


def test_onnx_backend_through_detect_and_crop(tmp_path):
    root = tmp_path / "models"
    (root / BUFFALO).mkdir(parents=True)
    _constant_model(root / BUFFALO / "det_10g.onnx", {"input.1": [1, 3, SIZE, SIZE]},
                    _det_outputs())
    with pytest.raises(DetectorFileMissing, match="2d106det.onnx"):
        get_backend("onnx", root)
    _constant_model(root / BUFFALO / "2d106det.onnx", {"data": [1, 3, 192, 192]}, _lmk106_outputs())
    image = np.full((320, 480, 3), 90, np.uint8)
    fc = detect_and_crop(image, backend="auto", models_dir=root)
    assert fc.backend == "onnx" and fc.landmarks.shape == (106, 2)
    scale = int(320 * SIZE / 480) / 320
    box = np.array([64, 112, 192, 288]) / scale            # the larger face comes first
    centre = (box[:2] + box[2:]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * 1.5 / 2
    np.testing.assert_allclose(fc.landmarks[33], centre + np.array([-0.2, -0.2]) * half, atol=1e-3)
    # the smaller face (index 1) is the right one: index 1 left to right as well
    fc1 = detect_and_crop(image, models_dir=root, face_index=1)
    fc_lr = detect_and_crop(image, models_dir=root, face_index=1, order="left-right")
    np.testing.assert_allclose(fc1.M_o2c, fc_lr.M_o2c)
    assert not np.allclose(fc1.M_o2c, fc.M_o2c)
    assert fc1.box[0] > fc.box[0]
    with pytest.raises(FaceIndexError, match="2 detected"):
        detect_and_crop(image, models_dir=root, face_index=2)


def test_auto_without_models_uses_mtcnn_and_reports_no_face(tmp_path):
    if not mtcnn.available():
        pytest.skip("the no-download backend needs: pip install mtcnn")
    assert get_backend("auto", tmp_path).name == "mtcnn"
    with pytest.raises(NoFaceError, match="'none'"):
        detect_and_crop(np.full((200, 200, 3), 128, np.uint8), image_name="flat.png")


def test_mtcnn_finds_the_astronaut():
    skdata = pytest.importorskip("skimage.data")
    if not mtcnn.available():
        pytest.skip("the no-download backend needs: pip install mtcnn")
    faces = mtcnn.MTCNN().detect(skdata.astronaut())
    assert len(faces) == 1 and faces[0].score > 0.95
    # hand-annotated eye centres, nose tip, mouth corners
    hand = np.array([[203.3, 100.0], [246.3, 102.5], [224.0, 126.5], [201.3, 138.3], [243.8, 140.5]])
    assert np.abs(faces[0].kps - hand).max() < 4
