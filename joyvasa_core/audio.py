"""Speech input: decoding, mono 16 kHz conversion, resampling and the window plan.

The motion generator consumes 16 kHz mono float audio in windows of
``n_motions`` video frames. :func:`prepare_waveform` turns whatever a caller
has (a tensor or ndarray ``[N]``, ``[C, N]``, ``[N, C]`` or ``[1, C, N]``; float
or integer PCM; any sample rate) into that; :func:`plan_windows` reproduces the
official windowing of ``LivePortraitWrapper.gen_motion_sequence``:

* pad ``AUDIO_PAD_BEFORE`` (1280) zeros before and ``AUDIO_PAD_AFTER`` (640) after;
* ``clip_len = int(len(padded) / 16000 * fps)`` frames;
* non-overlapping windows of ``n_motions`` frames (``16000 / fps`` samples each);
* the last window padded (``pad_mode`` 'zero' or 'replicate') and its
  ``ceil(pad / samples_per_frame)`` padded frames dropped from the motion.

So 17600 samples give 30 frames and 100000 samples 159 frames at 25 fps.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import AUDIO_PAD_AFTER, AUDIO_PAD_BEFORE, AUDIO_SAMPLE_RATE
from .errors import JoyVASAError

log = logging.getLogger(__name__)

#: Peak amplitude (full scale 1.0) under which audio counts as silent: below one int16 step.
SILENCE_PEAK = 1.0 / 32768

_INT_SCALE = {torch.int8: 128.0, torch.int16: 32768.0, torch.int32: 2147483648.0}
_MAX_CHANNELS = 16  # a trailing axis this small (with a long leading axis) is read as channels


class AudioError(JoyVASAError, ValueError):
    """The audio cannot drive a motion sequence (empty, silent, too short, not finite, bad shape)."""


# --------------------------------------------------------------------------- conversion

def to_float_tensor(waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
    """PCM samples of any dtype -> float32 in [-1, 1] (float input is kept as is).

    int8/int16/int32 are divided by 2**7/2**15/2**31, uint8 is centred at 128.
    """
    x = torch.from_numpy(np.ascontiguousarray(waveform)) if isinstance(waveform, np.ndarray) \
        else waveform
    if not isinstance(x, torch.Tensor):
        raise AudioError(f"audio must be a torch.Tensor or numpy array, got {type(waveform).__name__}")
    if x.dtype == torch.uint8:
        return (x.to(torch.float32) - 128.0) / 128.0
    if x.dtype in _INT_SCALE:
        return x.to(torch.float32) / _INT_SCALE[x.dtype]
    if x.dtype == torch.int64:
        raise AudioError("int64 audio has no defined PCM scale; pass float in [-1, 1] or int16/int32")
    if not x.is_floating_point():
        raise AudioError(f"unsupported audio dtype {x.dtype}")
    return x.to(torch.float32)


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """``[N]``, ``[C, N]``, ``[N, C]`` (C <= 16 < N) or ``[1, C, N]`` -> mono ``[N]`` (channel mean)."""
    x = waveform
    if x.ndim == 3:
        if x.shape[0] != 1:
            raise AudioError(f"audio batch of {x.shape[0]} clips [B, C, N]; pass one clip at a time")
        x = x[0]
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioError(f"audio must be [N], [C, N] or [B, C, N]; got shape {tuple(waveform.shape)}")
    if x.shape[0] > _MAX_CHANNELS and x.shape[1] <= _MAX_CHANNELS:
        x = x.T  # channels-last, as soundfile returns it
    return x.mean(dim=0)


# --------------------------------------------------------------------------- resampling

def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample along the last axis as the official ``librosa.load`` does:
    ``[..., N] -> [..., ceil(N * new / orig)]``.

    librosa 0.10.2 (pinned by JoyVASA) resamples with python-soxr at
    ``soxr_hq`` quality, then pads or trims to ``ceil(N * new / orig)``
    samples; this calls the same library with the same settings, so the
    samples equal librosa's (parity fixture ``audio_resample``). soxr runs on
    the CPU in float32 or float64; the result comes back on the input's device
    and in its dtype. Rates must be positive integers (soxr accepts any ratio).
    """
    import soxr

    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return waveform
    n = waveform.shape[-1]
    n_out = -(-n * new_sr // orig_sr)
    lead = waveform.shape[:-1]
    work = torch.float64 if waveform.dtype == torch.float64 else torch.float32
    rows = waveform.detach().reshape(-1, n).to("cpu", work).numpy()
    # soxr takes [N, C] (channels last) and resamples each channel independently.
    out = soxr.resample(np.ascontiguousarray(rows.T), orig_sr, new_sr, quality="HQ")
    out = out.reshape(out.shape[0], -1).T
    if out.shape[1] < n_out:        # librosa's fix_length: zero-pad or trim to the exact length
        out = np.pad(out, ((0, 0), (0, n_out - out.shape[1])))
    result = torch.from_numpy(np.ascontiguousarray(out[:, :n_out]))
    return result.reshape(*lead, n_out).to(waveform.device, waveform.dtype)


def prepare_waveform(waveform: torch.Tensor | np.ndarray, sample_rate: int, *,
                     target_rate: int = AUDIO_SAMPLE_RATE, allow_silence: bool = False) -> torch.Tensor:
    """Any waveform -> mono float32 ``[N]`` at ``target_rate`` (16 kHz), on the input's device.

    Raises :class:`AudioError` for empty, non-finite or (unless ``allow_silence``)
    silent audio, i.e. peak below one int16 step.
    """
    x = to_mono(to_float_tensor(waveform))
    if x.numel() == 0:
        raise AudioError("the audio has no samples; connect a clip that contains speech")
    low, high = (float(v) for v in torch.aminmax(x))    # one pass, no copy; NaN propagates
    if not (math.isfinite(low) and math.isfinite(high)):
        raise AudioError("the audio contains NaN or infinite samples; re-export the clip "
                         "(as 16-bit WAV, for example)")
    if not allow_silence and max(-low, high) < SILENCE_PEAK:
        raise AudioError("the audio is silent (peak below one 16-bit step); use a recording "
                         "that contains speech (library callers: allow_silence=True animates "
                         "silence)")
    return resample(x, int(sample_rate), target_rate)


def load_audio_file(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode any file PyAV/FFmpeg reads (wav, mp3, flac, m4a, ogg, video soundtracks).

    Returns ``(waveform [C, N] float32 in [-1, 1], sample_rate)`` of the first audio stream,
    every channel kept. A file cut off mid-way (a WAV or MP3 whose header states more
    than the file holds, an Ogg file whose last page is incomplete or does not end the
    stream, or a stream that stops decoding part-way) is decoded as far as
    it goes, with one warning on the ``joyvasa_core.audio`` logger; nothing decoded at
    all is an :class:`AudioError`.
    """
    import av

    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file. Pass the path of one speech "
                         "recording (wav, mp3, flac, m4a, ...).")
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}. Check the path.")
    chunks, stopped = [], None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path} has no audio stream (a silent video, or not a sound "
                                 "file at all). Choose a speech recording, or a video "
                                 "with a soundtrack.")
            stream = container.streams.audio[0]
            stated = _stated_seconds(path, container.format.name, stream)
            ogg_cut = "ogg" in container.format.name.split(",") and _ogg_cut_off(path)
            converter = av.AudioResampler(format="fltp")   # planar float, same layout and rate
            rate = stream.rate or stream.codec_context.sample_rate
            try:
                for frame in container.decode(stream):
                    rate = frame.sample_rate
                    chunks.extend(out.to_ndarray() for out in converter.resample(frame))
            except av.error.FFmpegError as exc:
                if not chunks:
                    raise
                stopped = exc                                # keep what decoded before it
            chunks.extend(out.to_ndarray() for out in converter.resample(None))
    except av.error.FFmpegError as exc:
        raise AudioError(f"cannot decode audio from {path} ({exc}); the file is not a sound "
                         "file FFmpeg reads, or it is corrupt. Re-export it as WAV or MP3.") from exc
    if not chunks:
        raise AudioError(f"{path} decodes to no audio samples; the recording is empty. "
                         "Choose a clip that contains speech.")
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32))
    _warn_if_cut_short(path, waveform.shape[-1] / rate, stated, stopped, ogg_cut)
    return waveform, int(rate)


#: Seconds a decoded file may fall short of its stated length before it counts as cut off.
TRUNCATION_SLACK_S = 0.05


def _warn_if_cut_short(path: Path, decoded: float, stated: float | None, stopped,
                       ogg_cut: str | None = None) -> None:
    if stopped is not None:
        why = f"decoding stopped with an error ({stopped})"
    elif stated is not None and decoded < stated - TRUNCATION_SLACK_S:
        why = f"its header states {stated:.2f} s"
    elif ogg_cut:
        why = ogg_cut
    else:
        return
    log.warning("%s is cut short: %s; using the %.2f s that decode. Re-export the file if the "
                "speech should go on.", path, why, decoded)


#: Ogg page header: capture "OggS", version, flags, granule (8), serial, sequence, CRC (4 each),
#: segment count; then the segment table and the body. Flag 0x04 marks a stream's last page.
_OGG_HEADER = 27
_OGG_END_OF_STREAM = 0x04


def _ogg_cut_off(path: Path) -> str | None:
    """Why an Ogg file (Vorbis, Opus, ...) stops short, or None when it ends cleanly.

    An Ogg file states no length; FFmpeg drops a last page that is cut off and
    reports the duration of the pages before it. So the pages are walked (headers
    only, one seek each): the file must end exactly where a page ends, and that
    last page must carry the end-of-stream flag that a finished writer sets.
    """
    size = path.stat().st_size
    position, flags = 0, 0
    with open(path, "rb") as f:
        while position < size:
            f.seek(position)
            head = f.read(_OGG_HEADER)
            if len(head) < _OGG_HEADER or head[:4] != b"OggS":
                return f"its last Ogg page is cut off after byte {position}"
            table = f.read(head[26])
            end = position + _OGG_HEADER + len(table) + sum(table)
            if len(table) < head[26] or end > size:
                return f"its last Ogg page is cut off after byte {position}"
            position, flags = end, head[5]
    if not flags & _OGG_END_OF_STREAM:
        return "its last Ogg page does not end the stream"
    return None


def _stated_seconds(path: Path, container_format: str, stream) -> float | None:
    """How long the file says its audio lasts, or None where it does not say.

    FFmpeg sizes a WAV by the bytes present, so a WAV's own header is read instead
    (:func:`_wav_header_seconds`); other containers report the stream's duration
    (an MP3's Xing/Info frame count, for example).
    """
    if "wav" in container_format.split(","):
        return _wav_header_seconds(path)
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _wav_header_seconds(path: Path) -> float | None:
    """Seconds of sample data a RIFF WAVE header states (data chunk size / byte rate), or None
    for an unknown size (0 or 0xFFFFFFFF, as streaming writers leave it) or an odd header."""
    import struct

    with open(path, "rb") as f:
        if f.read(4) != b"RIFF" or not f.read(4) or f.read(4) != b"WAVE":
            return None
        byte_rate = None
        for _ in range(64):                                  # chunks before "data": a handful
            head = f.read(8)
            if len(head) < 8:
                return None
            kind, size = head[:4], struct.unpack("<I", head[4:])[0]
            if kind == b"data":
                if size in (0, 0xFFFFFFFF) or not byte_rate:
                    return None
                return size / byte_rate
            padded = size + (size & 1)                       # chunks are word-aligned
            if kind != b"fmt ":
                f.seek(padded, 1)
                continue
            body = f.read(padded)
            if len(body) >= 12:                              # format, channels, rate, byte rate
                byte_rate = struct.unpack("<I", body[8:12])[0]
    return None


# --------------------------------------------------------------------------- window plan

@dataclass(frozen=True)
class WindowPlan:
    """How a 16 kHz clip of ``n_samples`` is cut into motion windows (official rule).

    ``samples_per_frame = 16000 / fps``; window ``i`` covers padded samples
    ``[starts[i], starts[i] + samples_per_window)``. The last window holds
    ``n_padding_samples`` of padding (may be <= 0: nothing padded), whose
    ``n_padding_frames`` frames are dropped, leaving ``n_frames`` frames in all.
    """

    n_samples: int
    fps: float
    n_motions: int
    pad_before: int
    pad_after: int
    sample_rate: int
    n_windows: int
    n_padding_samples: int
    n_padding_frames: int

    @property
    def samples_per_frame(self) -> float:
        return self.sample_rate / self.fps

    @property
    def samples_per_window(self) -> int:
        return round(self.samples_per_frame * self.n_motions)

    @property
    def padded_len(self) -> int:
        """Length after the fixed before/after padding (before the last-window padding)."""
        return self.n_samples + self.pad_before + self.pad_after

    @property
    def clip_len(self) -> int:
        return int(self.padded_len / self.sample_rate * self.fps)

    @property
    def starts(self) -> list[int]:
        return [round(i * self.n_motions * self.samples_per_frame) for i in range(self.n_windows)]

    @property
    def n_frames(self) -> int:
        return self.n_windows * self.n_motions - self.n_padding_frames

    @property
    def frames_per_window(self) -> list[int]:
        """Frames each window contributes (the last loses its padded frames)."""
        kept = [self.n_motions] * self.n_windows
        kept[-1] -= self.n_padding_frames
        return kept


def check_duration(n_samples: int, *, fps: float, sample_rate: int = AUDIO_SAMPLE_RATE) -> None:
    """Raise :class:`AudioError` unless ``n_samples`` at ``sample_rate`` Hz last one video frame."""
    if n_samples <= 0:
        raise AudioError("the audio has no samples; connect a clip that contains speech")
    if n_samples < sample_rate / fps:
        raise AudioError(f"the audio lasts {1000 * n_samples / sample_rate:.1f} ms, shorter than "
                         f"one video frame ({1000 / fps:g} ms at {fps:g} fps); use a clip of "
                         "speech at least that long")


def plan_windows(n_samples: int, *, fps: float, n_motions: int,
                 pad_before: int = AUDIO_PAD_BEFORE, pad_after: int = AUDIO_PAD_AFTER,
                 sample_rate: int = AUDIO_SAMPLE_RATE) -> WindowPlan:
    """The official window plan for ``n_samples`` of 16 kHz audio.

    Raises :class:`AudioError` for empty audio or audio shorter than one video frame.
    """
    if fps is None or fps <= 0 or n_motions <= 0:
        raise ValueError(f"fps and n_motions must be positive (got fps={fps}, n_motions={n_motions}); "
                         "they come from the motion generator's args")
    samples_per_frame = sample_rate / fps
    check_duration(n_samples, fps=fps, sample_rate=sample_rate)
    padded = n_samples + pad_before + pad_after
    clip_len = int(padded / sample_rate * fps)
    n_windows = 1 if clip_len <= n_motions else math.ceil(clip_len / n_motions)
    n_padding_samples = round(samples_per_frame * n_motions) * n_windows - padded
    n_padding_frames = max(0, math.ceil(n_padding_samples / samples_per_frame))
    return WindowPlan(n_samples=n_samples, fps=fps, n_motions=n_motions, pad_before=pad_before,
                      pad_after=pad_after, sample_rate=sample_rate, n_windows=n_windows,
                      n_padding_samples=n_padding_samples, n_padding_frames=n_padding_frames)


def window_batches(audio: torch.Tensor, plan: WindowPlan, pad_mode: str | None = "zero",
                   batch: int = 8) -> Iterator[torch.Tensor]:
    """Mono 16 kHz ``[N]`` -> windows ``[b, samples_per_window]``, ``batch`` at a time, per ``plan``.

    The padded clip (``pad_before`` zeros, the audio, ``pad_after`` zeros, then the
    last window's tail) is never built whole: each batch copies only its own
    samples, so memory does not grow with the length of the speech. ``pad_mode``
    'zero' (or None) fills the tail with zeros, 'replicate' with the last sample
    of the zero-padded clip (a zero unless ``pad_after`` is 0), as the official code does.
    """
    if audio.ndim != 1 or audio.shape[0] != plan.n_samples:
        raise ValueError(f"audio must be [{plan.n_samples}] (the plan's length), got {tuple(audio.shape)}")
    if pad_mode not in (None, "zero", "replicate"):
        raise ValueError(f"unknown pad_mode {pad_mode!r}: use 'zero' or 'replicate'")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    size = plan.samples_per_window
    for first in range(0, plan.n_windows, batch):
        starts = plan.starts[first:first + batch]
        out = audio.new_zeros((len(starts), size))
        for row, lo in zip(out, starts):
            fill_window(row, lo, audio, plan.pad_before, plan.pad_after, pad_mode)
        yield out


def fill_window(row: torch.Tensor, lo: int, audio: torch.Tensor, audio_start: int, pad_after: int,
                pad_mode: str | None = "zero") -> None:
    """Write samples ``[lo, lo + len(row))`` of a padded clip into the zeroed ``row``, in place.

    The padded clip is: zeros up to ``audio_start``, ``audio`` ``[N]``, ``pad_after``
    zeros, then the last window's tail, filled per ``pad_mode`` as the official code
    does (see :func:`window_batches`). Live mode cuts its windows with it too,
    with ``audio`` the speech heard so far (``audio_start`` its padded position).
    """
    size = row.shape[0]
    audio_end = audio_start + audio.shape[0]
    tail_start = audio_end + pad_after
    tail = float(audio[-1]) if pad_mode == "replicate" and pad_after == 0 and audio.numel() else 0.0
    a, b = max(lo, audio_start), min(lo + size, audio_end)
    if b > a:
        row[a - lo:b - lo] = audio[a - audio_start:b - audio_start]
    if tail and lo + size > tail_start:
        row[max(tail_start, lo) - lo:] = tail


def split_windows(audio: torch.Tensor, plan: WindowPlan, pad_mode: str | None = "zero") -> torch.Tensor:
    """All windows at once: ``[n_windows, samples_per_window]`` (see :func:`window_batches`)."""
    return torch.cat(list(window_batches(audio, plan, pad_mode, batch=plan.n_windows)))
