"""The headless CLI end to end: real photo, real speech, official-format model files.

The model files are the official ``pretrained_weights`` tree with tiny networks
(``helpers_pipeline``); the job runs in-process so the loader builds the tiny
configuration. Error cases check the exit status and the single error line.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import helpers_pipeline as hp
from helpers_cli import FAST, progress_lines
from helpers_cli import error_line as _error_line
from helpers_cli import run as _run
from helpers_cli import write_tone as _write_tone
from joyvasa_core import cli
from joyvasa_core.audio import prepare_waveform
from joyvasa_core.config import AUDIO_PAD_AFTER, AUDIO_PAD_BEFORE, AUDIO_SAMPLE_RATE
from joyvasa_core.face import mtcnn

ROOT = Path(__file__).resolve().parents[1]
needs_mtcnn = pytest.mark.skipif(not mtcnn.available(),
                                 reason="no-download face detector (pip install mtcnn) missing")

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """skimage's astronaut on a grey canvas: odd size (639 x 451), face off-centre (upper left)."""
    import skimage.data

    astronaut = skimage.data.astronaut()[:, 60:420]          # [512, 360, 3], face near the top
    canvas = np.full((639, 451, 3), 90, np.uint8)
    canvas[20:20 + 512, 10:10 + 360] = astronaut
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(canvas).save(path)
    return path, canvas


def _espeak_speech(folder: Path) -> Path:
    """'Hello, ...' spoken by espeak-ng, made 44.1 kHz stereo with PyAV."""
    raw = folder / "espeak.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), "Hello there."], check=True, capture_output=True)
    with av.open(str(raw)) as src:
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=44100)
        chunks = [f.to_ndarray() for frame in src.decode(audio=0)
                  for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    pcm = np.concatenate(chunks, axis=1).reshape(-1, 2)          # packed s16 -> [N, 2]
    out = folder / "speech_44k_stereo.wav"
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("pcm_s16le", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.reshape(1, -1)),
                                           format="s16", layout="stereo")
        frame.sample_rate = 44100
        dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    return out


@needs_mtcnn
@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng not installed (apt-get install -y espeak-ng)")
def test_cli_end_to_end(tmp_path, models_dir, photo, capsys):
    image_path, image = photo
    speech = _espeak_speech(tmp_path)
    out = tmp_path / "talking.mp4"
    motion_file = tmp_path / "motion.safetensors"
    with hp.fast_liveportrait_build():
        code, stdout, err = _run(["--image", image_path, "--audio", speech, "--output", out,
                                  "--models-dir", models_dir, "--face-backend", "mtcnn",
                                  "--save-motion", motion_file, *FAST], capsys)
    assert code == 0, err
    progress = progress_lines(err)          # stderr (not a terminal): progress lines only
    assert stdout.rstrip().endswith(f"wrote {out}") and ".partial" not in stdout, stdout

    # Frame count: the official rule on the 16 kHz mono speech (padded 1280 + 640 samples).
    with av.open(str(speech)) as src:
        chunks = [f.to_ndarray() for f in src.decode(audio=0)]
        rate = src.streams.audio[0].rate
    wave = np.concatenate(chunks, axis=-1).reshape(-1, 2).T.astype(np.float32) / 32768
    n16 = prepare_waveform(torch.from_numpy(wave), rate).shape[-1]
    expected_frames = int((n16 + AUDIO_PAD_BEFORE + AUDIO_PAD_AFTER) / AUDIO_SAMPLE_RATE * 25)

    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert (video.height, video.width) == (640, 452)      # 639 x 451 rounded up to even
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == expected_frames
    # one line per motion window, and frames counted up to the whole clip
    windows = [(done, total) for label, done, total in progress if label == "motion"]
    assert [done for done, _ in windows] == list(range(1, len(windows) + 1))
    assert windows and all(total == len(windows) for _, total in windows)
    assert [(d, t) for label, d, t in progress if label == "frames"][-1] == \
        (expected_frames, expected_frames)
    from joyvasa_core.motion import MotionSequence
    assert len(MotionSequence.load(motion_file)) == expected_frames

    # Far from the face (bottom rows: grey canvas and the suit) the photo is untouched;
    # only the H.264 quantisation differs. Around the face the animation changed pixels.
    last = frames[-1].astype(np.int16)[:639, :451]
    far = (slice(560, 639), slice(0, 451))
    assert np.abs(last[far] - image[far]).mean() < 2.0
    face = (slice(80, 190), slice(130, 240))
    assert np.abs(last[face] - image[face]).mean() > 5.0


def test_not_an_image(tmp_path, capsys):
    fake = tmp_path / "photo.png"
    fake.write_text("this is not a picture")
    speech = tmp_path / "s.wav"
    code, _, err = _run(["--image", fake, "--audio", speech, "--output", tmp_path / "o.mp4"], capsys)
    assert "photo.png" in _error_line(code, err)


