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
"""
from __future__ import annotations

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
    """

    motion: MotionSettings = LIVE_MOTION
    mode: Mode = "low-latency"
    chunk: int = 8
    lookahead: int = 2
    batch_size: int | None = None
    paste: bool = True
    edits: Edits | None = None

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
    the first being frame ``start``; frame ``i`` is shown at ``i / fps`` seconds."""

    start: int
    fps: float
    images: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def indices(self) -> range:
        return range(self.start, self.start + len(self))

    @property
    def times(self) -> list[float]:
        """Presentation time of each frame (s, on the padded-speech clock)."""
        return [i / self.fps for i in self.indices]


@dataclass
class _Audio:
    """16 kHz speech heard so far, trimmed from the front as frames are committed."""

    samples: torch.Tensor                 # [n] float32, speech samples [dropped, heard)
    dropped: int = 0                      # speech samples trimmed from the front
    resampler: object | None = None       # soxr.ResampleStream (None at 16 kHz)
    rate: int | None = None
    chunks: list[torch.Tensor] = field(default_factory=list)   # pushed, not yet joined

    @property
    def heard(self) -> int:
        return self.dropped + self.samples.shape[0] + sum(c.shape[0] for c in self.chunks)

    def joined(self) -> torch.Tensor:
        if self.chunks:
            self.samples = torch.cat([self.samples, *self.chunks])
            self.chunks.clear()
        return self.samples


class LiveSession:
    """One live stream: :meth:`push` speech, get frames; :meth:`finish` flushes.

    ``push`` and ``finish`` buffer their audio at once and return an iterator
    that does the work lazily: iterating it samples every window the audio now
    allows and renders its frames, yielding :class:`LiveFrames` as each render
    chunk is ready. Work not iterated is done by the next iterator. One thread
    at a time; :meth:`cancel` (from any thread) stops the work at the next
    denoising step or render chunk. ``on_motion(chunk)`` sees each committed
    motion chunk (what the frames are rendered from) before it is rendered;
    with ``render=False`` the session only samples motion (its iterators yield nothing).
    """

    def __init__(self, models: JoyVASAModels, face: PhotoSource,
                 settings: LiveSettings = LiveSettings(),
                 driving: DrivingSettings = DrivingSettings(),
                 on_motion: Callable[[MotionSequence], None] | None = None,
                 render: bool = True) -> None:
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
        self._cancelled = False
        self.finished = False
        self.committed = 0              # frames whose motion is sampled
        self.rendered = 0               # frames handed out
        self._pending: deque[MotionSequence] = deque()
        self._frames = None if not render else iter_frames(
            models, face, MotionStream(self._committed_chunks(), fps=self.fps), driving,
            batch_size=settings.batch_size or settings.chunk, paste=settings.paste,
            progress=lambda _d, _t: self._check_cancel(), edits=settings.edits)

    # ------------------------------------------------------------------ input

    def push(self, pcm: np.ndarray | torch.Tensor, sample_rate: int) -> Iterator[LiveFrames]:
        """Add speech: ``pcm`` ``[N]`` or ``[C, N]`` (int16/int32/float PCM, any N >= 0) at
        ``sample_rate`` Hz (one rate per session). Returns the iterator of ready frames."""
        if self.finished:
            raise ValueError("the live stream was finished; start a new session for more speech")
        self._append(pcm, int(sample_rate))
        return self._work(final=False)

    def finish(self) -> Iterator[LiveFrames]:
        """End of speech: flush the resampler, pad like the official last window and
        commit every remaining frame. Returns the iterator of the last frames."""
        if not self.finished:
            if self._audio.resampler is not None:
                tail = self._audio.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                self._audio.chunks.append(torch.from_numpy(tail).to(self._audio.samples.device))
            self.finished = True
        return self._work(final=True)

    def cancel(self) -> None:
        """Stop: the work in progress raises :class:`LiveCancelled` at its next step."""
        self._cancelled = True

    def _check_cancel(self, *_args) -> None:
        if self._cancelled:
            raise LiveCancelled("the live session was cancelled")

    def _append(self, pcm: np.ndarray | torch.Tensor, rate: int) -> None:
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioError(f"sample_rate must lie in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {rate}")
        audio = self._audio
        if audio.rate is None:
            audio.rate = rate
            if rate != config.AUDIO_SAMPLE_RATE:
                import soxr

                audio.resampler = soxr.ResampleStream(rate, config.AUDIO_SAMPLE_RATE, 1,
                                                      dtype="float32", quality="HQ")
        elif rate != audio.rate:
            raise AudioError(f"the stream's sample rate is {audio.rate} Hz; a chunk came at {rate} Hz "
                             "(resample it, or start a new session)")
        x = to_mono(to_float_tensor(pcm)).detach().to("cpu", torch.float32)
        if x.numel() == 0:
            return
        if not torch.isfinite(x).all():
            raise AudioError("the audio chunk contains NaN or infinite samples")
        if audio.resampler is not None:
            x = torch.from_numpy(audio.resampler.resample_chunk(x.numpy()))
        audio.chunks.append(x.to(audio.samples.device))

    # ------------------------------------------------------------------ work

    def _committed_chunks(self) -> Iterator[MotionSequence]:
        """The motion chunks fed to the renderer (it reads one only after rendering the last)."""
        while self._pending:
            yield self._pending.popleft()
        raise RuntimeError("the live renderer read past the committed motion")   # a bug, never reached

    def _work(self, final: bool) -> Iterator[LiveFrames]:
        while True:
            # The steps the heard audio allows come first, at the end too: which steps run
            # never depends on how the audio was chunked.
            step = self._next_step()
            last = step is None and final
            if last:
                step = self._next_final_window()
            if step is None:
                return
            self._commit(*step, last=last)
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

    def _next_final_window(self) -> tuple[int, int] | None:
        """After finish: the next window of what remains (the offline last-window rule), or None."""
        heard, first = self._audio.heard, self.committed
        total = plan_windows(heard, fps=self.fps, n_motions=self.n_motions).n_frames \
            if heard >= self.spf else 0      # the offline frame count; shorter than a frame: none
        if first >= total:
            return None
        # exact: ``first`` is on the offline window grid (a multiple of n_motions)
        return first * self.spf, min(self.n_motions, total - first)

    def _commit(self, lo: int, keep: int, last: bool) -> None:
        """Sample the window starting at padded sample ``lo`` and commit its first ``keep`` frames."""
        audio = self._audio.joined()
        start = config.AUDIO_PAD_BEFORE + self._audio.dropped    # padded position of audio[0]
        heard = audio
        if not last and self.settings.mode == "low-latency":
            # exactly `lookahead` frames beyond the committed ones, however the audio arrived:
            # the frames are a function of the speech and the settings, not of network timing
            heard = audio[:lo + (keep + self.settings.lookahead) * self.spf - start]
        row = audio.new_zeros(self.window)
        # The speech heard so far is the clip: unheard samples are padded like its last window.
        fill_window(row, lo, heard, start, config.AUDIO_PAD_AFTER, self.pad_mode)
        generator = self.models.motion_generator
        with torch.no_grad():
            feat = encode_audio(generator, row[None], frame_num=self.n_motions).audio_feat
        chunk = self._sampler(feat, keep)
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
            out = LiveFrames(self.rendered, self.fps, images)
            self.rendered += len(out)
            yield out
