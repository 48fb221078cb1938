"""Pipeline composition on tiny real-architecture models: shapes, streaming, chunk invariance."""
from __future__ import annotations

from dataclasses import replace

import av
import numpy as np
import pytest
import torch

import helpers_pipeline as hp
from helpers_precision import assert_float32_close, to_float64
from joyvasa_core import pipeline
from joyvasa_core.audio import prepare_waveform
from joyvasa_core.config import AUDIO_PAD_AFTER, AUDIO_PAD_BEFORE, AUDIO_SAMPLE_RATE
from joyvasa_core.driving import DrivingSettings, compose_photo_keypoints
from joyvasa_core.model_files import ModelFilesError
from joyvasa_core.motion import MotionSequence, MotionStream
from joyvasa_core.settings import MotionSettings
from joyvasa_core.silence import NO_GATE
from joyvasa_core.sources import PhotoSource, motion_from_video, open_frames
from joyvasa_core.video import VideoWriterError

FACE_BOX = (60, 30, 150, 130)      # x0, y0, x1, y1 in the photo below (pixels)
FAST_MOTION = MotionSettings(sampler="ddim", steps=2, seed=3)


@pytest.fixture(scope="module")
def models() -> pipeline.JoyVASAModels:
    return hp.fast_models()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo with odd height and width: [257, 199, 3] uint8."""
    import skimage.data
    from skimage.transform import resize

    image = resize(skimage.data.astronaut()[:400, 40:350], (257, 199), anti_aliasing=True)
    return (image * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def face(models, photo) -> PhotoSource:
    return pipeline.extract_face(models, photo, face_backend="none", box=FACE_BOX)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return hp.speech_like(1.3)


@pytest.fixture(scope="module")
def motion(models, speech) -> MotionSequence:
    return pipeline.audio_to_motion(models, speech, 16000, FAST_MOTION, silence=NO_GATE)


def test_resolve_device_and_dtype():
    assert pipeline.resolve_device("cpu") == torch.device("cpu")
    assert pipeline.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert pipeline.resolve_dtype("fp16", "cpu") == torch.float16
    assert pipeline.resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        pipeline.resolve_dtype("fp8", "cpu")
    expected = "cuda" if torch.cuda.is_available() else \
        "mps" if torch.backends.mps.is_available() else "cpu"
    assert pipeline.resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pipeline.resolve_device("cuda")


def test_extract_face(face, photo):
    assert face.feature_3d.shape[:2] == (1, 4) and face.x_s.shape == (1, 21, 3)
    assert face.x_s.dtype == torch.float32
    assert torch.allclose(face.x_s, face.source.transform())
    assert face.image.shape == photo.shape and face.image.dtype == torch.float32
    assert torch.equal((face.image * 255).round().to(torch.uint8), torch.from_numpy(photo))
    # The crop is placed around the box: the box centre maps into the crop's middle third.
    centre = np.array([(FACE_BOX[0] + FACE_BOX[2]) / 2, (FACE_BOX[1] + FACE_BOX[3]) / 2, 1.0])
    x, y, _ = face.crop.M_o2c @ centre
    assert 512 / 3 < x < 2 * 512 / 3 and 512 / 3 < y < 2 * 512 / 3


def test_audio_to_motion_length_and_seed(models, speech, motion):
    n16 = prepare_waveform(speech, 16000).shape[-1]
    assert len(motion) == int((n16 + AUDIO_PAD_BEFORE + AUDIO_PAD_AFTER) / AUDIO_SAMPLE_RATE * 25)
    assert motion.fps == 25
    again = pipeline.audio_to_motion(models, speech, 16000, FAST_MOTION, silence=NO_GATE)
    other = pipeline.audio_to_motion(models, speech, 16000, replace(FAST_MOTION, seed=4),
                                     silence=NO_GATE)
    assert torch.equal(again.exp, motion.exp)
    assert not torch.allclose(other.exp, motion.exp)


def test_pose_and_expression_scale(models, speech, motion):
    frozen = pipeline.audio_to_motion(models, speech, 16000,
                                      replace(FAST_MOTION, pose_scale=0.0, expression_scale=0.5),
                                      silence=NO_GATE)
    for name in ("pitch", "yaw", "roll", "t"):
        value = getattr(frozen, name)
        assert torch.allclose(value, value[:1].expand_as(value))
    half = motion.exp[:1] + 0.5 * (motion.exp - motion.exp[:1])
    assert torch.equal(frozen.exp, half)                # the same float32 ops as MotionSequence.rescaled
    assert torch.equal(frozen.scale, motion.scale)


@pytest.fixture
def gpu_chunking(monkeypatch):
    """Chunks of the asked size on this CPU too, as on a GPU (the CPU rule is 1 frame)."""
    from joyvasa_core import render

    monkeypatch.setattr(render, "CPU_CHUNK_FRAMES", 64)


def test_iter_frames_chunks_are_independent_of_batch_size(models, face, motion, gpu_chunking):
    driving = DrivingSettings()   # expression-friendly, relative, stitching: all frame-0 based
    short = motion[:11]
    one = torch.cat(list(pipeline.iter_frames(models, face, short, driving, batch_size=11,
                                              paste=False)))
    chunks = list(pipeline.iter_frames(models, face, short, driving, batch_size=4, paste=False))
    assert [c.shape[0] for c in chunks] == [4, 4, 3]
    assert one.shape == (11, hp.FAST_RENDER_SIZE, hp.FAST_RENDER_SIZE, 3)
    # ... and the keypoints are those of the whole sequence composed at once.
    retarget = {"stitching": models.liveportrait.stitching, "lip": models.liveportrait.lip}
    x_d = compose_photo_keypoints(face.source, face.x_s, short, driving, retarget)
    from joyvasa_core.render import render
    crops = render(models.liveportrait.warping_module, models.liveportrait.spade_generator,
                   face.feature_3d, face.x_s, x_d, batch_size=11)
    # conv batch reordering, bounded by the renderer's own float32 error (float64 recomputation)
    w64, g64 = to_float64(models.liveportrait.warping_module), to_float64(models.liveportrait.spade_generator)
    with torch.inference_mode():
        one64 = g64(w64(*to_float64((face.feature_3d, x_d, face.x_s)))["out"]).permute(0, 2, 3, 1)
    assert_float32_close(torch.cat(chunks), one, one64)
    assert_float32_close(crops.permute(0, 2, 3, 1), one, one64)


def test_iter_frames_paste_back_progress_and_cancel(models, face, motion, photo, gpu_chunking):
    calls = []
    frames = list(pipeline.iter_frames(models, face, motion[:9], batch_size=4,
                                       progress=lambda d, t: calls.append((d, t))))
    assert calls == [(0, 9), (4, 9), (8, 9), (9, 9)]
    assert [f.shape for f in frames] == [(4, 258, 200, 3)] * 2 + [(1, 258, 200, 3)]
    photo_t = torch.from_numpy(photo).float() / 255
    for chunk in frames:
        # Away from the crop's footprint the photo is untouched, bit for bit.
        bottom = photo_t[None, 235:257].expand(chunk.shape[0], -1, -1, -1)
        assert torch.equal(chunk[:, 235:257, :199], bottom)
        assert (chunk[:, 40:120, 70:140] - photo_t[40:120, 70:140]).abs().mean() > 0.02

    def cancel(done, total):
        if done >= 4:
            raise KeyboardInterrupt

    rendered = 0
    with pytest.raises(KeyboardInterrupt):
        for chunk in pipeline.iter_frames(models, face, motion, batch_size=4, progress=cancel):
            rendered += chunk.shape[0]
    assert rendered == 0   # cancelled while finishing the first chunk


def test_cpu_renders_one_frame_per_chunk_so_a_cancel_is_seen_after_every_frame(models, face, motion):
    from joyvasa_core.render import CPU_CHUNK_FRAMES, frames_per_chunk

    assert CPU_CHUNK_FRAMES == 1
    assert frames_per_chunk("cpu", torch.float32, 8) == 1
    assert frames_per_chunk("cuda", torch.float16, 8) == 8      # GPUs keep the asked size
    calls = []
    chunks = list(pipeline.iter_frames(models, face, motion[:5], batch_size=8, paste=False,
                                       progress=lambda d, t: calls.append(d)))
    assert [c.shape[0] for c in chunks] == [1] * 5
    assert calls == [0, 1, 2, 3, 4, 5]

    def cancel(done, total):
        if done >= 1:
            raise KeyboardInterrupt

    rendered = []
    with pytest.raises(KeyboardInterrupt):
        for chunk in pipeline.iter_frames(models, face, motion, batch_size=8, progress=cancel):
            rendered.append(chunk)
    assert rendered == []    # stopped right after the first frame, not after a chunk of 8


def test_render_to_file_streams_video_and_audio(tmp_path, models, face, motion, speech):
    out = pipeline.render_to_file(models, face, motion, speech, 16000, tmp_path / "o.mp4",
                                  DrivingSettings.cli(), batch_size=8)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert container.streams.audio[0].codec_context.name == "aac"
        assert (video.height, video.width) == (258, 200)
        assert sum(1 for _ in container.decode(video=0)) == len(motion)


def test_motion_stream_chunks_join_to_the_rescaled_whole(models, speech):
    settings = replace(FAST_MOTION, pose_scale=0.3, expression_scale=1.7)
    stream = pipeline.audio_motion_stream(models, speech, 16000, settings)
    chunks = list(stream)
    assert len(chunks) > 1 and sum(map(len, chunks)) == stream.n_frames
    assert len(chunks) == stream.windows                # one chunk per sampled window
    whole = pipeline.audio_to_motion(models, speech, 16000, settings)
    joined = MotionSequence.cat(chunks)
    for name in ("exp", "t", "yaw", "scale"):
        assert torch.equal(getattr(joined, name), getattr(whole, name)), name


def test_iter_frames_renders_a_stream_of_chunks_like_the_whole(models, face, motion, gpu_chunking):
    """Frame 0 of the first chunk is the reference of every chunk: same frames as the whole
    sequence (up to conv batch reordering), each chunk rendered as soon as it is read."""
    short = motion[:13]
    whole = torch.cat(list(pipeline.iter_frames(models, face, short, batch_size=4, paste=False)))
    read = []

    def chunks():
        for a, b in ((0, 5), (5, 5), (5, 7), (7, 13)):
            read.append(b)
            yield short[a:b]

    calls = []
    stream = MotionStream(chunks(), fps=short.fps, n_frames=13)
    frames = pipeline.iter_frames(models, face, stream, batch_size=4, paste=False,
                                  progress=lambda d, t: calls.append((d, t)))
    first = next(frames)
    assert read == [5] and first.shape[0] == 4          # rendering started after the first chunk
    streamed = torch.cat([first, *frames])
    assert calls == [(0, 13), (4, 13), (5, 13), (7, 13), (11, 13), (13, 13)]
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=0)
    # The expression-friendly multiplier comes from frame 0: a different frame 0 changes the frames.
    shifted = torch.cat(list(pipeline.iter_frames(models, face, short[1:5], batch_size=4, paste=False)))
    assert (shifted - whole[1:5]).abs().max() > 1e-3


def test_render_to_file_from_a_stream_of_chunks(tmp_path, models, face, motion, speech):
    chunks = (motion[a:a + 10] for a in range(0, len(motion), 10))
    stream = MotionStream(chunks, fps=motion.fps, n_frames=len(motion))
    tapped = []
    out = pipeline.render_to_file(models, face, stream, speech, 16000, tmp_path / "s.mp4", batch_size=8,
                                  on_keypoints=lambda a, b, x_d: tapped.append((a, b, x_d.cpu())))
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert float(video.average_rate) == motion.fps
        assert sum(1 for _ in container.decode(video=0)) == len(motion)
    # on_keypoints saw every chunk's driving keypoints, in order, before it rendered
    assert [a for a, _, _ in tapped] == [0, *(b for _, b, _ in tapped[:-1])] and tapped[-1][1] == len(motion)
    # (float32 GEMM blocking of the stitching MLP differs with the batch: a few ulps of |x| ~ 1)
    torch.testing.assert_close(torch.cat([x for _, _, x in tapped]),
                               pipeline.driving_keypoints(models, face, motion), atol=1e-5, rtol=0)
    # an empty stream: a clear error, and no file left behind
    with pytest.raises(VideoWriterError, match="no frames"):
        pipeline.render_to_file(models, face, MotionStream(iter(()), fps=motion.fps), speech, 16000,
                                tmp_path / "e.mp4")
    assert not (tmp_path / "e.mp4").exists()


def test_motion_from_video_gives_a_usable_sequence(models, photo, face):
    shifted = np.roll(photo, 3, axis=1)
    frames = torch.from_numpy(np.stack([photo, photo, shifted])).float() / 255
    video = open_frames(models.liveportrait, frames, 25.0, None, face_backend="none",
                        models_dir=models.models_dir)
    seq = motion_from_video(video, batch_size=2)
    assert isinstance(seq, MotionSequence) and len(seq) == 3 and seq.fps == 25
    whole = pipeline.extract_face(models, photo, face_backend="none")   # same crop as the video's
    torch.testing.assert_close(seq.exp[:1], whole.source.exp)
    torch.testing.assert_close(seq.yaw[:1], whole.source.yaw)
    assert torch.equal(seq.exp[0], seq.exp[1]) and not torch.equal(seq.exp[0], seq.exp[2])
    frames_out = torch.cat(list(pipeline.iter_frames(models, face, seq, batch_size=3, paste=False)))
    assert frames_out.shape[0] == 3


def test_load_models_from_official_tree(tmp_path):
    root = hp.write_fast_pretrained_weights(tmp_path / "pretrained_weights")
    with hp.fast_liveportrait_build():
        loaded = pipeline.load_models(root, download=False, device="cpu", precision="auto")
    assert loaded.dtype == torch.float32 and loaded.variant == "human"
    assert loaded.models_dir == root and loaded.template is not None
    assert loaded.motion_generator.args.n_motions == 10
    (root / "JoyVASA" / "motion_template" / "motion_template.pkl").unlink()
    with pytest.raises(ModelFilesError, match="motion_template.pkl"):
        pipeline.load_models(root, download=False, device="cpu")


def test_edits_are_evaluated_per_chunk_and_show_on_frame_0(models, face, motion):
    from joyvasa_core.edits import build_edits

    driving = DrivingSettings()   # expression-friendly + stitching: edits go in before both
    short = motion[:11]
    edits = build_edits("smile: 0s=0, 0.3s=1.0 ease-in-out; rotate_yaw=4", "0.1", seed=1)
    chunks = list(pipeline.iter_driving_keypoints(models, face, short, driving, batch_size=4,
                                                  edits=edits))
    assert [(a, b) for a, b, _, _ in chunks] == [(0, 4), (4, 8), (8, 11)]
    retarget = {"stitching": models.liveportrait.stitching, "lip": models.liveportrait.lip}
    whole = compose_photo_keypoints(face.source, face.x_s, short, driving, retarget,
                                    edit=edits.at_frames(torch.arange(11), short.fps))
    # float32 GEMM blocking of the stitching MLP differs with the batch: a few ulps of |x| ~ 1
    torch.testing.assert_close(torch.cat([x for _, _, _, x in chunks]), whole, atol=1e-5, rtol=0)
    plain = pipeline.driving_keypoints(models, face, short, driving)
    assert (torch.cat([x for _, _, _, x in chunks]) - plain).abs().amax(dim=(1, 2)).min() > 1e-3
    first = next(pipeline.iter_frames(models, face, short[:2], driving, batch_size=2, paste=False,
                                      edits=edits))
    unedited = next(pipeline.iter_frames(models, face, short[:2], driving, batch_size=2, paste=False))
    assert (first[0] - unedited[0]).abs().max() > 1e-3


def test_expression_from_a_reference_photo(models, face, motion):
    """M on a reference face; its expression minus the source's lands outside the lips."""
    import skimage.data

    from joyvasa_core.config import LIP_INDICES
    from joyvasa_core.edits import Edits, ExpressionOffset

    reference = pipeline.extract_face(models, skimage.data.chelsea(), face_backend="none")
    offset = ExpressionOffset.from_faces(reference.source, face.source, strength=0.8)
    driving = DrivingSettings(driving_option="pose-friendly", flag_stitching=False)
    short = motion[:6]
    edited = pipeline.driving_keypoints(models, face, short, driving,
                                        edits=Edits(offset_tracks=(offset,)))
    plain = pipeline.driving_keypoints(models, face, short, driving)
    scale = face.source.scale * short.scale / short.scale[:1]            # [T, 1]
    expected = 0.8 * (reference.source.exp - face.source.exp)[0]
    expected[list(LIP_INDICES)] = 0
    torch.testing.assert_close(edited - plain, scale[..., None] * expected, rtol=0, atol=2e-6)
