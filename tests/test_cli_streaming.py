"""The headless command streams whatever the options: its first frame is written after the
first motion window, and its progress lines (stderr, not a terminal) show it.

The official sampler (DDPM, every step of the tiny checkpoint's schedule) on 2.5 s of
speech: 7 windows of the tiny generator (10 frames each; the real generator's windows
are 100 frames, so this is the 28 s clip's case).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import helpers_pipeline as hp
from helpers_cli import progress_lines, run, write_wav
from helpers_video import drifting_astronaut, write_clip
from joyvasa_core.motion import MotionSequence

pytestmark = pytest.mark.usefixtures("offline")

FAST_RENDER = ["--device", "cpu", "--face-backend", "none", "--crop-only"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A photo, 2.5 s of speech-like sound and a saved 2 s motion to take the pose from."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("in")
    Image.fromarray(skimage.data.astronaut()[::4, ::4]).save(folder / "photo.png")
    write_wav(folder / "speech.wav", (hp.speech_like(2.5) * 32767).astype(np.int16))
    g = torch.Generator().manual_seed(1)
    pose = MotionSequence(exp=torch.randn(50, 21, 3, generator=g) * 0.01,
                          scale=1 + 0.01 * torch.randn(50, 1, generator=g),
                          t=0.01 * torch.randn(50, 3, generator=g),
                          pitch=5 * torch.randn(50, generator=g), yaw=5 * torch.randn(50, generator=g),
                          roll=torch.randn(50, generator=g))
    pose.save(folder / "pose.safetensors")
    return {"photo": folder / "photo.png", "speech": folder / "speech.wav",
            "pose": folder / "pose.safetensors"}


def assert_streamed(lines: list[tuple[str, int, int]], windows: int, frames: int) -> None:
    lines = [line for line in lines if line[0] != "frames tracked"]
    motion = [i for i, line in enumerate(lines) if line[0] == "motion"]
    written = [i for i, line in enumerate(lines) if line[0] == "frames"]
    assert [lines[i][1:] for i in motion] == [(w, windows) for w in range(1, windows + 1)]
    assert lines[written[-1]][1:] == (frames, frames)
    assert all(lines[i][1] > 0 for i in written)   # no line for the bar's start
    # the first frames were written before the last window was sampled
    assert written[0] < motion[-1], lines


def test_strength_and_pose_from_stream(models_dir, inputs, tmp_path, capsys):
    with hp.fast_liveportrait_build():
        code, out, err = run(["--image", inputs["photo"], "--audio", inputs["speech"],
                              "--output", tmp_path / "out.mp4", "--models-dir", models_dir,
                              "--strength", "yaw=0.5, lips=1.2", "--pose-from", inputs["pose"],
                              "--save-motion", tmp_path / "motion.safetensors",
                              "--save-keypoints", tmp_path / "kp.safetensors", *FAST_RENDER],
                             capsys)
    assert code == 0, err
    frames = len(MotionSequence.load(tmp_path / "motion.safetensors"))
    assert frames == 65                         # int((2.5 s * 16000 + 1920) / 640)
    assert_streamed(progress_lines(err), windows=7, frames=frames)
    from safetensors.torch import load_file

    assert load_file(tmp_path / "kp.safetensors")["x_d"].shape == (frames, 21, 3)
    assert "wrote" in out


def test_dubbing_streams(models_dir, inputs, tmp_path, capsys):
    video = write_clip(tmp_path / "clip.mp4", drifting_astronaut(20), fps=25.0)
    with hp.fast_liveportrait_build():
        code, out, err = run(["--video", video, "--audio", inputs["speech"],
                              "--output", tmp_path / "dub.mp4", "--models-dir", models_dir,
                              "--device", "cpu", "--face-backend", "none", "--crop-only",
                              "--strength", "lips=1.5"], capsys)
    assert code == 0, err
    assert_streamed(progress_lines(err), windows=7, frames=62)  # 2.5 s at 25 fps
