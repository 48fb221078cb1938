"""AudioToMotion's motion in the nodes: sampled as a renderer reads it.

AudioToMotion outputs a :class:`GeneratedMotion` (a :class:`DeferredMotion`
that knows the models sampling it) instead of sampling the whole clip, so
RenderToFile, RenderPortrait and the dubbing nodes start rendering after the
first window. Every JOYVASA_MOTION input accepts it and a plain
:class:`~joyvasa_core.motion.MotionSequence` (LoadMotion, MotionFromVideo,
MotionMix); both are a :class:`~joyvasa_core.motion.Motion`, read by the
pipeline through ``stream()``:

* renderers call :func:`ready_for` (the renderer and, while the motion is
  still pending, its motion generator, in ONE load so that ComfyUI's memory
  manager does not evict one to load the other) and hand the motion on;
* nodes that need the whole motion (SaveMotion, MotionPreview, MotionMix)
  take :func:`whole_motion`.

The first complete read keeps the motion, so a graph that renders it and
saves it samples once, whichever node runs first, and a re-queued workflow
whose AudioToMotion output ComfyUI cached replays it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import comfy.model_management as mm
import torch

from joyvasa_core import config, pipeline
from joyvasa_core.motion import MotionSequence, MotionStream
from joyvasa_core.settings import MotionSettings
from joyvasa_core.silence import SilenceGate
from .models import LoadedModels
from .progress import check_interrupt, progress_bar


class _Relay:
    """``progress(done, total)`` forwarded to ``target``, the progress of whichever read is
    consuming the stream it was opened with (None: dropped)."""

    def __init__(self) -> None:
        self.target: Callable[[int, int], None] | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.target is not None:
            self.target(done, total)


class DeferredMotion:
    """A whole clip's motion, sampled lazily as it is read, and replayable once read to the end.

    What it is for: the AudioToMotion node hands one on instead of a sampled
    :class:`MotionSequence`, so RenderToFile / RenderPortrait and the dubbing
    nodes start writing frames after the first window is sampled instead of
    after the whole clip (an hour of speech samples for minutes).

    ``open_stream(progress=...)`` opens the clip's :class:`MotionStream` (for
    example a ``functools.partial`` of :func:`joyvasa_core.pipeline.audio_motion_stream`);
    ``progress(done, total)`` is then called while its windows are sampled (it
    forwards to the progress of the read consuming that stream).
    The constructor opens one stream at once, which checks the audio (bad
    audio raises here) and fixes ``fps`` and ``n_frames`` (known in advance
    offline); that stream serves the first read.

    Reads (:meth:`chunks`, iteration, :meth:`stream`: it is a
    :class:`~joyvasa_core.motion.Motion`, so the pipeline reads it like any
    other motion) yield the clip's
    consecutive chunks (one per sampled window). The first read samples as it
    is consumed and keeps the chunks; once a read has run to the end, later
    reads replay them without sampling. A read abandoned half-way (an error, a
    cancel, a closed generator) keeps nothing, and the next read opens a fresh
    stream: sampling is seeded, so it gives the same motion. The chunks joined
    (:meth:`sequence`) equal :func:`~joyvasa_core.pipeline.audio_to_motion` of
    the same audio and options exactly (bit for bit).
    """

    def __init__(self, open_stream: Callable[..., MotionStream]) -> None:
        self._open_stream = open_stream
        self._unread: tuple[MotionStream, _Relay] | None = self._open()
        stream = self._unread[0]
        if stream.n_frames is None:
            raise ValueError("a deferred motion needs a stream of known length (an offline clip); "
                             "read a live stream directly instead")
        self.fps = stream.fps
        self.n_frames = int(stream.n_frames)
        self._chunks: list[MotionSequence] | None = None   # kept by the first complete read
        self._whole: MotionSequence | None = None

    def _open(self) -> tuple[MotionStream, _Relay]:
        relay = _Relay()
        return self._open_stream(progress=relay), relay

    def __len__(self) -> int:
        return self.n_frames

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.n_frames / self.fps

    @property
    def pending(self) -> bool:
        """True until one read has run to the end (reads sample until then)."""
        return self._chunks is None

    def chunks(self, progress: Callable[[int, int], None] | None = None) -> Iterator[MotionSequence]:
        """The consecutive :class:`MotionSequence` chunks of the clip (one per window).

        progress: ``progress(done, total)`` per denoising step while this read
        samples (raising from it cancels the read); unused when replaying.
        """
        if self._chunks is not None:
            yield from self._chunks
            return
        unread, self._unread = self._unread, None
        stream, relay = unread if unread is not None else self._open()
        relay.target = progress
        kept = []
        for chunk in stream:
            kept.append(chunk)
            yield chunk
        if self._chunks is None:
            self._chunks = kept

    def __iter__(self) -> Iterator[MotionSequence]:
        return self.chunks()

    def stream(self, progress: Callable[[int, int], None] | None = check_interrupt) -> MotionStream:
        """One read (:meth:`chunks`) as a :class:`MotionStream` (``fps``, ``n_frames`` known);
        by default ComfyUI's cancel is honoured between denoising steps."""
        return MotionStream(self.chunks(progress), fps=self.fps, n_frames=self.n_frames)

    def sequence(self, progress: Callable[[int, int], None] | None = None) -> MotionSequence:
        """All chunks joined (sampled first if still pending; joined once, then reused)."""
        if self._whole is None:
            self._whole = MotionSequence.cat(self.chunks(progress))
        return self._whole


