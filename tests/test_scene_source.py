"""A scene through the one render loop (issue 20): two faces from real photos on one canvas,
the tiny real architectures on the CPU, speech-like audio per speaker.

Each face changes only with its own speech, the pixels outside every face mask are the
photo's bit for bit, one chunk's faces render in one batch, and a scene of one face is the
single-face render exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers_pipeline as hp
from helpers_pipeline import two_faces
from joyvasa_core import pipeline
from joyvasa_core.face import mtcnn
from joyvasa_core.face.backends import detect_faces
from joyvasa_core.face.image_io import to_float01
from joyvasa_core.face.paste import PasteBack
from joyvasa_core.motion import MotionSequence, MotionStream
from joyvasa_core.scene import FaceSelector, select_faces
from joyvasa_core.scene_source import SceneMotion, StackedMotion, photo_scene
from joyvasa_core.settings import MotionSettings

needs_mtcnn = pytest.mark.skipif(not mtcnn.available(), reason="no-download face detector missing")
SETTINGS = MotionSettings(sampler="ddim", steps=2)


@pytest.fixture(scope="module")
def models():
    return hp.fast_models()


@pytest.fixture(scope="module")
def scene(models):
    canvas = two_faces()
    faces, backend = detect_faces(canvas, "mtcnn")
    assert len(faces) == 2 and faces[0].box[0] < faces[1].box[0]     # left to right
    chosen = select_faces(faces, [FaceSelector(index=0), FaceSelector(index=1)], canvas.shape[:2])
    return canvas, photo_scene(models.liveportrait, canvas, chosen, backend=backend)


def _motion(models, seconds: float, seed: int, k: int) -> MotionSequence:
    speech = torch.from_numpy(hp.speech_like(seconds, seed=seed))
    return pipeline.audio_to_motion(models, speech, 16000, MotionSettings(
        sampler="ddim", steps=2, seed=k))


def _frames(models, source, motion) -> torch.Tensor:
    return torch.cat(list(pipeline.iter_frames(models, source, motion)))


def _mask(face, height: int, width: int) -> torch.Tensor:
    """[H', W'] bool: where face's feathered paste mask is non-zero (H', W' even)."""
    paster = PasteBack.for_render(face.crop.M_c2o, face.image, hp.FAST_RENDER_SIZE, "cpu",
                                  torch.float32)
    full = torch.zeros(paster.height, paster.width, dtype=torch.bool)
    y0, y1, x0, x1 = paster.roi
    full[y0:y1, x0:x1] = paster.mask[0, 0] > 0
    return full


@needs_mtcnn
def test_each_face_moves_only_with_its_own_speech(models, scene):
    canvas, source = scene
    a, b, b_other = _motion(models, 0.4, 0, 0), _motion(models, 0.4, 1, 1), \
        _motion(models, 0.4, 2, 1)
    first = _frames(models, source, SceneMotion([a, b]))
    second = _frames(models, source, SceneMotion([a, b_other]))
    assert first.shape[1:3] == (242, 452) and len(first) == len(a)
    mask_a, mask_b = (_mask(face, *canvas.shape[:2]) for face in source.faces)
    only_a, only_b = mask_a & ~mask_b, mask_b & ~mask_a
    assert only_a.sum() > 1000 and only_b.sum() > 1000
    # face A's pixels are identical when only B's speech changes; face B's change
    assert torch.equal(first[:, only_a], second[:, only_a])
    assert (first[:, only_b] - second[:, only_b]).abs().mean() > 1e-3
    # outside every mask: the photo, bit for bit (the odd canvas padded to even by repetition)
    photo = to_float01(torch.from_numpy(canvas))
    photo = torch.cat([photo, photo[-1:]], 0)
    photo = torch.cat([photo, photo[:, -1:]], 1)
    outside = ~(mask_a | mask_b)
    for frames in (first, second):
        assert torch.equal(frames[:, outside], photo[outside].expand(len(frames), -1, -1))
    # and each face region moves over time
    for region in (only_a, only_b):
        assert (first[1:, region] - first[:1, region]).abs().amax() > 1e-2


@needs_mtcnn
def test_a_chunks_faces_render_in_one_batch(models, scene, monkeypatch):
    _, source = scene
    seen = []
    real = pipeline.iter_render

    def spy(warping, spade, feature_3d, kp_source, kp_driving, batch_size=None, **kw):
        seen.append((feature_3d.shape[0], kp_source.shape[0], kp_driving.shape[0], batch_size))
        return real(warping, spade, feature_3d, kp_source, kp_driving, batch_size, **kw)
    monkeypatch.setattr(pipeline, "iter_render", spy)
    motion = _motion(models, 0.2, 0, 0)
    frames = _frames(models, source, SceneMotion([motion, motion]))
    # the CPU renders one output frame per chunk: both faces of it in one batch of 2
    assert len(seen) == len(frames) and set(seen) == {(2, 2, 2, 2)}


@needs_mtcnn
def test_a_scene_of_one_face_is_the_single_face_render(models, scene):
    from joyvasa_core.scene_source import SceneSource

    _, source = scene
    motion = _motion(models, 0.2, 0, 0)
    single = _frames(models, source.faces[1], motion)
    one = _frames(models, SceneSource([source.faces[1]]), SceneMotion([motion]))
    assert torch.equal(single, one)


