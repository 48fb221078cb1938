"""Awkward but valid inputs: odd image modes and odd sound files load right.

Every file is written here from real content: skimage's astronaut (and camera, for
grey) saved in each mode with Pillow/OpenCV, and espeak-ng speech encoded with
PyAV's encoders (or the stdlib ``wave`` module). Each image is compared with what
it should show; each sound with the reference speech, after the same 16 kHz
mono preparation the pipeline uses (same length within one video frame, high
correlation). A representative subset then goes through the headless command
with the fast tiny models.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import helpers_pipeline as hp
from helpers_cli import FAST, progress_lines
from helpers_cli import run as run_cli
from joyvasa_core.audio import AudioError, load_audio_file, prepare_waveform
from joyvasa_core.face import mtcnn
from joyvasa_core.face.image_io import load_image

FRAME_16K = 16000 // 25          # samples of one video frame at 16 kHz and 25 fps
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install -y espeak-ng)")


# ---------------------------------------------------------------------- images

@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """[512, 400, 3] uint8: not square, so a wrongly applied rotation changes the shape."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[:, 40:440])


def _transparent_right(rgb: np.ndarray) -> np.ndarray:
    """Alpha [H, W] uint8: opaque left of the middle, a half-transparent band, then clear."""
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    w = rgb.shape[1]
    alpha[:, : w // 2] = 255
    alpha[:, w // 2: w // 2 + 20] = 128
    return alpha


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255
    return np.rint(rgb * a + 255 * (1 - a)).astype(np.uint8)


def _exif_rotated(astronaut, path, orientation):
    """The astronaut stored so that the EXIF orientation tag turns it upright again."""
    stored = {3: np.rot90(astronaut, 2), 6: np.rot90(astronaut, 1), 8: np.rot90(astronaut, -1),
              2: astronaut[:, ::-1]}[orientation]
    im = Image.fromarray(np.ascontiguousarray(stored))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=95)
    return astronaut, 3.0            # JPEG: mean level error allowed


def _cmyk_jpeg(astronaut, path):
    Image.fromarray(astronaut).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    return astronaut, 3.0


def _png16_rgb(astronaut, path):
    """16-bit RGB: the astronaut's levels * 257 plus noise in the low byte, full range used."""
    rng = np.random.default_rng(1)
    levels = astronaut.astype(np.uint16) * 257 + rng.integers(0, 257, astronaut.shape).astype(np.uint16)
    levels = np.minimum(levels, 65535)
    levels[0, 0] = 65535                                 # white stays white (not clipped, not 0)
    cv2.imwrite(str(path), levels[..., ::-1])
    return np.rint(levels / 257).astype(np.uint8), 0.5   # within one level anywhere (see below)


def _png16_grey(astronaut, path):
    import skimage.data

    grey = skimage.data.camera().astype(np.uint16) * 257 + 100
    grey[grey < 300] = 300
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I;16")
    return np.repeat(np.rint(grey / 257).astype(np.uint8)[..., None], 3, axis=2), 0.0


def _rgba_cutout(astronaut, path):
    alpha = _transparent_right(astronaut)
    garbage = astronaut.copy()
    garbage[alpha == 0] = (0, 255, 0)                    # what transparent pixels hide
    Image.fromarray(np.dstack([garbage, alpha])).save(path)
    return _over_white(garbage, alpha), 0.0


def _grey_alpha(astronaut, path):
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    alpha = _transparent_right(astronaut)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(path)
    return _over_white(np.repeat(grey[..., None], 3, axis=2), alpha), 0.0


def _paletted(astronaut, path, transparent=False):
    pal = Image.fromarray(astronaut).quantize(255)
    expected = np.asarray(pal.convert("RGB")).copy()
    if transparent:                                      # index 255, magenta, is clear
        palette = pal.getpalette()[: 255 * 3] + [255, 0, 255]
        indices = np.asarray(pal).copy()
        indices[:, -60:] = 255
        pal = Image.fromarray(indices, "P")
        pal.putpalette(palette)
        pal.save(path, transparency=255)
        assert np.asarray(Image.open(path).convert("RGB"))[0, -1].tolist() == [255, 0, 255]
        expected[:, -60:] = 255                          # over white
    else:
        pal.save(path)
    assert Image.open(path).mode == "P"
    return expected, 0.0


def _animated(astronaut, path):
    """Two frames: the astronaut, then its negative; only the first may come out."""
    first = Image.fromarray(astronaut).quantize(256)
    second = Image.fromarray(255 - astronaut).quantize(256)
    kwargs = {"lossless": True} if path.suffix == ".webp" else {}
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0, **kwargs)
    with Image.open(path) as im:
        assert getattr(im, "n_frames", 1) == 2
    return np.asarray(first.convert("RGB")), 0.0


