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
from joyvasa_core.job import partial_path
from joyvasa_core.option_checks import MAX_SEED

pytestmark = pytest.mark.usefixtures("offline")


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


# ------------------------------------------------- 1. an output that is an input of the job

#: (input key, the option that reads it, the output option written over it)
SAME_FILE_CASES = [
    ("photo", "--image", "--output"),
    ("speech", "--audio", "--output"),
    ("video", "--video", "--output"),
    ("motion", "--pose-from", "--save-motion"),
    ("reference", "--expression-from", "--save-keypoints"),
    ("photo", "--image", "--save-motion"),
]


def _spellings(path: Path, tmp_path: Path) -> dict[str, Path]:
    """The same file under other names: as given, through a symlink, a hard link, via '..'."""
    link = tmp_path / "link" / path.name
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(path)
    hard = tmp_path / f"hard{path.suffix}"
    os.link(path, hard)
    return {"same": path, "symlink": link, "hardlink": hard,
            "dotdot": path.parent / ".." / path.parent.name / path.name}


@pytest.mark.parametrize("spelling", ["same", "symlink", "hardlink", "dotdot"])
@pytest.mark.parametrize("key, reader, writer", SAME_FILE_CASES)
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
        tmp_path, inputs, capsys, key, reader, writer, spelling):
    source = tmp_path / inputs[key].name          # a copy per case: hard links need one folder
    source.write_bytes(inputs[key].read_bytes())
    before = _digest(source)
    target = _spellings(source, tmp_path)[spelling]
    argv = photo_job(inputs, tmp_path / "o.mp4", tmp_path / "nowhere")
    if reader in ("--image", "--audio"):
        argv[argv.index(reader) + 1] = source
    elif reader == "--video":
        argv[argv.index("--image"):argv.index("--image") + 2] = ["--video", source]
    else:
        argv += [reader, source]
    if writer == "--output":
        argv[argv.index("--output") + 1] = target
    else:
        argv += [writer, target]
    code, _, err = run(argv, capsys)
    line = error_line(code, err)
    assert f"error: {writer} {target} is the {reader} input file" in line
    assert "would destroy the input. Choose another output path." in line
    assert "nowhere" not in line                      # refused before the models load
    assert _digest(source) == before


@pytest.mark.parametrize("first, second", [("--output", "--save-motion"),
                                           ("--save-motion", "--save-keypoints")])
def test_two_outputs_on_one_file_are_refused(tmp_path, inputs, capsys, first, second):
    out = tmp_path / "out" / "same.file"
    other_spelling = tmp_path / "out" / "." / "same.file"
    extra = [] if first == "--output" else [first, out]
    argv = photo_job(inputs, out if first == "--output" else tmp_path / "o.mp4",
                     tmp_path / "nowhere", *extra, second, other_spelling)
    code, _, err = run(argv, capsys)
    line = error_line(code, err)
    assert f"{second} {other_spelling} is also the {first} file" in line
    assert not out.exists()


# --------------------------------------------------- 2. every numeric option out of range

#: Every numeric option of the headless command: bad values, and the range the line names.
NUMBERS = {
    "--seed": (["-1", str(MAX_SEED + 1)], f"in [0, {MAX_SEED}]"),
    "--face-index": (["-1"], ">= 0"),
    "--cfg-scale": (["-0.5"], ">= 0"),
    "--steps": (["0", "-3"], ">= 1"),
    "--pose-scale": ([], "a finite number"),
    "--expression-scale": ([], "a finite number"),
    "--smoothing": (["-0.1"], ">= 0"),
    "--driving-multiplier": ([], "a finite number"),
    "--blink-rate": (["0", "61"], "in (0, 60]"),
    "--blink-strength": (["-0.5", "2.5"], "in [0, 2]"),
    "--eye-contact": (["-1", "2.01"], "in [0, 2]"),
    "--expression-from-strength": ([], "a finite number"),
    "--batch-size": (["0"], ">= 1"),
    "--silence-threshold": (["-0.1", "1.01"], "in [0, 1]"),
    "--silence-ramp": (["-1", "11"], "in [0, 10]"),
}


