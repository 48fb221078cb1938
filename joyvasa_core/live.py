"""Live mode: speech pushed in chunks as it arrives, frames out as soon as they are ready.

A :class:`LiveSession` holds one stream: pushed PCM of any chunk size is
resampled incrementally to 16 kHz (python-soxr's ``ResampleStream``, HQ), cut
into motion windows, sampled by the same :class:`~joyvasa_core.generate.WindowSampler`
as offline generation and rendered by the same :func:`~joyvasa_core.pipeline.iter_frames`
(fed the committed motion chunks one by one). Two modes:

* ``"exact"``: a window is sampled once all its audio has arrived; the frames
  equal the offline result (same seed and sampler; bit for bit with 16 kHz
  input). Latency: one whole window (``n_motions`` frames, 4 s with the
  released model) plus the work.
* ``"low-latency"`` (default): each step samples the window starting at the
  first uncommitted frame, with its not-yet-heard audio padded the way the
  official code pads a clip's last window (``pad_after`` zeros, then the
  checkpoint's ``pad_mode``: the released model has no validity indicator, so
  that padding is what it knows), and commits its first ``chunk`` frames once
  the audio reaches ``lookahead`` frames beyond them. The window sees exactly
  that audio (later samples already received wait for their own step), so the
  frames depend on the speech and the settings only, not on how it was chunked
  or timed. The committed frames (coefficients and audio features) are the
  next window's context; :meth:`LiveSession.finish` commits the rest in whole
  windows.

Timeline: frame ``f`` covers 16 kHz samples ``[640 f, 640 (f + 1))`` of the
padded stream (``AUDIO_PAD_BEFORE`` zeros, then the speech, as offline; 25 fps),
so frame ``f`` is shown at ``f / fps`` seconds of the padded speech.
:meth:`LiveSession.finish` adds the ``AUDIO_PAD_AFTER`` zeros and commits the
rest: a stream of ``N`` samples gives the offline count ``int((N + 1920) / 640)``.

A voice agent's avatar lives longer than one utterance:

* :meth:`LiveSession.end_reply` ends a reply the way :meth:`~LiveSession.finish`
  ends the stream (the pad, the offline frame count), and the stream goes on;
* :meth:`LiveSession.idle` adds frames of silence: the motion generator keeps
  sampling (the head, eyes and brows move) and the silence gate holds the lips
  shut; speech pushed afterwards continues from that motion (the committed
  frames are the next window's context), so nothing jumps;
* :meth:`LiveSession.interrupt` (from any thread) drops the speech not yet
  committed; the render chunk in flight finishes, then the stream is idle.

Each :class:`LiveFrames` carries the sound its frames cover (``audio``, at the
rate the speech was pushed; zeros for idle and padding), cut from the same
clock, so a transport plays picture and sound in sync and the pieces add up
to the stream's sound. The silence gate (:class:`~joyvasa_core.silence.SilenceGate`,
on by default) runs the voice-activity detector on exactly the audio each
window was sampled from, so a live stream's lips depend on the speech and
the settings only; a ramp into speech reaches back at most ``lookahead``
frames (the rest of it was already shown).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from . import config
from .audio import AudioError, fill_window, plan_windows, to_float_tensor, to_mono
from .dit.audio_encoder import encode_audio
from .driving import DrivingSettings
from .edits import Edits
from .generate import WindowSampler
from .motion import MotionSequence, MotionStream
from .pipeline import JoyVASAModels, iter_frames
from .settings import MotionSettings
from .silence import SilenceGate, StreamGate
from .sources import PhotoSource
from .video import frames_to_uint8_tensor

Mode = Literal["low-latency", "exact"]
MODES: tuple[str, ...] = ("low-latency", "exact")
#: Sample rates a live stream may announce (Hz).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000


class LiveCancelled(RuntimeError):
    """The session was cancelled (its client left) while it was working."""


#: The live default of the motion sampler: DDIM with 10 jumps (``"ddpm"`` is the official one).
LIVE_MOTION = MotionSettings(sampler="ddim", steps=10)


@dataclass(frozen=True)
class LiveSettings:
    """How a live session samples and renders.

    motion: the motion sampler's settings (:class:`~joyvasa_core.settings.MotionSettings`,
        as offline; DDIM with 10 jumps by default, its steps capped at the
        checkpoint's schedule length).
    mode: ``"low-latency"`` (default) or ``"exact"`` (see the module docstring).
    chunk: frames committed per low-latency step (each step samples a whole window).
    lookahead: frames of audio beyond the committed ones a low-latency step waits for.
    batch_size: frames per render chunk (None: up to ``chunk``).
    paste: frames pasted back into the photo (True) or the 512 crop.
    edits: expression edits (:class:`~joyvasa_core.edits.Edits`, e.g. from
        :func:`~joyvasa_core.edits.build_edits`, whose automatic blinks are
        seeded by the motion seed and run for as long as the stream does), or None.
    silence: the silence gate (on by default; ``SilenceGate(enabled=False)``: the
        lips as generated).
    """

    motion: MotionSettings = LIVE_MOTION
    mode: Mode = "low-latency"
    chunk: int = 8
    lookahead: int = 2
    batch_size: int | None = None
    paste: bool = True
    edits: Edits | None = None
    silence: SilenceGate = SilenceGate()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"chunk must be a whole number of frames >= 1, got {self.chunk!r}")
        if isinstance(self.lookahead, bool) or not isinstance(self.lookahead, int) \
                or self.lookahead < 0:
            raise ValueError(f"lookahead must be a whole number of frames >= 0, got {self.lookahead!r}")


@dataclass(frozen=True)
class LiveFrames:
    """Consecutive frames of a live stream: ``images`` ``[b, H, W, 3]`` uint8 on the CPU,
    the first being frame ``start``; frame ``i`` is shown at ``i / fps`` seconds.

    audio: ``[n]`` float32 mono (-1..1) at ``sample_rate`` Hz: the sound those frames
    cover, samples ``[round(start · r / fps), round((start + b) · r / fps))`` of the
    stream's clock (the speech as pushed; zeros for padding and idle frames).
    """

    start: int
    fps: float
    images: torch.Tensor
    audio: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    sample_rate: int = config.AUDIO_SAMPLE_RATE

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def indices(self) -> range:
        return range(self.start, self.start + len(self))

    @property
    def times(self) -> list[float]:
        """Presentation time of each frame (s, on the padded-speech clock)."""
        return [i / self.fps for i in self.indices]


class _Playback:
    """The stream's sound at the rate it was pushed, cut into the frames' spans: sample
    ``k`` plays at ``k / rate`` s of the stream's clock (frame ``f`` at ``f / fps``)."""

    def __init__(self, rate: int, fps: float, first_frame: int = 0) -> None:
        self.rate, self.fps = rate, fps
        self.start = self.end = self.edge(first_frame)     # held samples: [start, end)
        self.parts: deque[np.ndarray] = deque()

    def edge(self, frame: int) -> int:
        """The first sample of ``frame``."""
        return round(frame * self.rate / self.fps)

    def add(self, samples: np.ndarray) -> None:
        if samples.size:
            self.parts.append(samples)
            self.end += samples.size

    def pad_to(self, frame: int) -> None:
        """Silence up to the start of ``frame``."""
        self.add(np.zeros(max(0, self.edge(frame) - self.end), np.float32))

    def cut_at(self, frame: int) -> None:
        """Drop what would play from the start of ``frame`` on."""
        excess = self.end - max(self.edge(frame), self.start)
        while excess > 0 and self.parts:
            last = self.parts.pop()
            keep = max(0, last.size - excess)
            excess -= last.size - keep
            self.end -= last.size - keep
            if keep:
                self.parts.append(last[:keep])

    def take(self, stop_frame: int) -> torch.Tensor:
        """``[n]`` float32: the samples up to the start of ``stop_frame`` (zeros where none
        were added), handed out once."""
        n = self.edge(stop_frame) - self.start
        out, filled = np.zeros(max(0, n), np.float32), 0
        while filled < n and self.parts:
            part = self.parts.popleft()
            used = min(part.size, n - filled)
            out[filled:filled + used] = part[:used]
            filled += used
            if used < part.size:
                self.parts.appendleft(part[used:])
        self.start += max(0, n)
        self.end = max(self.end, self.start)
        return torch.from_numpy(out)


