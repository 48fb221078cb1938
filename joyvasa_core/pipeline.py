"""The JoyVASA pipeline: photo (or video) + speech -> talking-head frames, streamed.

It composes the stages; each is usable on its own (the ComfyUI nodes map one
to one onto them):

1. :func:`load_models` -> :class:`JoyVASAModels` (LivePortrait F/M/W/G/S, the
   motion generator and its motion template, on one device and dtype);
2. a source (:mod:`joyvasa_core.sources`): :func:`extract_face` -> a
   :class:`~joyvasa_core.sources.PhotoSource`, or a tracked
   :class:`~joyvasa_core.sources.VideoSource`;
3. :func:`audio_motion_stream` -> a :class:`~joyvasa_core.motion.MotionStream`
   (one chunk per sampled window; :func:`audio_to_motion` collects it);
4. :func:`iter_frames` / :func:`render_to_file`: driving keypoints, W + G and
   paste-back on the device, chunk by chunk, as the motion stream is read; the
   file writer encodes each chunk at once, so host memory does not grow with
   the length of the speech.

Motion is read as a stream everywhere (anything with ``stream()``,
:class:`~joyvasa_core.motion.Motion`). ``progress(done, total)`` callables are
called at least once per window or chunk; raising from one cancels the work
(ComfyUI's interrupt does that).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .devices import PendingCopy, copy_async, resolve_device, resolve_dtype
from .driving import DrivingSettings
from .edits import Edits
from .loaders import LivePortraitModels
from .motion import Motion, MotionSequence, MotionStream, MotionTemplate
from .render import RenderOptions, frames_per_chunk, iter_render
from .settings import MotionSettings
from .silence import SilenceGate
from .sources import PhotoSource, Source, SourceChunk, SourceStream
from .video import VideoWriter, frames_to_uint8_tensor

__all__ = [
    "JoyVASAModels", "resolve_device", "resolve_dtype", "load_models", "extract_face",
    "audio_to_motion", "audio_motion_stream", "iter_frames", "render_to_file",
    "iter_driving_keypoints", "driving_keypoints",
]

Progress = Callable[[int, int], None]
KeypointsTap = Callable[[int, int, torch.Tensor], None]


@dataclass
class JoyVASAModels:
    """Everything the pipeline runs, on one device.

    ``liveportrait`` runs in ``dtype``; its stitching/retargeting MLPs and all
    keypoint math stay float32. ``motion_generator`` and ``template`` are None
    when only video-driven animation is wanted. Build one with
    :func:`load_models`, or directly from already-built modules (tests and
    benchmarks do that with small configurations).
    """

    liveportrait: LivePortraitModels
    motion_generator: torch.nn.Module | None
    template: MotionTemplate | None
    device: torch.device
    dtype: torch.dtype
    variant: str = "human"          # "human" | "animal"
    models_dir: Path | None = None


# ----------------------------------------------------------------------------- loading

def load_models(models_dir: str | Path | None = None, *, variant: str = "human",
                audio_encoder: str = "chinese-hubert-base", motion_generator: str | None = None,
                motion_template: str | None = None, device: str | torch.device = "auto",
                precision: str | torch.dtype = "auto", download: bool = True,
                extra_liveportrait_dirs: Sequence[str | Path] = (),
                progress: Progress | None = None) -> JoyVASAModels:
    """Load LivePortrait and JoyVASA from the official ``pretrained_weights`` tree.

    models_dir: the folder holding ``liveportrait/``, ``JoyVASA/``,
        ``chinese-hubert-base/`` (as downloaded); None = the default location
        (:func:`joyvasa_core.model_files.default_models_dir`).
    variant: ``"human"`` or ``"animal"`` (``liveportrait_animals/``).
    motion_generator / motion_template: file names in ``JoyVASA/motion_generator/``
        and ``JoyVASA/motion_template/`` (default: the official names, else the
        one ``.pt`` there).
    device / precision: see :func:`resolve_device` / :func:`resolve_dtype`; the
        motion generator always runs in float32 (its sampler amplifies rounding
        ~30x at the first steps) and so do the stitching MLPs and keypoint math.
    download: first fetch missing files from Hugging Face; offline (or when
        False) a :class:`~joyvasa_core.model_files.ModelFilesError` names
        every missing file and where to put it.
    extra_liveportrait_dirs: more folders with LivePortrait weights (e.g.
        ComfyUI's ``models/liveportrait`` holding Kijai's safetensors).
    """
    from . import model_files
    from .dit.loading import load_motion_generator
    from .loaders import load_liveportrait

    if variant not in model_files.VARIANTS:
        raise ValueError(f"variant must be one of {model_files.VARIANTS}, got {variant!r}")
    root = Path(models_dir).expanduser() if models_dir is not None \
        else model_files.default_models_dir()
    extra = [Path(d) for d in extra_liveportrait_dirs]
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)
    model_files.ensure_files(root, variant, audio_encoder, motion_generator, download=download,
                             extra_liveportrait_dirs=extra)
    _tick(progress, 0, 3)
    liveportrait = load_liveportrait(root, variant, dev, dtype, extra_dirs=extra)
    _tick(progress, 1, 3)
    generator = load_motion_generator(
        model_files.resolve_motion_generator(root, motion_generator),
        audio_encoder_dir=model_files.resolve_audio_encoder(root, audio_encoder),
        device=dev, dtype=torch.float32)
    _tick(progress, 2, 3)
    template_path = model_files.resolve_motion_template(root) if motion_template is None \
        else _named_file(root / model_files.MOTION_TEMPLATE_DIR, motion_template)
    template = MotionTemplate.from_file(template_path)
    _tick(progress, 3, 3)
    return JoyVASAModels(liveportrait, generator, template, dev, dtype, variant, root)


def _named_file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        raise FileNotFoundError(f"{path} not found (the folder holds {present}); "
                                "pick one of those files or put the file there")
    return path


# -------------------------------------------------------------------------------- face

def extract_face(models: JoyVASAModels, image, *, face_backend: str = "auto",
                 face_index: int = 0, **crop) -> PhotoSource:
    """:meth:`PhotoSource.detect <joyvasa_core.sources.PhotoSource.detect>` with these
    models (and their folder for the face detector's files). crop: ``crop_scale``,
    ``vx_ratio``, ``vy_ratio``, ``box``, ``order``."""
    return PhotoSource.detect(models.liveportrait, image, face_backend=face_backend,
                              face_index=face_index, models_dir=models.models_dir, **crop)


# ------------------------------------------------------------------------------ motion

def audio_motion_stream(models: JoyVASAModels, waveform: torch.Tensor | np.ndarray,
                        sample_rate: int, settings: MotionSettings = MotionSettings(), *,
                        silence: SilenceGate = SilenceGate(),
                        progress: Progress | None = None) -> MotionStream:
    """Speech -> motion as a :class:`~joyvasa_core.motion.MotionStream`: one chunk per
    sampled window (``int(len_padded / 16000 * fps)`` frames in all, the official rule), so
    rendering can start after the first window. The audio is checked at once; sampling
    happens as the stream is read.

    waveform: [N] or [C, N] at ``sample_rate`` Hz (any rate, resampled to 16 kHz);
    settings: how the motion is sampled (:class:`~joyvasa_core.settings.MotionSettings`);
    silence: the silence gate (:class:`~joyvasa_core.silence.SilenceGate`; on by default,
    :data:`~joyvasa_core.silence.NO_GATE` gives the motion exactly as generated);
    progress: ``progress(done, total)`` after every denoising step.
    """
    from .audio import prepare_waveform
    from .generate import iter_motion

    if models.motion_generator is None or models.template is None:
        raise ValueError("these models have no motion generator: load them with load_models() "
                         "from a folder holding JoyVASA/motion_generator and motion_template")
    stream = iter_motion(models.motion_generator, models.template, waveform, sample_rate,
                         settings, progress=progress)
    if not silence.enabled:
        return stream
    return silence.apply(stream, prepare_waveform(waveform, sample_rate, allow_silence=True))


def audio_to_motion(models: JoyVASAModels, waveform: torch.Tensor | np.ndarray, sample_rate: int,
                    settings: MotionSettings = MotionSettings(), *,
                    silence: SilenceGate = SilenceGate(),
                    progress: Progress | None = None) -> MotionSequence:
    """The whole clip's motion: :func:`audio_motion_stream` collected."""
    return audio_motion_stream(models, waveform, sample_rate, settings, silence=silence,
                               progress=progress).collect()


# ----------------------------------------------------------------------------- frames

class _Float32(torch.nn.Module):
    """Runs a (possibly half-precision) MLP on float32 keypoints and returns float32."""

    def __init__(self, mlp: torch.nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.to(next(self.mlp.parameters()).dtype)).float()


def retargeting_mlps(models: JoyVASAModels) -> dict[str, torch.nn.Module]:
    """The stitching and lip MLPs by name, taking and giving float32 keypoints whatever
    precision the renderer runs in (what :meth:`Source.open_stream` expects)."""
    lp = models.liveportrait
    return {"stitching": _Float32(lp.stitching), "lip": _Float32(lp.lip)}


def _paste_dtype(models: JoyVASAModels) -> torch.dtype:
    """float16 on GPUs running in half precision (exact for 8-bit levels), else float32.

    (bfloat16 is too coarse near 1.0 to keep untouched pixels bit-exact.)
    """
    if models.device.type in ("cuda", "mps") and models.dtype != torch.float32:
        return torch.float16
    return torch.float32


@dataclass
class _Driven:
    """One render chunk's driving: output frames ``start..stop-1``, their source (and the
    source stream that pastes them back) and driving keypoints x_d ``[stop - start, 21, 3]``."""

    start: int
    stop: int
    source: SourceChunk
    stream: SourceStream
    x_d: torch.Tensor


def _iter_driven(models: JoyVASAModels, source: Source, motion: Motion,
                 driving: DrivingSettings, batch_size: int, edits: Edits | None
                 ) -> Iterator[_Driven]:
    retargeting = retargeting_mlps(models)
    opened = reference = None
    base = 0
    for chunk in motion.stream():
        if len(chunk) == 0:
            continue
        if reference is None:
            reference = chunk[:1].to(models.device, torch.float32)
            opened = source.open_stream(reference, driving, retargeting)
        for offset in range(0, len(chunk), batch_size):
            start, stop = base + offset, base + min(offset + batch_size, len(chunk))
            rows = type(reference).cat([reference, chunk[offset:offset + stop - start].to(
                models.device, torch.float32)])
            frames = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(start, stop)])
            edit = None if edits is None else edits.at_frames(frames, chunk.fps)
            with torch.inference_mode():
                src, x_d = opened.drive(start, stop, rows, edit)
            yield _Driven(start, stop, src, opened, x_d)
        base += len(chunk)