IMAGE_CASES = {
    "exif_rot90.jpg": lambda a, p: _exif_rotated(a, p, 6),
    "exif_rot270.jpg": lambda a, p: _exif_rotated(a, p, 8),
    "exif_rot180.jpg": lambda a, p: _exif_rotated(a, p, 3),
    "exif_mirrored.jpg": lambda a, p: _exif_rotated(a, p, 2),
    "cmyk.jpg": _cmyk_jpeg,
    "rgb16.png": _png16_rgb,
    "grey16.png": _png16_grey,
    "rgba_cutout.png": _rgba_cutout,
    "grey_alpha.png": _grey_alpha,
    "paletted.png": _paletted,
    "paletted_transparent.png": lambda a, p: _paletted(a, p, transparent=True),
    "animated.gif": _animated,
    "animated.webp": _animated,
}


@pytest.mark.parametrize("name", list(IMAGE_CASES))
def test_load_image_awkward_formats(name, astronaut, tmp_path):
    path = tmp_path / name
    expected, mean_error = IMAGE_CASES[name](astronaut, path)
    got = load_image(path)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.mean() <= mean_error, diff.mean()
    if mean_error < 1:                                   # lossless formats: exact, or one level
        assert diff.max() <= (1 if name == "rgb16.png" else 0)   # 16-bit RGB: Pillow keeps the high byte