def _numeric_options() -> dict[str, type]:
    """flag -> int or float, for every option of the parser that takes a number."""
    return {next(s for s in a.option_strings if s.startswith("--")): a.type
            for a in options.build_parser()._actions  # noqa: SLF001
            if a.type in (int, float)}


def test_the_table_covers_every_numeric_option():
    assert set(_numeric_options()) == set(NUMBERS)


def _cases():
    kinds = _numeric_options()
    for flag, (values, allowed) in NUMBERS.items():
        extra = ["nan", "inf", "-inf"] if kinds[flag] is float else []
        for value in values + extra:
            yield pytest.param(flag, value, allowed, id=f"{flag}={value}")


@pytest.mark.parametrize("flag, value, allowed", list(_cases()))
def test_a_number_out_of_range_names_the_flag_and_the_range(tmp_path, inputs, capsys,
                                                            flag, value, allowed):
    extra = [f"{flag}={value}"]
    if flag == "--expression-from-strength":
        extra += ["--expression-from", inputs["reference"]]
    line = fails_early(capsys, inputs, tmp_path, *extra)
    if value in ("nan", "inf", "-inf"):
        bound = "" if allowed == "a finite number" else f" {allowed}"
        assert line == f"error: {flag} must be a finite number{bound}, got {value}"
    else:
        assert line == f"error: {flag} must be {allowed}, got {value}"


def _diffusion_steps(models_dir: Path) -> int:
    """T of the tiny motion generator, from a full read of its file."""
    from joyvasa_core.checkpoints import read_motion_generator_file

    return int(read_motion_generator_file(model_files.resolve_motion_generator(models_dir))[0]
               ["n_diff_steps"])


@pytest.mark.parametrize("sampler, offset", [("ddim", 1), ("ddim", 1000), ("ddpm", -1)])
def test_steps_beyond_the_motion_generator_are_refused_before_it_loads(
        tmp_path, inputs, models_dir, capsys, sampler, offset):
    """The motion generator's T is read from its file's args (weights left on disk): a step
    count it cannot take stops before any model loads, naming the flag and the fix."""
    t = _diffusion_steps(models_dir)
    steps = t + offset
    argv = photo_job(inputs, tmp_path / "o.mp4", models_dir, "--sampler", sampler,
                     "--steps", str(steps))
    code, out, err = run(argv, capsys)
    line = error_line(code, err)
    assert "loading models" not in out, out
    if sampler == "ddim":
        assert line == (f"error: --steps must be in [1, {t}] (the motion generator's diffusion "
                        f"steps), got {steps}")
    else:
        assert line.startswith(f"error: --steps {steps} needs --sampler ddim: the official ddpm "
                               f"sampler runs all {t} steps"), line
    assert not (tmp_path / "o.mp4").exists()


def test_a_face_index_beyond_the_photos_faces_is_refused_before_the_models_load(
        tmp_path, inputs, models_dir, capsys):
    from joyvasa_core.face import mtcnn

    if not mtcnn.available():
        pytest.skip("the no-download face detector (mtcnn) is not installed")
    argv = photo_job(inputs, tmp_path / "o.mp4", models_dir, "--face-index", "3")
    argv[argv.index("--face-backend") + 1] = "mtcnn"
    code, out, err = run(argv, capsys)
    line = error_line(code, err)
    assert "loading models" not in out, out
    assert "face_index=3" in line and "has 1 detected face(s)" in line and "below 1" in line


