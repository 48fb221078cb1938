"""Face track of a moving face: tracked, smoothed, cutaways marked, no-face videos refused."""
from __future__ import annotations

import numpy as np
import pytest

import helpers_video as hv
from joyvasa_core import face_track as ft
from joyvasa_core import video_source as vs
from joyvasa_core.face import mtcnn
from joyvasa_core.face.backends import letterbox_o2c

needs_mtcnn = pytest.mark.skipif(not mtcnn.available(),
                                 reason="no-download face detector (pip install mtcnn) missing")


def _centres(track: ft.FaceTrack) -> np.ndarray:
    """[N, 2] crop centre (original pixels) of every frame."""
    return (np.linalg.inv(track.M_o2c) @ np.array([256.0, 256.0, 1.0]))[:, :2]


@needs_mtcnn
def test_track_follows_the_face_and_marks_cutaways(tmp_path):
    frames = hv.drifting_astronaut(8, cutaways=(5,))
    path = hv.write_clip(tmp_path / "moving.mp4", frames)
    info = vs.probe_video(path)
    track = ft.track_faces(vs.iter_video(path, 3, info), info.fps, face_backend="mtcnn")
    assert track.has_face.tolist() == [True] * 5 + [False] + [True] * 2
    assert len(track) == 8 and track.times.shape == (8,) and track.pts.shape == (8,)
    centres = _centres(track)
    steps = np.diff(centres[:5, 0])
    # the face slides 3 px per frame; the smoothed crop follows it without lag
    np.testing.assert_allclose(steps, 3.0, atol=0.5)
    assert np.abs(np.diff(centres[:5, 1])).max() < 0.5
    # the cutaway carries its nearest face frame's crop (it is never pasted)
    assert any(np.allclose(track.M_o2c[5], track.M_o2c[j]) for j in (4, 6))


def test_smoothing_removes_jitter_but_keeps_a_steady_drift():
    n = 30
    drift = np.stack([np.arange(n) * 2.0, np.full(n, 50.0), np.full(n, 100.0), np.zeros(n)], 1)
    jitter = np.random.default_rng(0).normal(0, 1.0, (n, 4)) * [1, 1, 1, 0.01]
    smoothed = ft.smooth_crops(drift + jitter, np.ones(n, bool), 5)
    np.testing.assert_allclose(ft.smooth_crops(drift, np.ones(n, bool), 5), drift, atol=1e-9)
    assert np.abs(smoothed - drift)[2:-2, :3].std() < 0.6 * jitter[2:-2, :3].std()


def test_smoothing_stops_at_cuts_and_missing_faces():
    squares = np.array([[10, 10, 100, 0.0]] * 4 + [[400, 10, 100, 0.0]] * 4, float)
    has_face = np.ones(8, bool)
    np.testing.assert_allclose(ft.smooth_crops(squares, has_face, 5), squares)  # jump > side/2
    has_face[3] = False
    squares[3] = np.nan
    out = ft.smooth_crops(squares, has_face, 5)
    assert np.isnan(out[3]).all() and np.isfinite(np.delete(out, 3, axis=0)).all()


@needs_mtcnn
def test_video_without_any_face_is_an_error(tmp_path):
    frames = hv.drifting_astronaut(3, cutaways=(0, 1, 2))
    path = hv.write_clip(tmp_path / "landscape.mp4", frames)
    info = vs.probe_video(path)
    with pytest.raises(ft.NoFaceInVideoError, match="no face found in any of the 3 frames"):
        ft.track_faces(vs.iter_video(path, 2, info), info.fps, face_backend="mtcnn",
                       name=str(path))


def test_none_backend_takes_a_box_or_the_whole_frames(tmp_path):
    frames = hv.drifting_astronaut(3)
    path = hv.write_clip(tmp_path / "still.mp4", frames)
    track = ft.track_faces(vs.iter_video(path, 2), 25.0, face_backend="none",
                           box=(40, 40, 140, 140))
    assert track.has_face.all() and track.backend == "none"
    np.testing.assert_allclose(track.M_o2c[0], track.M_o2c[2])
    # without a box every whole frame is the face, centred in the crop, as for a photo
    ticks = []
    whole = ft.track_faces(vs.iter_video(path, 2), 25.0, face_backend="none",
                           progress=lambda done, total: ticks.append((done, total)),
                           expected_frames=3)
    assert len(whole) == 3 and whole.has_face.all() and whole.backend == "none"
    assert whole.times.shape == (3,) and ticks[-1] == (3, 3)
    expected = letterbox_o2c(200, 232, 512)
    for m in whole.M_o2c:
        np.testing.assert_allclose(m, expected)
