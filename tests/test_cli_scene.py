"""Conversation scenes through the headless command (issue 20): two faces from real photos,
real speech (espeak-ng) per speaker, the official-format tiny model files.

Two speakers on a photo (MP4 size, rate, frame count of the longest speech, AAC, pixels
far from the faces kept, each face changed, keypoints [2, T, 21, 3]), the RTTM form, a
two-face video, ``--list-faces``, and every bad input refused in one line before any
model loads, writing nothing.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import helpers_pipeline as hp
from helpers_cli import FAST, error_line, progress_lines, run
from helpers_video import espeak_wav, write_clip
from joyvasa_core.audio import load_audio_file, prepare_waveform
from joyvasa_core.config import AUDIO_PAD_AFTER, AUDIO_PAD_BEFORE, AUDIO_SAMPLE_RATE
from joyvasa_core.face import mtcnn
from helpers_pipeline import two_faces

pytestmark = [
    pytest.mark.skipif(not mtcnn.available(), reason="no-download face detector missing"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None,
                       reason="espeak-ng not installed (apt-get install -y espeak-ng)"),
    pytest.mark.usefixtures("offline"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The two-face canvas, a short and a longer utterance, an RTTM of the longer one."""
    folder = tmp_path_factory.mktemp("scene")
    photo = folder / "two.png"
    Image.fromarray(two_faces()).save(photo)
    short = espeak_wav(folder / "short.wav", "Hi.")
    long = espeak_wav(folder / "long.wav", "Yes, I agree.")
    rttm = folder / "turns.rttm"
    rttm.write_text("SPEAKER mix 1 0.00 0.40 <NA> <NA> alice <NA> <NA>\n"
                    "SPEAKER mix 1 0.40 0.60 <NA> <NA> bob <NA> <NA>\n")
    return {"photo": photo, "short": short, "long": long, "rttm": rttm, "folder": folder}


def _frames_of(speech: Path) -> int:
    """The official frame count of a speech file at 25 fps."""
    wave, rate = load_audio_file(speech)
    n16 = prepare_waveform(wave, rate).shape[-1]
    return int((n16 + AUDIO_PAD_BEFORE + AUDIO_PAD_AFTER) / AUDIO_SAMPLE_RATE * 25)


def _scene_argv(inputs, out, models, *extra):
    return ["--image", inputs["photo"], "--speaker", f"0={inputs['short']}",
            "--speaker", f"1={inputs['long']}", "--output", out, "--models-dir", models,
            "--face-backend", "mtcnn", *FAST, *extra]


def test_two_speakers_on_a_photo(tmp_path, inputs, models_dir, capsys):
    out, keypoints = tmp_path / "talk.mp4", tmp_path / "k.safetensors"
    with hp.fast_liveportrait_build():
        code, stdout, err = run(_scene_argv(inputs, out, models_dir,
                                            "--save-keypoints", keypoints), capsys)
    assert code == 0, err
    progress = progress_lines(err)
    assert "2 speakers" in stdout and "wrote" in stdout
    # the two speakers' motion windows are counted together, up to twice one speaker's
    windows = [(done, total) for label, done, total in progress if label == "motion"]
    assert [done for done, _ in windows] == list(range(1, len(windows) + 1))
    assert len(windows) % 2 == 0 and {total for _, total in windows} == {len(windows)}
    expected = _frames_of(inputs["long"])
    assert expected > _frames_of(inputs["short"])           # the clip lasts as the longest
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert audio.codec_context.name == "aac" and video.average_rate == 25
        assert (video.height, video.width) == (242, 452)    # 241 x 451 rounded up to even
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        audio_seconds = float(audio.duration * audio.time_base) if audio.duration else None
    assert len(frames) == expected
    if audio_seconds is not None:
        assert audio_seconds == pytest.approx(expected / 25, abs=0.1)
    canvas = two_faces().astype(np.int16)
    diff = np.abs(frames[:, :241, :451].astype(np.int16) - canvas)
    # far from both faces (the canvas strip between them, the bottom rows) only H.264 differs
    assert diff[:, :, 212:238].mean() < 2.0 and diff[:, 228:, :].mean() < 2.0
    # each face region changed (face boxes of the two photos, see --list-faces)
    assert diff[:, 60:130, 80:130].mean() > 5.0 and diff[:, 70:130, 320:365].mean() > 5.0

    from safetensors.torch import load_file

    saved = load_file(str(keypoints))
    assert saved["x_d"].shape == (2, expected, 21, 3) and saved["x_s"].shape == (2, 21, 3)
    assert not np.allclose(saved["x_d"][0].numpy(), saved["x_d"][1].numpy())


