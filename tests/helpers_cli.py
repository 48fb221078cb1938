"""Running the headless CLI in-process and reading its one error line; small input files."""
from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np

import helpers_pipeline as hp
from joyvasa_core import cli

FAST = ["--sampler", "ddim", "--steps", "2", "--device", "cpu", "--batch-size", "16"]


def run(argv, capsys) -> tuple[int, str, str]:
    """``cli.main(argv)`` -> (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(code: int, err: str, after_progress: bool = False) -> str:
    """The single ``error: ...`` line of a failed run (no traceback, nothing else; with
    ``after_progress``, the progress lines of the work done before the failure are allowed)."""
    lines = [line for line in err.splitlines() if line.strip()
             and not (after_progress and PROGRESS_LINE.match(line))]
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert not lines[0].startswith("error: unexpected"), lines[0]
    print(lines[0])     # shown by pytest -rP
    return lines[0]


def error_lines(code: int, err: str) -> list[str]:
    """The lines of a failed run's listed error (several causes, one per line: every missing
    model file, then the download commands): ``error: ...`` first, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) > 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    assert not lines[0].startswith("error: unexpected"), lines[0]
    assert not any(line.startswith("error: ") for line in lines[1:]), err     # one report
    return lines


#: A progress line of the headless command on a non-terminal stderr (:class:`joyvasa_core.cli.StageLog`).
PROGRESS_LINE = re.compile(r"^\[\s*\d+\.\d+s\] (motion|frames|frames tracked) (\d+)/(\d+)( windows)?$")


def progress_lines(err: str) -> list[tuple[str, int, int]]:
    """(label, done, total) of every line of a successful run's stderr: all of them must be
    progress lines (``[   1.2s] motion 1/3 windows``, ``[   2.0s] frames 16/300``)."""
    lines = [line for line in err.splitlines() if line.strip()]
    parsed = [PROGRESS_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if m is None]
    for m in parsed:
        assert (m.group(1) == "motion") == (m.group(4) is not None), m.group(0)   # windows: motion only
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in parsed]


def write_photo_and_speech(folder: Path) -> dict[str, Path]:
    """A real photo (skimage's astronaut, 256 x 256) and half a second of speech-like audio."""
    import skimage.data
    from PIL import Image

    photo = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()[::2, ::2]).save(photo)
    return {"photo": photo, "speech": write_tone(folder / "speech.wav")}


def photo_job(inputs: dict[str, Path], out: Path, models: Path, *extra) -> list:
    """Arguments of a fast photo job on ``inputs`` (:func:`write_photo_and_speech`)."""
    return ["--image", inputs["photo"], "--audio", inputs["speech"], "--output", out,
            "--models-dir", models, "--face-backend", "none", *FAST, *extra]


def fails_early(capsys, inputs: dict[str, Path], tmp_path: Path, *extra, **replaced) -> str:
    """Run a photo job with ``--<option> value`` replaced (``image=...``) or added (``extra``)
    and a models folder that does not exist: the error line, which must not be about the
    models (so the refusal came before loading)."""
    argv = photo_job(inputs, tmp_path / "o.mp4", tmp_path / "nowhere", *extra)
    for name, value in replaced.items():
        argv[argv.index(f"--{name}") + 1] = value
    code, _, err = run(argv, capsys)
    line = error_line(code, err)
    assert "nowhere" not in line, f"the check came after model loading: {line}"
    return line


def copy_models(models_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny ``pretrained_weights`` tree that a test may break."""
    import shutil

    return Path(shutil.copytree(models_dir, tmp_path / "pretrained_weights"))


def fails_loading(argv, capsys, after_progress: bool = False) -> str:
    """The error line of a run with the fast tiny networks (e.g. a broken models tree)."""
    with hp.fast_liveportrait_build():
        code, _, err = run(argv, capsys)
    return error_line(code, err, after_progress)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """Mono WAV: int16 samples as pcm_s16le, float32 samples as pcm_f32le."""
    samples = np.ascontiguousarray(samples)
    if samples.size == 0:     # PyAV writes no file without packets: a bare 44-byte header
        import wave

        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
        return path
    fmt, codec = ("s16", "pcm_s16le") if samples.dtype == np.int16 else ("flt", "pcm_f32le")
    with av.open(str(path), "w") as dst:
        stream = dst.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None], format=fmt, layout="mono")
        frame.sample_rate = rate
        dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    return path


def write_tone(path: Path, seconds: float = 0.5) -> Path:
    """Speech-like test signal (``helpers_pipeline.speech_like``), 16 kHz int16 WAV."""
    return write_wav(path, (hp.speech_like(seconds) * 32767).astype(np.int16))
