"""Families of bad inputs of the headless command (issue 23), each through ``cli.main``:
an output that is an input, every numeric option out of range, an unusable models folder,
an unusable source video, the first run offline, a full disk. Each stops before the work
it would spoil, with one line naming the cause and the fix, and destroys nothing.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import os
import socket
import time
from pathlib import Path

import av
import huggingface_hub
import numpy as np
import pytest
from PIL import Image

from helpers_cli import (copy_models, error_line, error_lines, fails_early, fails_loading, photo_job,
                         run, write_photo_and_speech)
from joyvasa_core import model_files, options
from joyvasa_core.option_checks import MAX_SEED


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The photo and speech, a short clip of the photo, a saved motion, a reference photo."""
    folder = tmp_path_factory.mktemp("in")
    found = write_photo_and_speech(folder)
    clip = folder / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        photo = np.asarray(Image.open(found["photo"]).convert("RGB"))[::2, ::2]
        for shift in range(5):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(
                np.ascontiguousarray(np.roll(photo, shift, axis=1)), format="rgb24")))
        out.mux(stream.encode(None))
    motion = folder / "motion.safetensors"
    from safetensors.numpy import save_file

    save_file({"exp": np.zeros((4, 63), np.float32)}, str(motion))
    reference = folder / "reference.png"
    reference.write_bytes(found["photo"].read_bytes())
    return {**found, "video": clip, "motion": motion, "reference": reference}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ 5. the first run offline

def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


def test_first_run_without_network_fails_fast_with_the_list(tmp_path, inputs, monkeypatch,
                                                             capsys):
    """No --models-dir, an empty default folder, and a Hugging Face endpoint that refuses
    connections: one probe, no retries, the missing files one per line, then the commands."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    port = _closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    first_run = tmp_path / "cache" / "pretrained_weights"
    monkeypatch.setenv(model_files.MODELS_DIR_ENV, str(first_run))
    argv = photo_job(inputs, tmp_path / "o.mp4", "unused")
    del argv[argv.index("--models-dir"):argv.index("--models-dir") + 2]
    start = time.perf_counter()
    code, out, err = run(argv, capsys)
    seconds = time.perf_counter() - start
    assert seconds < 5, f"the offline first run took {seconds:.1f} s"
    lines = error_lines(code, err)
    files = model_files.required_files()
    assert lines[0] == (f"error: {len(files)} model file(s) missing and cannot be downloaded: "
                        f"http://127.0.0.1:{port} cannot be reached: Connection refused:")
    listed = lines[1:1 + len(files)]
    assert [line.split(":")[0] for line in listed] == [f"  - {f.slot}" for f in files]
    assert all(str(first_run) in line for line in listed)
    commands = lines[2 + len(files):-1]
    assert commands and all(c.startswith("  huggingface-cli download ") for c in commands)
    assert lines[-1] == "or let JoyVASA download them on first use while online."
    assert "retry" not in (out + err).lower()