def test_the_rttm_form_writes_keypoints_of_each_speaker(tmp_path, inputs, models_dir, capsys):
    keypoints = tmp_path / "k.safetensors"
    argv = ["--image", inputs["photo"], "--audio", inputs["long"], "--turns", inputs["rttm"],
            "--speaker", "1=bob", "--speaker", "0=alice", "--save-keypoints", keypoints,
            "--models-dir", models_dir, "--face-backend", "mtcnn", *FAST]
    with hp.fast_liveportrait_build():
        code, _, err = run(argv, capsys)
    assert code == 0, err
    from safetensors.torch import load_file

    saved = load_file(str(keypoints))
    assert saved["x_d"].shape == (2, _frames_of(inputs["long"]), 21, 3)
    # speaker order is the --speaker order: speaker 0 is the right face (bob)
    x_s = saved["x_s"].numpy()
    assert not np.allclose(x_s[0], x_s[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.safetensors"]


def test_a_two_face_video_is_dubbed_at_its_rate_and_size(tmp_path, inputs, models_dir, capsys,
                                                          monkeypatch):
    from joyvasa_core.video_source import FrameReader

    from joyvasa_core import sources

    reads, passes = [], []
    real_read, real_pass = FrameReader.read, sources.iter_video
    monkeypatch.setattr(FrameReader, "read", lambda self, index: reads.append(len(index))
                        or real_read(self, index))
    monkeypatch.setattr(sources, "iter_video", lambda *a, **k: passes.append(a[0])
                        or real_pass(*a, **k))
    canvas = two_faces()
    clip = write_clip(tmp_path / "two.mp4", np.stack([np.roll(canvas, i, axis=1)
                                                      for i in range(6)]), fps=20.0)
    out = tmp_path / "dubbed.mp4"
    argv = ["--video", clip, "--speaker", f"0={inputs['short']}", "--speaker",
            f"1={inputs['short']}", "--output", out, "--models-dir", models_dir,
            "--face-backend", "mtcnn", *FAST]
    with hp.fast_liveportrait_build():
        code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "tracking 2 faces" in stdout
    wave, rate = load_audio_file(inputs["short"])
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.average_rate == 20 and (video.height, video.width) == (242, 452)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert len(frames) == int(wave.shape[-1] / rate * 20)        # the speech's length
    # both faces are tracked in one pass, and the two faces of a chunk share its decoded
    # frames: each output frame is decoded once
    assert len(passes) == 1 and sum(reads) == len(frames)
    # both faces changed against the clip's own frame 0 (the output's first frame shows it)
    diff = np.abs(frames[0, :241, :451].astype(np.int16) - canvas.astype(np.int16))
    assert diff[60:130, 80:130].mean() > 5.0 and diff[70:130, 320:365].mean() > 5.0
    assert diff[:, 212:238].mean() < 3.0


def test_list_faces_prints_them_left_to_right_and_writes_nothing(tmp_path, inputs, capsys):
    before = sorted(inputs["folder"].iterdir())
    code, stdout, err = run(["--image", inputs["photo"], "--list-faces", "--face-backend",
                             "mtcnn"], capsys)
    assert code == 0 and not err.strip(), err
    lines = stdout.splitlines()
    assert len(lines) == 2
    boxes = []
    for index, line in enumerate(lines):
        number, box, word, score = line.split()
        assert int(number) == index and word == "score" and 0 < float(score) <= 1
        boxes.append([int(v) for v in box.split(",")])
    assert boxes[0][0] < 210 < boxes[1][0]                     # astronaut left, cameraman right
    assert sorted(inputs["folder"].iterdir()) == before and not list(tmp_path.iterdir())
    # the video form reads the first frame
    clip = write_clip(tmp_path / "two.mp4", two_faces()[None].repeat(2, 0))
    code, stdout, _ = run(["--video", clip, "--list-faces", "--face-backend", "mtcnn"], capsys)
    assert code == 0 and len(stdout.splitlines()) == 2


# --------------------------------------------------------------------------- bad inputs

def _bad(inputs, tmp_path) -> dict[str, tuple[list, str]]:
    photo, short, long, rttm = (inputs[k] for k in ("photo", "short", "long", "rttm"))
    garbage = tmp_path / "garbage.rttm"
    garbage.write_text("SPEAKER mix 1 zero 0.4 <NA> <NA> alice <NA> <NA>\n")
    return {
        "missing face index": (["--speaker", f"0={short}", "--speaker", f"2={long}"],
                               "asks for face 2 but"),
        "box outside": (["--speaker", f"0={short}", "--speaker", f"400,10,470,90={long}"],
                        "is not inside"),
        "two on one face": (["--speaker", f"1={short}", "--speaker", f"1={long}"],
                            "are the same face"),
        "rttm lacks a speaker": (["--audio", long, "--turns", rttm, "--speaker", "0=alice",
                                  "--speaker", "1=carol"], "names no speaker carol"),
        "rttm does not parse": (["--audio", long, "--turns", garbage, "--speaker", "0=alice"],
                                "does not parse"),
        "speaker with audio": (["--audio", long, "--speaker", f"0={short}"],
                               "--speaker and --audio exclude each other"),
        "malformed speaker": (["--speaker", f"0:{short}"], "is not FACE=AUDIO"),
        "malformed face": (["--speaker", f"left={short}"], "neither a face index"),
        "missing audio": (["--speaker", f"0={short}", "--speaker", f"1={tmp_path / 'no.wav'}"],
                          "audio file not found"),
        "no speech at all": ([], "the speech is missing"),
        "turns without speakers": (["--audio", long, "--turns", rttm],
                                   "--turns needs --speaker"),
        "face index with speakers": (["--speaker", f"0={short}", "--face-index", "1"],
                                     "--face-index works with one speaker"),
    }


BAD = ["missing face index", "box outside", "two on one face", "rttm lacks a speaker",
       "rttm does not parse", "speaker with audio", "malformed speaker", "malformed face",
       "missing audio", "no speech at all", "turns without speakers", "face index with speakers"]


@pytest.mark.parametrize("case", BAD)
def test_a_bad_scene_gets_one_line_before_any_model_loads(tmp_path, inputs, capsys, case):
    extra, expected = _bad(inputs, tmp_path)[case]
    out = tmp_path / "out" / "o.mp4"
    argv = ["--image", inputs["photo"], *extra, "--output", out, "--models-dir",
            tmp_path / "nowhere", "--face-backend", "mtcnn", *FAST]
    code, _, err = run(argv, capsys)
    line = error_line(code, err)
    assert expected in line, line
    assert "nowhere" not in line                        # refused before the models load
    assert not out.parent.exists()                      # nothing written


def test_the_missing_face_error_lists_the_faces_found(tmp_path, inputs, capsys):
    argv = ["--image", inputs["photo"], "--speaker", f"5={inputs['short']}", "--output",
            tmp_path / "o.mp4", "--models-dir", tmp_path / "nowhere", "--face-backend", "mtcnn"]
    line = error_line(*run(argv, capsys)[::2])
    assert "has 2 detected face(s) (left to right: 0: " in line and "; 1: " in line


# ------------------------------------------------------------------ per-speaker edits

def _keypoints(inputs, tmp_path, models_dir, capsys, name, *extra):
    path = tmp_path / f"{name}.safetensors"
    argv = ["--image", inputs["photo"], "--speaker", f"0={inputs['short']}", "--speaker",
            f"1={inputs['short']}", "--save-keypoints", path, "--models-dir", models_dir,
            "--face-backend", "mtcnn", *FAST, *extra]
    with hp.fast_liveportrait_build():
        code, _, err = run(argv, capsys)
    assert code == 0, err
    from safetensors.torch import load_file

    return load_file(str(path))["x_d"].numpy()


def test_speaker_expression_and_strength_change_only_their_speaker(tmp_path, inputs, models_dir,
                                                                    capsys):
    plain = _keypoints(inputs, tmp_path, models_dir, capsys, "plain")
    # the same speech for both: the seeds (job seed + k) keep them from moving in lockstep
    assert not np.allclose(plain[0] - plain[0, :1], plain[1] - plain[1, :1])
    smiling = _keypoints(inputs, tmp_path, models_dir, capsys, "smile",
                         "--speaker-expression", "1=smile=1")
    np.testing.assert_array_equal(smiling[0], plain[0])
    assert np.abs(smiling[1] - plain[1]).max() > 1e-3
    still = _keypoints(inputs, tmp_path, models_dir, capsys, "still",
                       "--speaker-strength", "0=lips=0, expression=0")
    np.testing.assert_array_equal(still[1], plain[1])
    assert np.abs(still[0] - plain[0]).max() > 1e-3


@pytest.mark.parametrize("extra, expected", [
    (["--speaker-expression", "2=smile=1"], "no --speaker has face 2;"),
    (["--speaker-expression", "1=grin=1"], "--speaker-expression face 1:"),
    (["--speaker-strength", "0=lips"], "--speaker-strength face 0:"),
    (["--speaker-strength", "0=lips=1", "--speaker-strength", "0=yaw=1"], "given twice"),
])
def test_bad_per_speaker_edits_get_one_line(tmp_path, inputs, capsys, extra, expected):
    argv = ["--image", inputs["photo"], "--speaker", f"0={inputs['short']}", "--speaker",
            f"1={inputs['long']}", *extra, "--output", tmp_path / "o.mp4", "--models-dir",
            tmp_path / "nowhere", "--face-backend", "mtcnn"]
    line = error_line(*run(argv, capsys)[::2])
    assert expected in line and "nowhere" not in line


# --------------------------------------------------------------------- the silence gate

def test_the_gate_keeps_each_listener_quiet_and_lets_each_speaker_move(tmp_path, inputs,
                                                                        models_dir, capsys):
    """Speaker 0 talks, then listens; speaker 1 listens, then talks (one file each). With
    --save-keypoints and --animation-region lip, each speaker's lips hold still in the face's
    frame in its own silence (ramps left out) and move in its own speech; with the gate off
    the listener's lips move too: each motion is gated by its own speech."""
    from safetensors.torch import load_file

    from helpers_cli import write_wav
    from joyvasa_core.config import LIP_INDICES
    from joyvasa_core.silence import SilenceGate
    from test_silence import face_frame

    wave, rate = load_audio_file(espeak_wav(tmp_path / "s.wav", "Hello there, I am speaking now."))
    sentence = prepare_waveform(wave, rate).numpy()
    gap = np.zeros(int(2.4 * 16000), np.float32)
    first = write_wav(tmp_path / "first.wav", np.concatenate([sentence, gap]))
    second = write_wav(tmp_path / "second.wav", np.concatenate([gap, sentence]))
    spf = 16000 // 25
    speech_0 = range(AUDIO_PAD_BEFORE // spf + 5, (AUDIO_PAD_BEFORE + sentence.size) // spf - 5)
    speech_1 = range((AUDIO_PAD_BEFORE + gap.size) // spf + 5,
                     (AUDIO_PAD_BEFORE + gap.size + sentence.size) // spf - 5)
    ramp = round(SilenceGate().ramp * 25) + 1
    frames = (AUDIO_PAD_BEFORE + AUDIO_PAD_AFTER + gap.size + sentence.size) * 25 // 16000
    silent_0 = range(speech_0.stop + 5 + ramp + 8, frames - 2)
    silent_1 = range(AUDIO_PAD_BEFORE // spf + 2, speech_1.start - 5 - ramp)
    assert len(silent_0) > 10 and len(silent_1) > 10

    lips = {}
    for gate in ("on", "off"):
        keypoints = tmp_path / f"kp_{gate}.safetensors"
        argv = ["--image", inputs["photo"], "--speaker", f"0={first}", "--speaker",
                f"1={second}", "--save-keypoints", keypoints, "--models-dir", models_dir,
                "--face-backend", "mtcnn", *FAST, "--animation-region", "lip",
                "--no-stitching", "--silence-gate", gate]
        with hp.fast_liveportrait_build():
            code, _, err = run(argv, capsys)
        assert code == 0, err
        x_d = load_file(str(keypoints))["x_d"]
        assert x_d.shape[:2] == (2, frames)
        lips[gate] = [face_frame(x_d[k])[:, LIP_INDICES] for k in range(2)]

    def spread(x) -> float:
        return float((x - x.mean(0)).abs().max())
    for k, (silent, talk) in enumerate(((silent_0, speech_0), (silent_1, speech_1))):
        on, off = lips["on"][k], lips["off"][k]
        assert spread(on[list(silent)]) < 1e-3 * spread(on[list(talk)]), k
        assert spread(off[list(silent)]) > 0.1 * spread(off[list(talk)]), k


def test_faces_given_as_boxes_need_no_detector(tmp_path, inputs, models_dir, capsys):
    """--face-backend none with pixel boxes: each box is placed as given (an index would need
    a detector, and says so)."""
    keypoints = tmp_path / "k.safetensors"
    base = ["--image", inputs["photo"], "--save-keypoints", keypoints, "--models-dir",
            models_dir, "--face-backend", "none", *FAST]
    with hp.fast_liveportrait_build():
        code, _, err = run([*base, "--speaker", f"20,30,190,200={inputs['short']}",
                            "--speaker", f"250,30,430,200={inputs['short']}"], capsys)
    assert code == 0, err
    from safetensors.torch import load_file

    assert load_file(str(keypoints))["x_d"].shape[:2] == (2, _frames_of(inputs["short"]))
    code, _, err = run([*base, "--speaker", f"0={inputs['short']}"], capsys)
    assert "--face-backend none detects no face" in error_line(code, err)