@needs_mtcnn
def test_driving_keypoints_of_a_scene_are_speaker_major(models, scene):
    _, source = scene
    a, b = _motion(models, 0.2, 0, 0), _motion(models, 0.2, 1, 1)
    x_d = pipeline.driving_keypoints(models, source, SceneMotion([a, b]), batch_size=4)
    alone = [pipeline.driving_keypoints(models, face, m, batch_size=4)
             for face, m in zip(source.faces, (a, b))]
    chunks = x_d.split(8)            # each chunk: 4 frames of speaker 0, then 4 of speaker 1
    got = [torch.cat([c[:len(c) // 2] for c in chunks]), torch.cat([c[len(c) // 2:]
                                                                  for c in chunks])]
    for mine, ref in zip(got, alone):
        assert torch.equal(mine, ref)


def _seq(n: int, value: float) -> MotionSequence:
    return MotionSequence(exp=torch.full((n, 21, 3), value), scale=torch.ones(n, 1),
                          t=torch.zeros(n, 3), pitch=torch.arange(n, dtype=torch.float32) + value,
                          yaw=torch.zeros(n), roll=torch.zeros(n))


def test_scene_motion_reads_streams_cut_differently_in_step():
    a = MotionStream(iter([_seq(3, 0), _seq(2, 10)]), n_frames=5)
    b = MotionStream(iter([_seq(1, 100), _seq(4, 200)]), n_frames=5)
    chunks = list(SceneMotion([a, b]).stream())
    assert [len(c) for c in chunks] == [1, 2, 2]
    whole = StackedMotion.cat(chunks)
    assert whole.speakers[0].pitch.tolist() == [0, 1, 2, 10, 11]
    assert whole.speakers[1].pitch.tolist() == [100, 200, 201, 202, 203]


def test_scene_motion_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="pad every speaker's speech"):
        SceneMotion([_seq(3, 0), _seq(4, 0)]).stream()


@needs_mtcnn
def test_a_face_that_leaves_a_video_passes_through_and_no_other_face_takes_its_place(
        models, tmp_path):
    """A two-face clip whose right face is gone for frames 3..5: its track marks them
    face-free (it does not jump onto the left face), those frames keep their right half
    bit for bit, and the left face is animated in every frame."""
    from helpers_video import write_clip
    from joyvasa_core.dubbing import motion_for_video
    from joyvasa_core.face.backends import detect_faces
    from joyvasa_core.scene_source import frames_scene, open_video_scene
    from joyvasa_core.video_source import FrameReader, probe_video

    canvas = two_faces()
    frames = np.stack([np.roll(canvas, i, axis=1) for i in range(9)])
    frames[3:6, :, 232:] = 90                                  # the right face is away
    path = write_clip(tmp_path / "two.mp4", frames)
    faces, backend = detect_faces(frames[0], "mtcnn")
    chosen = select_faces(faces, [FaceSelector(index=0), FaceSelector(index=1)], canvas.shape[:2])
    seconds = 9 / 25
    with open_video_scene(models.liveportrait, path, seconds, chosen,
                          face_backend="mtcnn") as scene:
        assert len(scene) == 9
        assert scene.faces[0].track.has_face.all()
        assert scene.faces[1].track.has_face.tolist() == [True] * 3 + [False] * 3 + [True] * 3
        motions = [motion_for_video(_motion(models, seconds, k, k), scene) for k in range(2)]
        out = torch.cat(list(pipeline.iter_frames(models, scene, SceneMotion(motions))))
    info = probe_video(path)
    with FrameReader(path, info, scene.faces[0].track.pts) as reader:
        decoded = to_float01(reader.read(list(range(9))))
    right, left = (slice(None), slice(240, 451)), (slice(60, 130), slice(60, 140))
    assert torch.equal(out[3:6, :241, :451][:, right[0], right[1]],
                       decoded[3:6][:, right[0], right[1]])
    assert (out[:3, :241, :451][:, right[0], right[1]]
            - decoded[:3][:, right[0], right[1]]).abs().amax() > 1e-2
    assert ((out[:, :241, :451][:, left[0], left[1]] - decoded[:, left[0], left[1]]).abs()
            .flatten(1).amax(1) > 1e-2).all()
    # the same frames in memory (a node's IMAGE batch) track the same faces
    in_memory = frames_scene(models.liveportrait, decoded, 25.0, seconds, chosen,
                             face_backend="mtcnn")
    for mine, theirs in zip(in_memory.faces, scene.faces):
        assert mine.track.has_face.tolist() == theirs.track.has_face.tolist()
        np.testing.assert_allclose(mine.track.M_o2c, theirs.track.M_o2c, atol=1e-6)


def test_where_masks_overlap_the_later_speaker_is_drawn_over_the_earlier():
    """Two faces whose crops overlap, pasted by a scene's stream: speaker 1 (blue) covers
    speaker 0 (red) where both masks are full; each alone elsewhere; outside both, the
    background bit for bit."""
    from joyvasa_core.scene_source import SceneChunk, SceneStream
    from joyvasa_core.sources import SourceChunk

    background = torch.full((120, 200, 3), 0.5)

    def face(x0: float) -> SourceChunk:          # the 512 crop placed over x0..x0+100, y 0..100
        m_c2o = np.array([[100 / 512, 0, x0], [0, 100 / 512, 0], [0, 0, 1]])
        return SourceChunk(None, None, None, None, m_c2o, background)
    crops = torch.zeros(2, 3, 128, 128)
    crops[0, 0] = 1                               # speaker 0: red
    crops[1, 2] = 1                               # speaker 1: blue
    frames = SceneStream([None, None]).paste(SceneChunk(None, None, (face(0), face(50))), crops)
    assert frames.shape == (1, 120, 200, 3)
    red, blue = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])
    assert torch.equal(frames[0, 50, 75], blue)           # both masks full: the later speaker
    assert torch.equal(frames[0, 50, 25], red)            # speaker 0 alone
    assert torch.equal(frames[0, 50, 125], blue)          # speaker 1 alone
    assert torch.equal(frames[0, 50, 180], background[50, 180])
    assert torch.equal(frames[0, 110:], background[110:].expand(1, -1, -1, -1)[0])