def iter_driving_keypoints(models: JoyVASAModels, source: Source, motion: Motion,
                           driving: DrivingSettings = DrivingSettings(), *, batch_size: int,
                           edits: Edits | None = None
                           ) -> Iterator[tuple[int, int, SourceChunk, torch.Tensor]]:
    """The driving keypoints each frame is rendered with, ``batch_size`` frames at a time.

    source: a :class:`~joyvasa_core.sources.Source` (a photo, a tracked video);
    motion: anything with ``stream()`` (:class:`~joyvasa_core.motion.Motion`):
    each chunk is composed as soon as it is read. Yields ``(start, stop,
    source, x_d)`` with frame indices counted over the whole motion, the
    chunk's :class:`~joyvasa_core.sources.SourceChunk` and x_d ``[stop - start,
    21, 3]`` float32 on the models' device (a scene of S faces: ``[S * (stop -
    start), 21, 3]``, speaker-major). Frame 0 of the first motion chunk
    rides along with every chunk as the reference of the relative motion;
    ``edits`` (:class:`joyvasa_core.edits.Edits`) are evaluated at the chunk's
    frame times (frame i at ``i / fps`` s).
    """
    for driven in _iter_driven(models, source, motion, driving, batch_size, edits):
        yield driven.start, driven.stop, driven.source, driven.x_d


