"""The 24 bad inputs of the headless command: each exits non-zero with one line naming
the cause and the fix, with no traceback, and nothing in the bad file is executed.

Cheap problems (options, output paths, the photo, the speech) must be found before any
model loads: those cases point ``--models-dir`` at a folder that does not exist, so a
check that came after loading would report the missing models instead.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import helpers_checkpoints as hcp
import helpers_pipeline as hp
from helpers_cli import (copy_models, error_lines, fails_early, fails_loading, photo_job, run,
                         write_photo_and_speech, write_wav)
from joyvasa_core import model_files

pytestmark = pytest.mark.usefixtures("offline")


class _Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return write_photo_and_speech(tmp_path_factory.mktemp("in"))


# ------------------------------------------------------------------------------ options

def test_folder_as_output(tmp_path, inputs, capsys):
    folder = tmp_path / "renders"
    folder.mkdir()
    line = fails_early(capsys, inputs, tmp_path, output=folder)
    assert "--output" in line and "is a folder" in line and "talking.mp4" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_cfg_scale_not_a_usable_number(tmp_path, inputs, value, capsys):
    line = fails_early(capsys, inputs, tmp_path, "--cfg-scale", value)
    assert "--cfg-scale" in line


@pytest.mark.parametrize("value", ["-3", "0"])
def test_steps_below_one(tmp_path, inputs, value, capsys):
    line = fails_early(capsys, inputs, tmp_path, steps=value)
    assert "--steps must be >= 1" in line


def test_output_under_a_file(tmp_path, inputs, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    line = fails_early(capsys, inputs, tmp_path, output=blocker / "o.mp4")
    assert "is a file, not a folder" in line


# ------------------------------------------------------------------------------- images

def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height (a decompression bomb), with tiny data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_png(tmp_path, inputs, capsys):
    bomb = _png_declaring(tmp_path / "bomb.png", 40000, 40000)
    line = fails_early(capsys, inputs, tmp_path, image=bomb)
    assert "bomb.png" in line and "too large" in line


def test_one_pixel_image(tmp_path, inputs, capsys):
    tiny = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    line = fails_early(capsys, inputs, tmp_path, image=tiny)
    assert "dot.png" in line and "1x1" in line and "larger photo" in line


def test_folder_as_image(tmp_path, inputs, capsys):
    line = fails_early(capsys, inputs, tmp_path, image=tmp_path)
    assert "is a folder, not an image file" in line


def test_not_an_image(tmp_path, inputs, capsys):
    fake = tmp_path / "photo.png"
    fake.write_text("this is not a picture")
    line = fails_early(capsys, inputs, tmp_path, image=fake)
    assert "photo.png" in line and "not an image" in line


# -------------------------------------------------------------------------------- audio

def test_video_without_audio_track(tmp_path, inputs, capsys):
    clip = tmp_path / "silent_movie.mp4"
    with av.open(str(clip), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    line = fails_early(capsys, inputs, tmp_path, audio=clip)
    assert "silent_movie.mp4 has no audio stream" in line and "soundtrack" in line


def test_png_renamed_to_wav(tmp_path, inputs, capsys):
    fake = tmp_path / "speech.wav"
    shutil.copy(inputs["photo"], fake)
    line = fails_early(capsys, inputs, tmp_path, audio=fake)
    assert "speech.wav" in line


def test_nan_samples(tmp_path, inputs, capsys):
    wave = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    wave[100:200] = np.nan
    line = fails_early(capsys, inputs, tmp_path, audio=write_wav(tmp_path / "nan.wav", wave))
    assert "NaN" in line and "re-export" in line


def test_one_millisecond_of_audio(tmp_path, inputs, capsys):
    blip = write_wav(tmp_path / "blip.wav", (np.ones(16) * 8000).astype(np.int16))
    line = fails_early(capsys, inputs, tmp_path, audio=blip)
    assert "1.0 ms" in line and "shorter than one video frame" in line


def test_empty_audio(tmp_path, inputs, capsys):
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16))
    line = fails_early(capsys, inputs, tmp_path, audio=empty)
    assert "empty.wav" in line and "no audio samples" in line


def test_silence_is_named(tmp_path, inputs, capsys):
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(16000, np.int16))
    line = fails_early(capsys, inputs, tmp_path, audio=quiet)
    assert "silent" in line


# -------------------------------------------------------------------------- checkpoints

def test_no_models_folder(tmp_path, inputs, capsys):
    code, _, err = run(photo_job(inputs, tmp_path / "o.mp4", tmp_path / "nowhere"), capsys)
    text = "\n".join(error_lines(code, err))
    assert str(tmp_path / "nowhere") in text and "appearance_feature_extractor.pth" in text


F_FILE = Path("liveportrait/base_models/appearance_feature_extractor.pth")


@pytest.mark.parametrize("relative", [F_FILE,
                                      Path(model_files.MOTION_GENERATOR_DIR) / model_files.MOTION_GENERATOR_FILE,
                                      Path(model_files.MOTION_TEMPLATE_DIR) / model_files.MOTION_TEMPLATE_FILE])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, models_dir, inputs, relative, capsys):
    tree = copy_models(models_dir, tmp_path)
    marker = tmp_path / "pwned"
    payload = {"model": _Evil(marker)} if relative.suffix == ".pt" else _Evil(marker)
    if relative.suffix == ".pkl":
        (tree / relative).write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, tree / relative)
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert relative.name in line
    assert not marker.exists()
    assert not (tmp_path / "o.mp4").exists()


def test_truncated_checkpoint(tmp_path, models_dir, inputs, capsys):
    tree = copy_models(models_dir, tmp_path)
    path = tree / "liveportrait/base_models/spade_generator.pth"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert "spade_generator.pth" in line


def test_zero_byte_checkpoint(tmp_path, models_dir, inputs, capsys):
    tree = copy_models(models_dir, tmp_path)
    (tree / F_FILE).write_bytes(b"")
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert "appearance_feature_extractor.pth" in line and "empty" in line


def test_checkpoint_in_the_wrong_slot(tmp_path, models_dir, inputs, capsys):
    tree = copy_models(models_dir, tmp_path)
    base = tree / "liveportrait/base_models"
    shutil.copy(base / "motion_extractor.pth", base / "warping_module.pth")
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert "warping_module.pth" in line and "motion_extractor" in line


def test_motion_generator_without_model_weights(tmp_path, models_dir, inputs, capsys):
    tree = copy_models(models_dir, tmp_path)
    path = tree / model_files.MOTION_GENERATOR_DIR / model_files.MOTION_GENERATOR_FILE
    torch.save({"args": argparse.Namespace(n_motions=100), "iter": 3}, path)
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert path.name in line and "'model'" in line


def test_template_with_wrong_sizes(tmp_path, models_dir, inputs, capsys):
    tree = copy_models(models_dir, tmp_path)
    template = hcp.make_motion_template()
    template["mean_exp"] = template["mean_exp"][:10]
    path = tree / model_files.MOTION_TEMPLATE_DIR / model_files.MOTION_TEMPLATE_FILE
    hcp.write_motion_template(path, template)
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert path.name in line and "mean_exp" in line


def test_no_hubert_folder_offline(tmp_path, models_dir, inputs, capsys):
    tree = copy_models(models_dir, tmp_path)
    shutil.rmtree(tree / "chinese-hubert-base")
    with hp.fast_liveportrait_build():
        code, _, err = run(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    lines = error_lines(code, err)     # the folder's files, one per line
    assert sum("chinese-hubert-base" in line and str(tree) in line for line in lines) >= 3


def test_good_inputs_still_render(tmp_path, models_dir, inputs, capsys):
    """The same arguments with nothing broken: the checks above reject only what is bad."""
    out = tmp_path / "o.mp4"
    with hp.fast_liveportrait_build():
        code, _, err = run(photo_job(inputs, out, models_dir), capsys)
    assert code == 0, err
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames > 0 and container.streams.audio