@pytest.mark.parametrize("flag, text, words", [
    ("--expression", "smile=nan", "expected a value for 'smile'"),
    ("--expression", "smile=9", "smile=9 is outside the range -0.3..1.3"),
    ("--strength", "yaw=inf", "expected a value for 'yaw'"),
    ("--strength", "yaw=-1", "yaw=-1 is outside the range 0..3"),
    ("--blink", "1.5, -2s", "a time must be >= 0 seconds, got -2"),
])
def test_a_text_option_out_of_range_names_the_flag(tmp_path, inputs, capsys, flag, text, words):
    """Text options are judged while the arguments are parsed: one error line (exit 2),
    then the text with a caret under the mistake; no usage wall."""
    with pytest.raises(SystemExit) as info:
        run(photo_job(inputs, tmp_path / "o.mp4", tmp_path / "nowhere", f"{flag}={text}"),
            capsys)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "usage:" not in err
    assert err.startswith(f"error: argument {flag}: {words}")
    assert f"  {text}\n" in err and "^" in err


# ------------------------------------------------------------------ 7. a bad jobs-file row

def test_a_bad_jobs_file_row_gets_the_command_lines_line(tmp_path, inputs, capsys):
    """Rows of a batch go through the same checks: an output over an input (through a
    symlink) and a number out of range fail alone, with the headless command's line."""
    from joyvasa_core.batch import read_jobs

    link = tmp_path / "speech_link.wav"
    link.symlink_to(inputs["speech"])
    before = _digest(inputs["speech"])
    base = {"image": str(inputs["photo"]), "audio": str(inputs["speech"])}
    rows = [{**base, "output": str(link)},
            {**base, "output": "b.mp4", "blink_strength": "nan"},
            {**base, "output": "c.mp4", "seed": "-1"},
            {**base, "output": "d.mp4"}]
    jobs = tmp_path / "jobs.csv"
    columns = ["image", "audio", "output", "blink_strength", "seed"]
    jobs.write_text(",".join(columns) + "\n" + "".join(
        ",".join(row.get(c, "") for c in columns) + "\n" for row in rows))
    checked = read_jobs(jobs, tmp_path / "out", decode=False)
    assert [row.status for row in checked] == ["failed", "failed", "failed", ""]
    for row, extra in zip(checked, (["--output", link], ["--blink-strength=nan"], ["--seed=-1"])):
        argv = photo_job(inputs, tmp_path / "out" / rows[row.row - 1]["output"],
                         tmp_path / "nowhere", *extra)
        code, _, err = run(argv, capsys)
        assert error_line(code, err) == f"error: {row.error}"
    assert "is the --audio input file" in checked[0].error and _digest(inputs["speech"]) == before


def test_a_jobs_file_row_with_steps_beyond_the_motion_generator_fails_alone(
        tmp_path, inputs, models_dir, capsys):
    """The steps check reads the batch's models folder (``--models-dir`` of the batch)."""
    from joyvasa_core.batch import read_jobs

    t = _diffusion_steps(models_dir)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("image,audio,output,sampler,steps\n" + "".join(
        f"{inputs['photo']},{inputs['speech']},{name},ddim,{steps}\n"
        for name, steps in (("a.mp4", t + 1), ("b.mp4", t))))
    checked = read_jobs(jobs, tmp_path / "out", ["--models-dir", str(models_dir)])
    assert [row.status for row in checked] == ["failed", ""]
    code, _, err = run(photo_job(inputs, tmp_path / "o.mp4", models_dir, "--sampler", "ddim",
                                 "--steps", str(t + 1)), capsys)
    assert error_line(code, err) == f"error: {checked[0].error}"


# ------------------------------------------------------------------ 3. the models folder

def test_models_dir_that_is_a_file(tmp_path, inputs, capsys):
    line = fails_early(capsys, inputs, tmp_path, **{"models-dir": inputs["speech"]})
    assert line == (f"error: --models-dir {inputs['speech']} is a file; pass the "
                    "pretrained_weights folder")