def driving_keypoints(models: JoyVASAModels, source: Source, motion: Motion,
                      driving: DrivingSettings = DrivingSettings(), *,
                      edits: Edits | None = None, batch_size: int = 256) -> torch.Tensor:
    """All driving keypoints ``[T, 21, 3]`` float32 on the CPU (nothing is rendered):
    :func:`iter_driving_keypoints` collected."""
    return torch.cat([x_d.cpu() for _, _, _, x_d in iter_driving_keypoints(
        models, source, motion, driving, batch_size=batch_size, edits=edits)])


def iter_frames(models: JoyVASAModels, source: Source, motion: Motion,
                driving: DrivingSettings = DrivingSettings(), *, batch_size: int | None = None,
                paste: bool = True, render_options: RenderOptions | None = None,
                progress: Progress | None = None, edits: Edits | None = None,
                on_keypoints: KeypointsTap | None = None) -> Iterator[torch.Tensor]:
    """Render the frames of ``motion``, ``batch_size`` at a time, on the models' device.

    source: a :class:`~joyvasa_core.sources.Source`: a photo (one source for
    every frame) or a tracked video (each frame its own crop, F, M and
    background, decoded chunk by chunk; ``motion`` is then already at the
    output frame times, see :func:`joyvasa_core.retime.resample_stream`), or a
    scene of S faces (:class:`~joyvasa_core.scene_source.SceneSource`, with a
    :class:`~joyvasa_core.scene_source.SceneMotion`: each chunk's S * b faces
    render in one batch and are pasted back in speaker order).
    motion: anything with ``stream()`` (:class:`~joyvasa_core.motion.Motion`: a
    whole sequence, a stream, a node's deferred motion): each chunk is
    rendered as soon as it is read.
    batch_size: frames per chunk; None = ``render_options.batch_size``, else
    :func:`joyvasa_core.render.auto_batch_size` (from free VRAM on CUDA). On the
    CPU chunks hold one frame whatever is asked
    (:func:`~joyvasa_core.render.frames_per_chunk`): batching gains nothing there,
    and ``progress`` (hence a cancel) then runs after every frame.
    render_options: W/G speed switches (:class:`~joyvasa_core.render.RenderOptions`:
    compile, CUDA graphs, ...).
    edits: expression edits (:class:`joyvasa_core.edits.Edits`), applied to the
    driving keypoints before stitching.
    on_keypoints: ``on_keypoints(start, stop, x_d)`` sees each chunk's driving
    keypoints before it renders (e.g. to save them).

    Yields [b, H, W, 3] float 0..1: the source with the animated face pasted
    back (H, W = the source's size rounded up to even), or with ``paste=False``
    the [b, 512, 512, 3] crops. Only one chunk of frames exists at a time, and
    nothing grows with the length of the motion. ``progress(done, total)``:
    total is the motion's frame count when known (a stream's ``n_frames``),
    else the frames done.
    """
    lp = models.liveportrait
    if batch_size is None and render_options is not None:
        batch_size = render_options.batch_size
    batch_size = frames_per_chunk(models.device, models.dtype, batch_size)
    options = replace(render_options or RenderOptions(), output_device=None)
    stream = motion.stream()
    total = stream.n_frames
    paste_dtype = _paste_dtype(models)
    _tick(progress, 0, total or 0)
    for driven in _iter_driven(models, source, stream, driving, batch_size, edits):
        src = driven.source
        if on_keypoints is not None:
            on_keypoints(driven.start, driven.stop, driven.x_d)
        with torch.inference_mode():
            (crops,) = iter_render(lp.warping_module, lp.spade_generator, src.feature_3d,
                                   src.x_s, driven.x_d, batch_size=driven.x_d.shape[0],
                                   options=options)
            if paste:
                frames = driven.stream.paste(src, crops.to(paste_dtype))
            else:
                frames = crops.float().permute(0, 2, 3, 1)
        _tick(progress, driven.stop, total or driven.stop)
        yield frames