@dataclass
class _Audio:
    """16 kHz speech heard so far, trimmed from the front as frames are committed."""

    samples: torch.Tensor                 # [n] float32, speech samples [dropped, heard)
    dropped: int = 0                      # speech samples trimmed from the front
    resampler: object | None = None       # soxr.ResampleStream (None at 16 kHz)
    rate: int | None = None
    chunks: list[torch.Tensor] = field(default_factory=list)   # pushed, not yet joined
    speech: int = 0                       # speech samples heard in all (no added zeros)

    @property
    def heard(self) -> int:
        return self.dropped + self.samples.shape[0] + sum(c.shape[0] for c in self.chunks)

    def joined(self) -> torch.Tensor:
        if self.chunks:
            self.samples = torch.cat([self.samples, *self.chunks])
            self.chunks.clear()
        return self.samples

    def new_resampler(self) -> None:
        """A fresh resampler for the next reply (its rate kept; none at 16 kHz)."""
        self.resampler = None
        if self.rate is not None and self.rate != config.AUDIO_SAMPLE_RATE:
            import soxr

            self.resampler = soxr.ResampleStream(self.rate, config.AUDIO_SAMPLE_RATE, 1,
                                                 dtype="float32", quality="HQ")

    def flush_resampler(self) -> None:
        """The samples the resampler still holds, appended (the end of a reply)."""
        if self.resampler is not None:
            self.add_speech(torch.from_numpy(
                self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)))
            self.new_resampler()

    def add_speech(self, x: torch.Tensor) -> None:
        self.chunks.append(x.to(self.samples.device))
        self.speech += x.shape[0]

    def zeros(self, n: int) -> None:
        if n > 0:
            self.chunks.append(self.samples.new_zeros(n))

    def cut(self, heard: int) -> None:
        """Forget everything heard from speech sample ``heard`` on (and what the
        resampler holds)."""
        samples = self.joined()
        if heard <= self.dropped:
            self.samples, self.dropped = samples[:0], max(heard, 0)
        else:
            self.samples = samples[:heard - self.dropped]
        self.new_resampler()