def test_transparent_pixels_are_white_and_the_band_is_blended(astronaut, tmp_path):
    _rgba_cutout(astronaut, tmp_path / "cut.png")
    got = load_image(tmp_path / "cut.png")
    w = astronaut.shape[1]
    assert (got[:, w // 2 + 20:] == 255).all()                       # no green shows through
    band = got[:, w // 2: w // 2 + 20].astype(int)
    assert np.abs(band - (astronaut[:, w // 2: w // 2 + 20] * (128 / 255) + 127)).max() <= 1
    assert np.array_equal(load_image(tmp_path / "cut.png", alpha="drop")[:, -1, 1], np.full(512, 255))


def test_node_image_with_alpha_is_composited_like_the_command(astronaut, tmp_path):
    """An RGBA IMAGE [1, H, W, 4] reaching a node gives the picture the command sees."""
    import helpers_comfy as hc

    hc.load_pack()
    first_image = hc.nodes_module("convert").first_image
    path = tmp_path / "cut.png"
    _rgba_cutout(astronaut, path)
    rgba = torch.from_numpy(np.array(Image.open(path))).float().div(255)[None]
    node = first_image(rgba)
    assert node.shape == (512, 400, 3)
    assert (node * 255 - torch.from_numpy(load_image(path)).float()).abs().max() <= 0.5
    grey_alpha = torch.stack([rgba[..., 0], rgba[..., 3]], dim=-1)     # [1, H, W, 2]
    assert (first_image(grey_alpha)[:, -1] == 1.0).all()


# ---------------------------------------------------------------------- speech

@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, int]:
    """(espeak-ng WAV, its samples [N] float, the same at 16 kHz mono, its rate)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")
    path = tmp_path_factory.mktemp("speech") / "espeak.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Hello there, this is a test of awkward audio."],
                   check=True, capture_output=True)
    waveform, rate = load_audio_file(path)
    return path, waveform[0].numpy(), prepare_waveform(waveform, rate).numpy(), rate


def encode(path: Path, codec: str, samples: np.ndarray, rate: int, layout: str = "mono",
           channels: int = 1, options: dict | None = None) -> Path:
    """Write float ``samples`` [N] (at ``rate``) with PyAV's ``codec``; more than one channel
    carries the speech at decreasing gains (so a mixdown is the speech, scaled)."""
    try:
        av.codec.Codec(codec, "w")
    except av.codec.codec.UnknownCodecError:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    gains = np.linspace(1.0, 0.5, channels)[:, None]
    planar = np.ascontiguousarray((samples[None] * gains).astype(np.float32))
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if options:
            stream.codec_context.options = options
        size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout,
                                      rate=rate)
        frames = []
        for start in range(0, planar.shape[1], size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, start:start + size]),
                                               format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            frames += resampler.resample(frame)
        frames += resampler.resample(None)
        for frame in frames + [None]:
            out.mux(stream.encode(frame))
    return path


def write_wav_stdlib(path: Path, samples: np.ndarray, rate: int, width: int) -> Path:
    """PCM WAV with the stdlib ``wave`` module: 8-bit (unsigned) or 16-bit."""
    if width == 1:
        pcm = np.clip(np.rint(samples * 127 + 128), 0, 255).astype(np.uint8)
    else:
        pcm = np.clip(np.rint(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def at(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    return prepare_waveform(samples, rate, target_rate=new_rate).numpy()


#: name -> (writer(path, samples, rate), lowest correlation with the reference after 16 kHz)
AUDIO_CASES = {
    "u8.wav": (lambda p, x, r: write_wav_stdlib(p, x, r, 1), 0.999),
    "u8_pyav.wav": (lambda p, x, r: encode(p, "pcm_u8", x, r), 0.999),
    "s24.wav": (lambda p, x, r: encode(p, "pcm_s24le", x, r), 0.9999),
    "f32.wav": (lambda p, x, r: encode(p, "pcm_f32le", x, r), 0.9999),
    "mulaw_8k.wav": (lambda p, x, r: encode(p, "pcm_mulaw", at(x, r, 8000), 8000), 0.98),
    "s16_8k.wav": (lambda p, x, r: write_wav_stdlib(p, at(x, r, 8000), 8000, 2), 0.98),
    "s16_96k.wav": (lambda p, x, r: encode(p, "pcm_s16le", at(x, r, 96000), 96000), 0.9999),
    "six_channels.wav": (lambda p, x, r: encode(p, "pcm_s16le", x, r, "5.1", 6), 0.9999),
    "speech.mp3": (lambda p, x, r: encode(p, "libmp3lame", x, r), 0.98),
    "vorbis.ogg": (lambda p, x, r: encode(p, "vorbis", x, r, "stereo", 2,
                                          {"strict": "experimental"}), 0.98),
    "opus.ogg": (lambda p, x, r: encode(p, "libopus", at(x, r, 48000), 48000), 0.98),
    "speech.opus": (lambda p, x, r: encode(p, "libopus", at(x, r, 48000), 48000), 0.98),
    "speech.flac": (lambda p, x, r: encode(p, "flac", x, r), 0.9999),
    "aac.m4a": (lambda p, x, r: encode(p, "aac", x, r), 0.98),
}


def _compare(path: Path, reference16: np.ndarray, min_corr: float) -> tuple[torch.Tensor, int]:
    waveform, rate = load_audio_file(path)
    got = prepare_waveform(waveform, rate).numpy()
    assert abs(len(got) - len(reference16)) <= FRAME_16K, (len(got), len(reference16))
    n = min(len(got), len(reference16))
    corr = np.corrcoef(got[:n], reference16[:n])[0, 1]
    assert corr >= min_corr, corr
    return waveform, rate


@pytest.mark.parametrize("name", list(AUDIO_CASES))
def test_load_audio_awkward_formats(name, speech, tmp_path, caplog):
    _, samples, reference16, rate = speech
    writer, min_corr = AUDIO_CASES[name]
    path = writer(tmp_path / name, samples, rate)
    with caplog.at_level(logging.WARNING):
        waveform, _ = _compare(path, reference16, min_corr)
    assert not caplog.records, caplog.text        # a whole file is not reported as cut short
    assert waveform.shape[0] == (6 if "six" in name else 2 if "vorbis" in name else 1)


#: name -> (writer of the whole file, least share of the speech that decodes after a cut at 60 %
#: of the bytes): constant-bitrate files keep about 60 %; an Ogg muxer closes a page about every
#: second and the page that is cut off is dropped whole; FLAC spends fewer bytes on quiet parts.
CUT_CASES = {
    "cut.wav": (lambda p, x, r: write_wav_stdlib(p, x, r, 2), 0.55),
    "cut.mp3": (AUDIO_CASES["speech.mp3"][0], 0.55),
    "cut_s24.wav": (AUDIO_CASES["s24.wav"][0], 0.55),
    "cut_vorbis.ogg": (AUDIO_CASES["vorbis.ogg"][0], 0.3),
    "cut.opus": (AUDIO_CASES["speech.opus"][0], 0.3),
    "cut.flac": (AUDIO_CASES["speech.flac"][0], 0.4),
}


@pytest.mark.parametrize("name", list(CUT_CASES))
def test_truncated_file_decodes_as_far_as_it_goes_with_one_warning(name, speech, tmp_path, caplog):
    _, samples, reference16, rate = speech
    writer, least = CUT_CASES[name]
    whole = writer(tmp_path / f"whole{Path(name).suffix}", samples, rate)
    data = whole.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) * 6 // 10 + 1])             # mid-sample, mid-frame
    with caplog.at_level(logging.WARNING):
        waveform, got_rate = load_audio_file(cut)
    assert [r.levelno for r in caplog.records] == [logging.WARNING], caplog.text
    assert name in caplog.records[0].getMessage() and "cut short" in caplog.records[0].getMessage()
    got = prepare_waveform(waveform, got_rate).numpy()
    assert least * len(reference16) < len(got) < 0.65 * len(reference16), (len(got), len(reference16))
    assert np.corrcoef(got, reference16[: len(got)])[0, 1] > 0.98


def test_cut_to_nothing_is_still_an_error(speech, tmp_path):
    whole = write_wav_stdlib(tmp_path / "whole.wav", speech[1], speech[3], 2)
    cut = tmp_path / "header_only.wav"
    cut.write_bytes(whole.read_bytes()[:44])
    with pytest.raises(AudioError, match="header_only.wav"):
        load_audio_file(cut)


# ---------------------------------------------------------------------- the command

needs_mtcnn = pytest.mark.skipif(not mtcnn.available(),
                                 reason="no-download face detector (pip install mtcnn) missing")


@needs_mtcnn
@needs_espeak
@pytest.mark.parametrize("image_name,audio_name", [
    ("exif_rot90.jpg", "six_channels.wav"),
    ("rgba_cutout.png", "cut.mp3"),
])
def test_command_runs_awkward_inputs(image_name, audio_name, astronaut, models_dir, tmp_path,
                                     capsys, caplog, monkeypatch):
    """The headless command, end to end with the fast tiny models (a half-size photo and a
    short sentence keep it quick): the MP4 is upright at the photo's size and lasts as long
    as the speech that decodes; a cut-short file gives one warning (the command prints it
    on stdout, keeping stderr for progress and the one error line), and no input changes."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    small = cv2.resize(astronaut, (200, 256), interpolation=cv2.INTER_AREA)
    photo = tmp_path / image_name
    expected, _ = IMAGE_CASES[image_name](small, photo)
    raw = tmp_path / "hi.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), "Hi there."], check=True, capture_output=True)
    waveform, rate = load_audio_file(raw)
    samples = waveform[0].numpy()
    if audio_name == "cut.mp3":
        whole = encode(tmp_path / "whole.mp3", "libmp3lame", samples, rate)
        audio = tmp_path / audio_name
        audio.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    else:
        audio = AUDIO_CASES[audio_name][0](tmp_path / audio_name, samples, rate)
    before = {p: p.read_bytes() for p in (photo, audio)}
    out = tmp_path / "talking.mp4"
    with hp.fast_liveportrait_build(), caplog.at_level(logging.WARNING, logger="joyvasa_core.audio"):
        code, _, err = run_cli(["--image", photo, "--audio", audio, "--output", out,
                                "--models-dir", models_dir, "--face-backend", "mtcnn", *FAST],
                               capsys)
    assert code == 0, err
    progress_lines(err)
    cut_short = [r for r in caplog.records if r.name == "joyvasa_core.audio"]
    assert len(cut_short) == (1 if audio_name == "cut.mp3" else 0), caplog.text
    assert all("cut short" in r.getMessage() for r in cut_short)
    assert {p: p.read_bytes() for p in before} == before                 # inputs untouched

    waveform, sr = load_audio_file(audio)
    n16 = prepare_waveform(waveform, sr).shape[-1]
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.height, stream.width) == expected.shape[:2]      # upright: 256 x 200
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == int((n16 + 1280 + 640) / 16000 * 25)
    far = (slice(220, 256), slice(None))                                 # the suit, far from the face
    assert np.abs(frames[-1][far].astype(int) - expected[far].astype(int)).mean() < 4.0