def render_to_file(models: JoyVASAModels, source: Source, motion: Motion,
                   waveform: torch.Tensor | np.ndarray | None, sample_rate: int | None,
                   output_path: str | Path, driving: DrivingSettings = DrivingSettings(), *,
                   batch_size: int | None = None, paste: bool = True, crf: int = 18,
                   render_options: RenderOptions | None = None,
                   progress: Progress | None = None, edits: Edits | None = None,
                   on_frames: Callable[[torch.Tensor], None] | None = None,
                   on_keypoints: KeypointsTap | None = None) -> Path:
    """Render and encode an MP4 (H.264 at the motion's fps, the speech muxed as AAC).

    motion: anything with ``stream()`` (see :func:`iter_frames`): writing starts
    as soon as its first chunk is ready.
    waveform [N] or [C, N] at ``sample_rate`` Hz (its original rate and channels
    are kept; None = silent video). Each chunk of frames is converted to uint8 on
    the device and encoded as soon as the next chunk is queued (on a GPU the
    encoder works while the next chunk renders), so host memory stays flat
    however long the speech is. ``edits``, ``on_keypoints``: see :func:`iter_frames`.
    ``on_frames(frames)`` sees each chunk as written ([b, H, W, 3] uint8 on the
    host; e.g. a preview). Returns the output path.
    """
    stream = motion.stream()
    audio = None if waveform is None else (waveform, int(sample_rate))
    output_path = Path(output_path)
    with VideoWriter(output_path, stream.fps, audio=audio, crf=crf) as writer:
        pending: PendingCopy | None = None
        for frames in iter_frames(models, source, stream, driving, batch_size=batch_size,
                                  paste=paste, render_options=render_options, progress=progress,
                                  edits=edits, on_keypoints=on_keypoints):
            staged = copy_async(frames_to_uint8_tensor(frames), "cpu")
            if pending is not None:
                _write(writer, pending.result(), on_frames)
            pending = staged
        if pending is not None:
            _write(writer, pending.result(), on_frames)
    return output_path


def _write(writer: VideoWriter, frames: torch.Tensor, on_frames: Callable | None) -> None:
    writer.write(frames)
    if on_frames is not None:
        on_frames(frames)


def _tick(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)