def test_models_dir_without_the_files_lists_each_one_per_line(tmp_path, inputs, capsys):
    empty = tmp_path / "pretrained_weights"
    empty.mkdir()
    code, _, err = run(photo_job(inputs, tmp_path / "o.mp4", empty), capsys)
    lines = error_lines(code, err)
    files = model_files.required_files()
    assert lines[0] == (f"error: {len(files)} model file(s) missing and cannot be downloaded "
                        "because HF_HUB_OFFLINE is set:")
    for line, entry in zip(lines[1:], files):
        assert line.startswith(f"  - {entry.slot}: expected {empty / entry.relpath}")
    assert lines[1 + len(files)] == "Fix: download them into that folder, e.g."
    commands = lines[2 + len(files):-1]
    assert commands and all(c.startswith("  huggingface-cli download ") for c in commands)
    assert not (tmp_path / "o.mp4").exists()


def _edit_state_dict(path: Path, edit) -> None:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, path)


def _first_weight(state: dict) -> str:
    return next(k for k, v in state.items() if v.is_floating_point() and v.ndim > 1)


def _nan(state: dict) -> None:
    state[_first_weight(state)].view(-1)[3] = float("nan")


LIVEPORTRAIT_EDITS = {
    "missing": (lambda s: s.pop(_first_weight(s)), "1 missing keys"),
    "extra": (lambda s: s.update({"extra_layer.weight": s[_first_weight(s)].clone()}),
              "1 unexpected keys: extra_layer.weight"),
    "shape": (lambda s: s.update({_first_weight(s): s[_first_weight(s)][:1].clone()}),
              "1 shape mismatches"),
    "nan": (_nan, "1 tensor(s) hold NaN or infinite values"),
}


@pytest.mark.parametrize("problem", list(LIVEPORTRAIT_EDITS))
def test_a_liveportrait_checkpoint_with_bad_keys_or_weights_is_named(
        tmp_path, models_dir, inputs, capsys, problem):
    tree = copy_models(models_dir, tmp_path)
    path = tree / "liveportrait/base_models/warping_module.pth"
    edit, words = LIVEPORTRAIT_EDITS[problem]
    _edit_state_dict(path, edit)
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert f"{path} (warping_module):" in line and words in line
    assert "Fix: Download KwaiVGI/LivePortrait" in line
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("problem, words", [
    ("nan", "1 tensor(s) hold NaN or infinite values"),
    ("shape", "does not match the architecture its own args describe"),
])
def test_a_motion_generator_with_nan_or_misshaped_weights_is_named(
        tmp_path, models_dir, inputs, capsys, problem, words):
    import torch

    tree = copy_models(models_dir, tmp_path)
    path = tree / model_files.MOTION_GENERATOR_DIR / model_files.MOTION_GENERATOR_FILE
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    weights = checkpoint["model"]
    key = next(k for k in weights if k.startswith("denoising_net") and k.endswith(".weight")
               and weights[k].ndim > 1)
    if problem == "nan":
        weights[key].view(-1)[0] = float("inf")
    else:
        weights[key] = weights[key][:, :1].clone()
    assert isinstance(checkpoint["args"], argparse.Namespace)
    torch.save(checkpoint, path)
    line = fails_loading(photo_job(inputs, tmp_path / "o.mp4", tree), capsys)
    assert str(path) in line and words in line and key in line
    assert not (tmp_path / "o.mp4").exists()


# ------------------------------------------------------------- 4. an unusable source video

def _video_line(capsys, inputs, tmp_path, clip: Path, models: Path | None = None,
                *extra) -> str:
    argv = photo_job(inputs, tmp_path / "o.mp4", models or tmp_path / "nowhere", *extra)
    argv[argv.index("--image"):argv.index("--image") + 2] = ["--video", clip]
    code, _, err = run(argv, capsys)
    line = error_line(code, err, after_progress=True)   # the tracking's progress came first
    if models is None:
        assert "nowhere" not in line, f"the check came after model loading: {line}"
    assert not (tmp_path / "o.mp4").exists()
    return line


def _truncated(tmp_path: Path, inputs, faststart: bool) -> Path:
    import helpers_video as hv

    frames = hv.drifting_astronaut(40, step=1)[:, ::4, ::4].copy()
    whole = hv.write_clip(tmp_path / "whole.mp4", frames, faststart=faststart).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    return cut