class GeneratedMotion(DeferredMotion):
    """A :class:`DeferredMotion` of speech, with the :class:`LoadedModels` whose motion
    generator samples it and what it is sampled from (``waveform`` ``[C, T]`` at
    ``sample_rate`` Hz, the settings and the silence gate)."""

    def __init__(self, loaded: LoadedModels, waveform: torch.Tensor, sample_rate: int,
                 settings: MotionSettings, silence: SilenceGate) -> None:
        self.loaded, self.waveform, self.sample_rate = loaded, waveform, int(sample_rate)
        self.settings, self.silence = settings, silence
        core = loaded.ready("motion_generator")

        def open_stream(progress=None) -> MotionStream:
            return pipeline.audio_motion_stream(core, waveform, sample_rate, settings,
                                                silence=silence, progress=progress)
        super().__init__(open_stream)

    def lengthened(self, n_frames: int) -> "GeneratedMotion":
        """The same speech followed by silence, ``n_frames`` frames long (a listener who
        stays on screen after speaking), sampled with the same settings; itself when it is
        that long already."""
        if n_frames <= self.n_frames:
            return self
        spf = config.AUDIO_SAMPLE_RATE / self.fps
        # the offline count is int((N + 1920) / 640): aim at the middle of the frame's span
        samples = (n_frames + 0.5) * spf - config.AUDIO_PAD_BEFORE - config.AUDIO_PAD_AFTER
        total = round(samples * self.sample_rate / config.AUDIO_SAMPLE_RATE)
        padded = torch.nn.functional.pad(self.waveform, (0, max(0, total - self.waveform.shape[-1])))
        return GeneratedMotion(self.loaded, padded, self.sample_rate, self.settings, self.silence)


def generated_motion(loaded: LoadedModels, waveform, sample_rate: int,
                     settings: MotionSettings, silence: SilenceGate = SilenceGate()
                     ) -> GeneratedMotion:
    """The deferred motion of speech ``waveform`` ``[C, T]`` at ``sample_rate`` Hz.

    settings: how it is sampled; silence: the silence gate. The motion generator is loaded now: the
    stream opened here checks the audio (bad audio raises) and draws its
    starting noise on the generator's device.
    """
    return GeneratedMotion(loaded, torch.as_tensor(waveform), sample_rate, settings, silence)


def ready_for(models: LoadedModels, motion, *parts: str) -> pipeline.JoyVASAModels:
    """``models.ready(*parts)``, plus the motion generator that will sample ``motion`` while
    it is read (a pending :class:`GeneratedMotion`, of these models or of another
    LoadJoyVASAModels), all in one load. Returns ``models``' core models."""
    patchers = models.patchers_of(*parts)
    if isinstance(motion, GeneratedMotion) and motion.pending:
        patchers += [p for p in motion.loaded.patchers_of("motion_generator") if p not in patchers]
    mm.load_models_gpu(patchers, force_full_load=True)
    return models.models


def whole_motion(motion: MotionSequence | DeferredMotion | None) -> MotionSequence | None:
    """A JOYVASA_MOTION value as one :class:`MotionSequence` (None stays None). A pending
    motion is sampled now, its generator loaded first, with a progress bar."""
    if not isinstance(motion, DeferredMotion):
        return motion
    if isinstance(motion, GeneratedMotion) and motion.pending:
        motion.loaded.ready("motion_generator")
    return motion.sequence(progress=progress_bar())
