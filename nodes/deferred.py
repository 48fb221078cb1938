"""AudioToMotion's motion in the nodes: sampled as a renderer reads it.

AudioToMotion outputs a :class:`GeneratedMotion` (a
:class:`joyvasa_core.motion.DeferredMotion` that knows the models sampling it)
instead of sampling the whole clip, so RenderToFile and RenderPortrait start
rendering after the first window. Every JOYVASA_MOTION input accepts it and a
plain :class:`~joyvasa_core.motion.MotionSequence` (LoadMotion,
MotionFromVideo, MotionMix):

* renderers call :func:`ready_for` (the renderer and, while the motion is
  still pending, its motion generator, in ONE load so that ComfyUI's memory
  manager does not evict one to load the other) and pass :func:`for_render`
  to the pipeline;
* nodes that need the whole motion (SaveMotion, MotionPreview, MotionMix,
  the dubbing nodes, which resample it) take :func:`whole_motion`.

The first complete read keeps the motion, so a graph that renders it and
saves it samples once, whichever node runs first, and a re-queued workflow
whose AudioToMotion output ComfyUI cached replays it.
"""
from __future__ import annotations

from collections.abc import Callable

import comfy.model_management as mm

from joyvasa_core import pipeline
from joyvasa_core.motion import DeferredMotion, MotionSequence, MotionStream
from .models import LoadedModels
from .progress import check_interrupt, progress_bar


class GeneratedMotion(DeferredMotion):
    """A :class:`DeferredMotion` with the :class:`LoadedModels` whose motion generator samples it."""

    def __init__(self, loaded: LoadedModels,
                 open_stream: Callable[..., MotionStream]) -> None:
        self.loaded = loaded
        super().__init__(open_stream)


def generated_motion(loaded: LoadedModels, waveform, sample_rate: int, **options) -> GeneratedMotion:
    """The deferred motion of speech ``waveform`` ``[C, T]`` at ``sample_rate`` Hz.

    options: :func:`joyvasa_core.pipeline.audio_motion_stream`'s. The motion
    generator is loaded now: the stream opened here checks the audio (bad
    audio raises) and draws its starting noise on the generator's device.
    """
    core = loaded.ready("motion_generator")

    def open_stream(progress=None) -> MotionStream:
        return pipeline.audio_motion_stream(core, waveform, sample_rate, progress=progress,
                                            **options)

    return GeneratedMotion(loaded, open_stream)


def ready_for(models: LoadedModels, motion, *parts: str) -> pipeline.JoyVASAModels:
    """``models.ready(*parts)``, plus the motion generator that will sample ``motion`` while
    it is read (a pending :class:`GeneratedMotion`, of these models or of another
    LoadJoyVASAModels), all in one load. Returns ``models``' core models."""
    patchers = models.patchers_of(*parts)
    if isinstance(motion, GeneratedMotion) and motion.pending:
        patchers += [p for p in motion.loaded.patchers_of("motion_generator") if p not in patchers]
    mm.load_models_gpu(patchers, force_full_load=True)
    return models.models


def for_render(motion):
    """What a renderer hands the pipeline: a deferred motion as one read of its chunks (sampled
    as frames render, ComfyUI's cancel honoured between denoising steps), else ``motion``."""
    if isinstance(motion, DeferredMotion):
        return motion.stream(progress=check_interrupt)
    return motion


def whole_motion(motion: MotionSequence | DeferredMotion | None) -> MotionSequence | None:
    """A JOYVASA_MOTION value as one :class:`MotionSequence` (None stays None). A pending
    motion is sampled now, its generator loaded first, with a progress bar."""
    if not isinstance(motion, DeferredMotion):
        return motion
    if isinstance(motion, GeneratedMotion) and motion.pending:
        motion.loaded.ready("motion_generator")
    return motion.sequence(progress=progress_bar())