def test_empty_audio(tmp_path, photo, capsys):
    empty = tmp_path / "empty.wav"
    with av.open(str(empty), "w") as dst:
        stream = dst.add_stream("pcm_s16le", rate=16000, layout="mono")
        dst.mux(stream.encode(None))
    code, _, err = _run(["--image", photo[0], "--audio", empty, "--output", tmp_path / "o.mp4"],
                        capsys)
    assert "empty.wav" in _error_line(code, err) or "no audio" in err


def test_missing_model_file_is_named(tmp_path, models_dir, photo, capsys):
    broken = tmp_path / "pw"
    shutil.copytree(models_dir, broken)
    (broken / "liveportrait" / "base_models" / "warping_module.pth").unlink()
    speech = tmp_path / "s.wav"
    _write_tone(speech)
    code, _, err = _run(["--image", photo[0], "--audio", speech, "--output", tmp_path / "o.mp4",
                         "--models-dir", broken, *FAST], capsys)
    line = _error_line(code, err)
    assert "warping_module.pth" in line and str(broken) in line


def test_truncated_checkpoint_is_named(tmp_path, models_dir, photo, capsys):
    broken = tmp_path / "pw"
    shutil.copytree(models_dir, broken)
    path = broken / "liveportrait" / "base_models" / "spade_generator.pth"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    speech = tmp_path / "s.wav"
    _write_tone(speech)
    with hp.fast_liveportrait_build():
        code, _, err = _run(["--image", photo[0], "--audio", speech, "--output",
                             tmp_path / "o.mp4", "--models-dir", broken, *FAST], capsys)
    assert "spade_generator.pth" in _error_line(code, err)


@needs_mtcnn
def test_no_face(tmp_path, models_dir, capsys):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(blank)
    speech = tmp_path / "s.wav"
    _write_tone(speech)
    out = tmp_path / "o.mp4"
    with hp.fast_liveportrait_build():
        code, _, err = _run(["--image", blank, "--audio", speech, "--output", out,
                             "--models-dir", models_dir, "--face-backend", "mtcnn", *FAST], capsys)
    assert "no face" in _error_line(code, err)
    assert not out.exists()


def test_module_entry_point_exit_status(tmp_path):
    """``python -m joyvasa_core``: non-zero status, one stderr line, no traceback."""
    fake = tmp_path / "notes.jpg"
    fake.write_bytes(b"\x00\x01 definitely not a jpeg")
    proc = subprocess.run([sys.executable, "-m", "joyvasa_core", "--image", str(fake),
                           "--audio", str(tmp_path / "a.wav"), "--output", str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 1
    assert "notes.jpg" in _error_line(proc.returncode, proc.stderr)
    debug = subprocess.run([sys.executable, "-m", "joyvasa_core", "--debug", "--image", str(fake),
                            "--audio", str(tmp_path / "a.wav"), "--output", str(tmp_path / "o.mp4")],
                           capture_output=True, text=True, cwd=ROOT, check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# ---------------------------------------------------------------------- --video (dubbing)

@needs_mtcnn
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_cli_dubs_a_rotated_phone_video(tmp_path, models_dir, capsys):
    """A 30 fps clip stored sideways with a display matrix: written upright, at 30 fps, for
    as long as the (longer) speech, with the speech as AAC."""
    import helpers_video as hv

    upright = hv.drifting_astronaut(4)                              # [4, 200, 232, 3]
    stored = np.ascontiguousarray(np.rot90(upright, k=1, axes=(1, 2)))
    video = hv.write_clip(tmp_path / "phone.mp4", stored, fps=30, rotation=-90)
    speech = hv.espeak_wav(tmp_path / "hi.wav", "Hi.")
    out = tmp_path / "dubbed.mp4"
    with hp.fast_liveportrait_build():
        code, stdout, err = _run(["--video", video, "--audio", speech, "--output", out,
                                  "--models-dir", models_dir, "--face-backend", "mtcnn",
                                  "--loop", "loop", *FAST[:-2], "--batch-size", "4"], capsys)
    assert code == 0, err
    assert "tracking the face" in stdout and "region lip" in stdout
    with av.open(str(speech)) as src:
        seconds = sum(f.samples for f in src.decode(audio=0)) / src.streams.audio[0].rate
    with av.open(str(out)) as container:
        vstream, astream = container.streams.video[0], container.streams.audio[0]
        assert vstream.codec_context.name == "h264" and astream.codec_context.name == "aac"
        assert float(vstream.average_rate) == pytest.approx(30.0)
        assert (vstream.height, vstream.width) == (200, 232)            # upright
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == int(seconds * 30)
    # loop order: output frame 5 shows source frame 1 (its bar is 12 px long)
    bar = (frames[5][-6:-2].mean(axis=(0, 2)) > 200).sum()
    assert abs(int(bar) - 12) <= 2


def test_image_and_video_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--image", "a.png", "--video", "b.mp4", "--audio", "s.wav", "--output", "o.mp4"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_video_without_video_stream(tmp_path, capsys):
    import helpers_video as hv

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    speech = hv.espeak_wav(tmp_path / "s.wav", "Hi.")
    code, _, err = _run(["--video", speech, "--audio", speech, "--output", tmp_path / "o.mp4"],
                        capsys)
    assert "s.wav has no video stream" in _error_line(code, err)