def _zero_frames(tmp_path: Path, inputs) -> Path:
    import helpers_video as hv

    return hv.write_zero_frame_video(tmp_path / "empty.mkv")


def _audio_only(tmp_path: Path, inputs) -> Path:
    """The speech as AAC in an .mp4 container: a sound track and nothing else."""
    path = tmp_path / "voice.mp4"
    with av.open(str(inputs["speech"])) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for frame in src.decode(audio=0):
            frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _text(tmp_path: Path, inputs) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 20)
    return path


VIDEOS = {
    "truncated, index last": (lambda t, i: _truncated(t, i, False), "cut.mp4 cannot be decoded"),
    "truncated, index first": (lambda t, i: _truncated(t, i, True),
                               "cut.mp4 is truncated: its frames end after"),
    "zero frames": (_zero_frames, "empty.mkv has a video stream with zero frames"),
    "audio only": (_audio_only, "voice.mp4 has no video stream (is it an audio file?)"),
    "text named .mp4": (_text, "notes.mp4 cannot be decoded as a video"),
}


@pytest.mark.parametrize("kind", list(VIDEOS))
def test_an_unusable_video_fails_before_the_models_load(tmp_path, inputs, capsys, kind):
    make, words = VIDEOS[kind]
    line = _video_line(capsys, inputs, tmp_path, make(tmp_path, inputs))
    assert words in line


def test_a_video_without_any_face(tmp_path, inputs, models_dir, capsys):
    """Found while tracking (the detector must look at every frame), before any motion is
    sampled or any frame written."""
    import helpers_pipeline as hp
    import helpers_video as hv
    from joyvasa_core.face import mtcnn

    if not mtcnn.available():
        pytest.skip("the no-download face detector (mtcnn) is not installed")
    clip = hv.write_clip(tmp_path / "landscape.mp4", hv.drifting_astronaut(3, cutaways=(0, 1, 2)))
    with hp.fast_liveportrait_build():
        line = _video_line(capsys, inputs, tmp_path, clip, models_dir, "--face-backend", "mtcnn")
    assert "no face found in any of the 3 frames of" in line and "landscape.mp4" in line


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


# ------------------------------------------------------------------ 6. a full output disk

class _FillingContainer:
    """An output container on a disk that fills up: packets are written for real until the
    file holds some bytes, then the next mux fails with ENOSPC, as the kernel would say."""

    def __init__(self, container, path: Path, sizes: list[int]) -> None:
        self._container, self._path, self._sizes = container, path, sizes

    def mux(self, packets):
        self._container.mux(packets)
        size = self._path.stat().st_size if self._path.exists() else 0
        if size and packets:
            self._sizes.append(size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._path))

    def __getattr__(self, name):
        return getattr(self._container, name)


def test_a_full_disk_mid_render_removes_the_partial_file(tmp_path, inputs, models_dir,
                                                         monkeypatch, capsys):
    from joyvasa_core import video

    enter, sizes = video.VideoWriter.__enter__, []

    def on_a_small_disk(self):
        enter(self)
        self._container = _FillingContainer(self._container, self.path, sizes)
        return self

    monkeypatch.setattr(video.VideoWriter, "__enter__", on_a_small_disk)
    out = tmp_path / "renders" / "talking.mp4"
    line = fails_loading(photo_job(inputs, out, models_dir), capsys, after_progress=True)
    assert sizes and sizes[0] > 0                       # a partial file was on the disk
    assert line.startswith(f"error: no space left on the device while writing "
                           f"{partial_path(out)} (after ")
    assert line.endswith(" frames); the partial file was removed. Free some space or choose "
                         "an output folder on another disk.")
    assert not out.exists() and not partial_path(out).exists()
    # an earlier render under the same name outlives a failed one
    out.write_bytes(b"an earlier render")
    fails_loading(photo_job(inputs, out, models_dir), capsys, after_progress=True)
    assert out.read_bytes() == b"an earlier render" and not partial_path(out).exists()