class LiveSession:
    """One live stream: :meth:`push` speech, get frames; :meth:`finish` flushes.

    ``push``, ``end_reply``, ``idle`` and ``finish`` buffer their audio at once and
    return an iterator that does the work lazily: iterating it samples every
    window the audio now allows and renders its frames, yielding
    :class:`LiveFrames` as each render chunk is ready. Work not iterated is done
    by the next iterator. One thread at a time; :meth:`cancel` and
    :meth:`interrupt` may come from any thread (cancel stops the work at the
    next denoising step or render chunk; interrupt drops the reply after the
    render chunk in flight). ``on_motion(chunk)`` sees each committed motion
    chunk (what the frames are rendered from) before it is rendered; with
    ``render=False`` the session only samples motion (its iterators yield
    nothing). sample_rate: the rate the speech will come at, when known (the
    idle frames before the first push carry their silence at it; else 16 kHz).
    """

    def __init__(self, models: JoyVASAModels, face: PhotoSource,
                 settings: LiveSettings = LiveSettings(),
                 driving: DrivingSettings = DrivingSettings(),
                 on_motion: Callable[[MotionSequence], None] | None = None,
                 render: bool = True, sample_rate: int | None = None) -> None:
        generator = models.motion_generator
        if generator is None or models.template is None:
            raise ValueError("these models have no motion generator: load them with load_models() "
                             "from a folder holding JoyVASA/motion_generator and motion_template")
        args = generator.args
        spf = config.AUDIO_SAMPLE_RATE / args.fps
        if spf != int(spf):
            raise ValueError(f"live mode needs a whole number of 16 kHz samples per frame; "
                             f"{args.fps} fps gives {spf}")
        if settings.chunk + settings.lookahead > args.n_motions:
            raise ValueError(f"chunk + lookahead must fit in one window of {args.n_motions} frames, "
                             f"got {settings.chunk} + {settings.lookahead}")
        if sample_rate is not None:
            _check_rate(sample_rate)
        self.models, self.settings, self.on_motion = models, settings, on_motion
        self.fps, self.spf = float(args.fps), int(spf)
        self.n_motions, self.pad_mode = args.n_motions, args.pad_mode
        self.window = self.n_motions * self.spf
        num_steps = generator.diffusion_sched.schedule().num_steps
        motion = settings.motion
        if motion.sampler == "ddpm":
            motion = replace(motion, steps=None)
        else:
            motion = replace(motion, steps=min(motion.steps or num_steps, num_steps))
        self._sampler = WindowSampler(generator, models.template, motion,
                                      on_step=self._check_cancel)
        self._audio = _Audio(torch.zeros(0, device=models.device))
        self._playback = _Playback(sample_rate or config.AUDIO_SAMPLE_RATE, self.fps)
        self._playback.pad_to(config.AUDIO_PAD_BEFORE // self.spf)
        self._cancelled = False
        self._interrupted = threading.Event()
        self.finished = False
        self.committed = 0              # frames whose motion is sampled
        self.rendered = 0               # frames handed out
        self._target = 0                # frames to commit whatever the lookahead (replies ended, idle)
        self._speech_end = 0            # frames up to the end of the last ended reply
        self._reply_open = False        # speech pushed since the last reply ended
        self._gate = StreamGate(settings.silence, self.fps)
        self._pending: deque[MotionSequence] = deque()
        self._frames = None if not render else iter_frames(
            models, face, MotionStream(self._committed_chunks(), fps=self.fps), driving,
            batch_size=settings.batch_size or settings.chunk, paste=settings.paste,
            progress=lambda _d, _t: self._check_cancel(), edits=settings.edits)

    # ------------------------------------------------------------------ input

    @property
    def pending(self) -> bool:
        """Whether pushed speech has frames not yet handed out."""
        return self._reply_open or self.rendered < self._speech_end

    @property
    def speech_frames(self) -> int:
        """The frames the speech pushed so far accounts for: the offline count of all of it
        as one clip (``int((N + 1920) / 640)`` for N samples at 16 kHz; idle frames and the
        replies' padding not counted)."""
        return plan_windows(self._audio.speech, fps=self.fps, n_motions=self.n_motions).n_frames \
            if self._audio.speech >= self.spf else 0

    def push(self, pcm: np.ndarray | torch.Tensor, sample_rate: int) -> Iterator[LiveFrames]:
        """Add speech: ``pcm`` ``[N]`` or ``[C, N]`` (int16/int32/float PCM, any N >= 0) at
        ``sample_rate`` Hz (one rate per session). Returns the iterator of ready frames."""
        if self.finished:
            raise ValueError("the live stream was finished; start a new session for more speech")
        self._take_interrupt()
        self._append(pcm, int(sample_rate))
        return self._work(final=False)

    def end_reply(self) -> Iterator[LiveFrames]:
        """The current reply's speech is complete: pad it like the offline last window and
        commit all its frames; the stream stays open for more speech or idle frames.
        Returns the iterator of the reply's last frames."""
        self._take_interrupt()
        self._close_reply()
        return self._work(final=False)

    def idle(self, count: int) -> Iterator[LiveFrames]:
        """``count`` more frames of silence after what was pushed (an open reply is ended
        first): generated idle motion, the lips held by the silence gate, blinks if the
        edits ask. Returns the iterator of those frames (and of the reply's last ones)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"idle frames must be a whole number >= 0, got {count!r}")
        if self.finished:
            raise ValueError("the live stream was finished; start a new session")
        self._take_interrupt()
        self._close_reply()
        self._target = max(self._target, self.committed) + count
        self._audio.zeros(self._target * self.spf - config.AUDIO_PAD_BEFORE - self._audio.heard)
        self._playback.pad_to(self._target)
        return self._work(final=False)

    def finish(self) -> Iterator[LiveFrames]:
        """End of speech: flush the resampler, pad like the official last window and
        commit every remaining frame. Returns the iterator of the last frames."""
        self._take_interrupt()
        if not self.finished:
            self._audio.flush_resampler()
            self.finished = True
            self._speech_end = max(self._speech_end, self._final_frames())
            self._reply_open = False
        return self._work(final=True)

    def interrupt(self) -> None:
        """Drop the speech not yet committed (from any thread): the render chunk in flight
        finishes, the iterators then stop, and the stream is idle; later frames continue
        from the motion shown."""
        self._interrupted.set()

    def cancel(self) -> None:
        """Stop: the work in progress raises :class:`LiveCancelled` at its next step."""
        self._cancelled = True

    def _check_cancel(self, *_args) -> None:
        if self._cancelled:
            raise LiveCancelled("the live session was cancelled")

    def _append(self, pcm: np.ndarray | torch.Tensor, rate: int) -> None:
        _check_rate(rate)
        audio = self._audio
        if audio.rate is None:
            audio.rate = rate
            audio.new_resampler()
            if rate != self._playback.rate:       # only silence so far: re-clock it
                self._playback = _Playback(rate, self.fps, self.rendered)
                self._playback.pad_to(max(self.committed, self._target,
                                          config.AUDIO_PAD_BEFORE // self.spf))
        elif rate != audio.rate:
            raise AudioError(f"the stream's sample rate is {audio.rate} Hz; a chunk came at {rate} Hz "
                             "(resample it, or start a new session)")
        x = to_mono(to_float_tensor(pcm)).detach().to("cpu", torch.float32)
        if x.numel() == 0:
            return
        if not torch.isfinite(x).all():
            raise AudioError("the audio chunk contains NaN or infinite samples")
        self._playback.add(x.numpy())
        self._reply_open = True
        if audio.resampler is not None:
            x = torch.from_numpy(audio.resampler.resample_chunk(x.numpy()))
        audio.add_speech(x)

    def _close_reply(self) -> None:
        """End the open reply: the resampler's tail, then zeros up to the offline frame count
        (``AUDIO_PAD_AFTER`` after the speech, rounded down to a frame), which become
        frames to commit whatever the lookahead."""
        if not self._reply_open:
            return
        self._audio.flush_resampler()
        padded = config.AUDIO_PAD_BEFORE + self._audio.heard + config.AUDIO_PAD_AFTER
        end = padded // self.spf
        self._audio.zeros(end * self.spf - padded + config.AUDIO_PAD_AFTER)
        self._playback.pad_to(end)
        self._playback.cut_at(end)
        self._target = self._speech_end = max(self._target, end)
        self._reply_open = False

    def _take_interrupt(self) -> None:
        """Apply a requested interrupt: forget every sample after the committed frames."""
        if not self._interrupted.is_set():
            return
        self._interrupted.clear()
        frames = self.committed
        self._audio.cut(frames * self.spf - config.AUDIO_PAD_BEFORE)
        self._playback.cut_at(frames)
        self._gate.restart(frames)
        self._target = frames
        self._speech_end = min(self._speech_end, frames)
        self._reply_open = False

    # ------------------------------------------------------------------ work

    def _committed_chunks(self) -> Iterator[MotionSequence]:
        """The motion chunks fed to the renderer (it reads one only after rendering the last)."""
        while self._pending:
            yield self._pending.popleft()
        raise RuntimeError("the live renderer read past the committed motion")   # a bug, never reached

    def _work(self, final: bool) -> Iterator[LiveFrames]:
        while True:
            if self._interrupted.is_set():
                self._take_interrupt()
                return
            # The steps the heard audio allows come first, at the end too: which steps run
            # never depends on how the audio was chunked.
            step, whole = self._next_step(), False
            if step is None and self._target > self.committed:
                step, whole = (self.committed * self.spf,
                               min(self.n_motions, self._target - self.committed)), True
            if step is None and final:
                step, whole = self._next_final_window(), True
            if step is None:
                return
            self._commit(*step, whole=whole)
            if self._frames is not None:
                yield from self._render()

    def _next_step(self) -> tuple[int, int] | None:
        """(window start in padded samples, frames to commit) when the audio allows a step, else None."""
        available = config.AUDIO_PAD_BEFORE + self._audio.heard      # padded samples known
        first = self.committed
        if self.settings.mode == "exact":
            ready = available >= first * self.spf + self.window
            return (first * self.spf, self.n_motions) if ready else None
        chunk = self.settings.chunk
        ready = available >= (first + chunk + self.settings.lookahead) * self.spf
        return (first * self.spf, chunk) if ready else None

    def _final_frames(self) -> int:
        """The stream's frame count once finished: the offline count of all it heard."""
        heard = self._audio.heard
        return plan_windows(heard, fps=self.fps, n_motions=self.n_motions).n_frames \
            if heard >= self.spf else 0      # shorter than a frame: none

    def _next_final_window(self) -> tuple[int, int] | None:
        """After finish: the next window of what remains (the offline last-window rule), or None."""
        first, total = self.committed, max(self._final_frames(), self._target)
        if first >= total:
            return None
        # exact: ``first`` is on the offline window grid (a multiple of n_motions)
        return first * self.spf, min(self.n_motions, total - first)

    def _commit(self, lo: int, keep: int, whole: bool) -> None:
        """Sample the window starting at padded sample ``lo`` and commit its first ``keep``
        frames (``whole``: from all the audio heard, else up to the lookahead)."""
        audio = self._audio.joined()
        start = config.AUDIO_PAD_BEFORE + self._audio.dropped    # padded position of audio[0]
        heard = audio
        if not whole and self.settings.mode == "low-latency":
            # exactly `lookahead` frames beyond the committed ones, however the audio arrived:
            # the frames are a function of the speech and the settings, not of network timing
            heard = audio[:lo + (keep + self.settings.lookahead) * self.spf - start]
        row = audio.new_zeros(self.window)
        # The speech heard so far is the clip: unheard samples are padded like its last window.
        fill_window(row, lo, heard, start, config.AUDIO_PAD_AFTER, self.pad_mode)
        generator = self.models.motion_generator
        with torch.no_grad():
            feat = encode_audio(generator, row[None], frame_num=self.n_motions).audio_feat
        self._gate.hear(heard, self._audio.dropped)
        chunk = self._gate(self._sampler(feat, keep), self.committed)
        if self.on_motion is not None:
            self.on_motion(chunk)
        if self._frames is not None:
            self._pending.append(chunk)
        self.committed += keep
        # Keep only the speech a later window can reach: windows start at the first uncommitted frame.
        keep_from = min(max(0, self.committed * self.spf - start), audio.shape[0])
        if keep_from:
            self._audio.samples = audio[keep_from:]
            self._audio.dropped += keep_from

    def _render(self) -> Iterator[LiveFrames]:
        while self.rendered < self.committed:
            images = frames_to_uint8_tensor(next(self._frames)).cpu()
            stop = self.rendered + images.shape[0]
            out = LiveFrames(self.rendered, self.fps, images, self._playback.take(stop),
                             self._playback.rate)
            self.rendered = stop
            yield out


def _check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample_rate must lie in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {rate}")
