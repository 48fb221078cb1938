"""The JoyVASA pipeline: photo + speech -> talking-head frames, streamed.

Four steps, each usable on its own (the ComfyUI nodes map one to one onto them):

1. :func:`load_models` -> :class:`JoyVASAModels` (LivePortrait F/M/W/G/S, the
   motion generator and its motion template, on one device and dtype);
2. :func:`extract_face` -> :class:`FaceRepresentation` (crop, F's feature
   volume, M's keypoints of the source, the photo for paste-back);
3. :func:`audio_to_motion` -> :class:`~joyvasa_core.motion.MotionSequence`
   (70 floats per frame, generated window by window);
4. :func:`iter_frames` / :func:`render_to_file`: driving keypoints, W + G and
   paste-back on the device, chunk by chunk; the file writer encodes each chunk
   at once, so host memory does not grow with the length of the speech.

``progress(done, total)`` callables are called at least once per window or
chunk; raising from one cancels the work (ComfyUI's interrupt does that).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import config
from .devices import resolve_device, resolve_dtype
from .driving import DrivingSettings, compose_driving_keypoints, expression_multiplier
from .edits import Edits
from .face.backends import FaceCrop, detect_and_crop
from .face.image_io import check_photo_size, load_image, to_float01
from .face.paste import PasteBack
from .face_track import SourceChunk, VideoFaces
from .keypoints import KeypointInfo
from .loaders import LivePortraitModels
from .motion import MotionSequence, MotionStream, MotionTemplate, iter_chunks
from .render import RenderOptions, frames_per_chunk, iter_render
from .video import VideoWriter, frames_to_uint8_tensor

__all__ = [
    "JoyVASAModels", "FaceRepresentation", "resolve_device", "resolve_dtype", "load_models",
    "extract_face", "audio_to_motion", "audio_motion_stream", "iter_frames", "render_to_file",
    "motion_from_video", "iter_driving_keypoints", "driving_keypoints",
]

Progress = Callable[[int, int], None]


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


@dataclass
class FaceRepresentation:
    """The source photo as the renderer needs it.

    feature_3d: [1, 32, 16, 64, 64] F's appearance volume (models' dtype, device);
    source: M's keypoint info of the crop (angles in degrees, float32);
    x_s: [1, 21, 3] posed source keypoints (float32);
    crop: the face crop (``M_c2o`` crop -> original pixels, landmarks, ...);
    image: [H, W, 3] float 0..1 on the CPU, the original photo for paste-back.
    """

    feature_3d: torch.Tensor
    source: KeypointInfo
    x_s: torch.Tensor
    crop: FaceCrop
    image: torch.Tensor

    def source_chunk(self, models: "JoyVASAModels", start: int, stop: int) -> SourceChunk:
        """The photo as the source of any output frames: a track of one."""
        lip_ratio = None if self.crop.lip_open is None else \
            torch.tensor([[self.crop.lip_open]], dtype=torch.float32, device=models.device)
        return SourceChunk(self.feature_3d, self.source, self.x_s, lip_ratio, self.crop.M_c2o,
                           self.image)


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

@torch.inference_mode()
def _keypoint_info(models: JoyVASAModels, crops_256: torch.Tensor) -> KeypointInfo:
    """M on crops [B, 3, 256, 256] (0..1) -> float32 KeypointInfo."""
    raw = models.liveportrait.motion_extractor(crops_256.to(models.device, models.dtype))
    return KeypointInfo.from_raw({k: v.float() for k, v in raw.items()})


def extract_face(models: JoyVASAModels, image: np.ndarray | torch.Tensor, *,
                 face_backend: str = "auto", face_index: int = 0,
                 crop_scale: float = config.CROP_SCALE, vx_ratio: float = config.CROP_VX_RATIO,
                 vy_ratio: float = config.CROP_VY_RATIO, box=None) -> FaceRepresentation:
    """Detect and crop the face of ``image`` and encode it.

    image: anything :func:`joyvasa_core.face.image_io.load_image` reads ([H, W, 3]
    uint8 or float 0..1 array/tensor, a Pillow image, a path).

    face_backend: see :func:`joyvasa_core.face.backends.detect_and_crop` (``"none"``
    takes the whole image as the crop; ``box`` an explicit (x0, y0, x1, y1) pixel box).
    Raises :class:`joyvasa_core.face.errors.NoFaceError` when no face is found.
    """
    rgb = check_photo_size(load_image(image))
    crop = detect_and_crop(rgb, backend=face_backend, models_dir=models.models_dir,
                           face_index=face_index, crop_scale=crop_scale, vx=vx_ratio,
                           vy=vy_ratio, box=box)
    crop_256 = crop.crop_256.to(models.device, models.dtype)
    with torch.inference_mode():
        feature_3d = models.liveportrait.appearance_feature_extractor(crop_256)
    source = _keypoint_info(models, crop_256)
    return FaceRepresentation(feature_3d=feature_3d, source=source, x_s=source.transform(),
                              crop=crop, image=to_float01(torch.from_numpy(rgb)))


# ------------------------------------------------------------------------------ motion

def audio_to_motion(models: JoyVASAModels, waveform: torch.Tensor | np.ndarray, sample_rate: int,
                    *, seed: int = 0, cfg_scale: float = config.DEFAULT_CFG_SCALE,
                    sampler: str = "ddpm", steps: int | None = None, smoothing: float = 1.0,
                    pose_scale: float = 1.0, expression_scale: float = 1.0,
                    pe_variant: str = "head", cuda_graphs: bool = False,
                    progress: Progress | None = None) -> MotionSequence:
    """Speech -> motion sequence (``int(len_padded / 16000 * fps)`` frames, official rule).

    waveform: [N] or [C, N] at ``sample_rate`` Hz (any rate, resampled to 16 kHz).
    sampler: ``"ddpm"`` (official, every step of the checkpoint's schedule) or
    ``"ddim"`` with ``steps`` steps. smoothing: 1.0 = the official EMA of the
    head pose, 0 = none. pose_scale / expression_scale scale each channel's
    deviation from frame 0 (1.0 = as generated; :meth:`MotionSequence.rescaled`).
    pe_variant: ``"head"`` (fixed positional encoding) or ``"legacy"`` (the one
    the released weights were trained with). cuda_graphs: replay each denoising
    step from a CUDA graph (CUDA only; same numbers, far fewer kernel launches).
    All chunks of :func:`audio_motion_stream` joined.
    """
    return audio_motion_stream(models, waveform, sample_rate, seed=seed, cfg_scale=cfg_scale,
                               sampler=sampler, steps=steps, smoothing=smoothing,
                               pose_scale=pose_scale, expression_scale=expression_scale,
                               pe_variant=pe_variant, cuda_graphs=cuda_graphs,
                               progress=progress).collect()


def audio_motion_stream(models: JoyVASAModels, waveform: torch.Tensor | np.ndarray, sample_rate: int,
                        *, seed: int = 0, cfg_scale: float = config.DEFAULT_CFG_SCALE,
                        sampler: str = "ddpm", steps: int | None = None, smoothing: float = 1.0,
                        pose_scale: float = 1.0, expression_scale: float = 1.0,
                        pe_variant: str = "head", cuda_graphs: bool = False,
                        progress: Progress | None = None) -> MotionStream:
    """:func:`audio_to_motion` as a :class:`~joyvasa_core.motion.MotionStream`: one chunk per
    sampled window (rescaled against the stream's frame 0), so rendering can start after
    the first window. The audio is checked at once; sampling happens as it is read."""
    from .generate import iter_motion

    if models.motion_generator is None or models.template is None:
        raise ValueError("these models have no motion generator: load them with load_models() "
                         "from a folder holding JoyVASA/motion_generator and motion_template")
    stream = iter_motion(models.motion_generator, models.template, waveform, sample_rate,
                         seed=seed, cfg_scale=cfg_scale, sampler=sampler, steps=steps,
                         smoothing=smoothing, pe_variant=pe_variant, cuda_graphs=cuda_graphs,
                         progress=progress)
    return stream.map(rescaler(pose_scale, expression_scale))


def rescaler(pose_scale: float, expression_scale: float) -> Callable[[MotionSequence], MotionSequence]:
    """Per-chunk :meth:`MotionSequence.rescaled` of one stream (frame 0 of its first chunk is the reference)."""
    reference: list[MotionSequence] = []

    def rescale(chunk: MotionSequence) -> MotionSequence:
        if not reference:
            reference.append(chunk[:1])
        return chunk.rescaled(pose=pose_scale, expression=expression_scale, reference=reference[0])

    return rescale


@torch.inference_mode()
def motion_from_video(models: JoyVASAModels, frames: np.ndarray | torch.Tensor, *,
                      face_backend: str = "auto", face_index: int = 0,
                      crop_scale: float = config.CROP_SCALE, fps: float = config.DEFAULT_FPS,
                      batch_size: int = 16, progress: Progress | None = None) -> MotionSequence:
    """Motion of a driving video (LivePortrait's video-driven mode).

    frames: [B, H, W, 3] uint8 or float 0..1. Each frame is cropped around its
    face and M's pose, translation, scale and expression become one row of the
    returned sequence (B frames at ``fps``), usable wherever generated motion is.
    """
    total = int(frames.shape[0])
    if total == 0:
        raise ValueError("the driving video has no frames")
    parts: list[KeypointInfo] = []
    for start in range(0, total, batch_size):
        crops = [detect_and_crop(load_image(frames[i]), backend=face_backend,
                                 models_dir=models.models_dir, face_index=face_index,
                                 crop_scale=crop_scale).crop_256
                 for i in range(start, min(start + batch_size, total))]
        parts.append(_keypoint_info(models, torch.cat(crops)))
        _tick(progress, min(start + batch_size, total), total)
    cat = {name: torch.cat([getattr(p, name) for p in parts]) for name in
           ("exp", "scale", "t", "pitch", "yaw", "roll")}
    return MotionSequence(fps=fps, **{k: v.cpu() for k, v in cat.items()})


# ----------------------------------------------------------------------------- frames

def _motion_rows(reference: MotionSequence, rows: MotionSequence, device: torch.device) -> MotionSequence:
    """Frame 0 of the stream (the reference of relative motion) followed by ``rows``, on device."""
    return MotionSequence.cat([reference, rows]).to(device, torch.float32)


class _Float32(torch.nn.Module):
    """Runs a (possibly half-precision) MLP on float32 keypoints and returns float32."""

    def __init__(self, mlp: torch.nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.to(next(self.mlp.parameters()).dtype)).float()


def _paste_dtype(models: JoyVASAModels) -> torch.dtype:
    """float16 on GPUs running in half precision (exact for 8-bit levels), else float32.

    (bfloat16 is too coarse near 1.0 to keep untouched pixels bit-exact.)
    """
    if models.device.type in ("cuda", "mps") and models.dtype != torch.float32:
        return torch.float16
    return torch.float32


def iter_driving_keypoints(models: JoyVASAModels, face: FaceRepresentation | VideoFaces,
                           motion: MotionSequence | Iterable[MotionSequence],
                           driving: DrivingSettings = DrivingSettings(), *, batch_size: int,
                           edits: Edits | None = None
                           ) -> Iterator[tuple[int, int, SourceChunk, torch.Tensor]]:
    """The driving keypoints each frame is rendered with, ``batch_size`` frames at a time.

    motion: a whole :class:`MotionSequence`, or a stream of consecutive chunks
    (a :class:`~joyvasa_core.motion.MotionStream`, or any iterable): each chunk
    is composed as soon as it is read. Yields ``(start, stop, source, x_d)``
    with frame indices counted over the whole motion, the chunk's
    :class:`SourceChunk` (the photo's, shared by every chunk, or the video
    frames' own) and x_d ``[stop - start, 21, 3]`` float32 on the models'
    device. Frame 0 of the first motion chunk rides along with every chunk as
    the reference of the relative motion; ``edits``
    (:class:`joyvasa_core.edits.Edits`) are evaluated at the chunk's frame
    times (frame i at ``i / fps`` s).
    """
    lp = models.liveportrait
    retargeting = {"stitching": _Float32(lp.stitching), "lip": _Float32(lp.lip)}
    shared = None if isinstance(face, VideoFaces) else face.source_chunk(models, 0, 0)
    reference = multiplier = None
    base = 0
    for chunk in iter_chunks(motion):
        if len(chunk) == 0:
            continue
        if reference is None:
            reference = chunk[:1]
            if shared is not None:
                with torch.inference_mode():   # frame 0 fixes it: one host sync, not per chunk
                    multiplier = expression_multiplier(
                        shared.info, shared.x_s, _motion_rows(reference, chunk[:0], models.device),
                        driving)
        for offset in range(0, len(chunk), batch_size):
            start, stop = base + offset, base + min(offset + batch_size, len(chunk))
            src = shared if shared is not None else face.source_chunk(models, start, stop)
            rows = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(start, stop)])
            edit = None if edits is None else edits.at_frames(rows, chunk.fps)
            with torch.inference_mode():
                info, x_s, lip_ratio = src.with_reference_row()
                x_d = compose_driving_keypoints(
                    info, x_s, _motion_rows(reference, chunk[offset:offset + stop - start],
                                            models.device),
                    driving, retargeting, lip_ratio, multiplier, edit,
                    per_frame=src.per_frame)[1:]
            yield start, stop, src, x_d
        base += len(chunk)


def iter_frames(models: JoyVASAModels, face: FaceRepresentation | VideoFaces,
                motion: MotionSequence | Iterable[MotionSequence],
                driving: DrivingSettings = DrivingSettings(), *, batch_size: int | None = None,
                paste: bool = True, render_options: RenderOptions | None = None,
                progress: Progress | None = None, edits: Edits | None = None) -> Iterator[torch.Tensor]:
    """Render the frames of ``motion``, ``batch_size`` at a time, on the models' device.

    face: a photo (:class:`FaceRepresentation`, one source for every frame) or
    a tracked video (:class:`~joyvasa_core.face_track.VideoFaces`: each frame
    its own crop, F, M and background, decoded chunk by chunk; ``motion`` is
    then already at the output frame times, see :mod:`joyvasa_core.retime`).
    motion: a whole :class:`MotionSequence`, or a stream of consecutive chunks
    (a :class:`~joyvasa_core.motion.MotionStream`, or any iterable): each chunk
    is rendered as soon as it is read.
    batch_size: frames per chunk; None = :func:`joyvasa_core.render.auto_batch_size`
    (from free VRAM on CUDA). On the CPU chunks hold one frame whatever is asked
    (:func:`~joyvasa_core.render.frames_per_chunk`): batching gains nothing there,
    and ``progress`` (hence a cancel) then runs after every frame.
    render_options: W/G speed switches (:class:`~joyvasa_core.render.RenderOptions`:
    compile, CUDA graphs, ...).
    edits: expression edits (:class:`joyvasa_core.edits.Edits`), applied to the
    driving keypoints before stitching.

    Yields [b, H, W, 3] float 0..1: the source with the animated face pasted
    back (H, W = the source's size rounded up to even), or with ``paste=False``
    the [b, 512, 512, 3] crops. Only one chunk of frames exists at a time.
    Driving keypoints are composed per chunk (:func:`iter_driving_keypoints`),
    so nothing grows with the length of the motion. ``progress(done, total)``:
    total is the motion's frame count when known (a stream's ``n_frames``),
    else the frames done.
    """
    lp = models.liveportrait
    if batch_size is None and render_options is not None:
        batch_size = render_options.batch_size
    batch_size = frames_per_chunk(models.device, models.dtype, batch_size)
    options = replace(render_options or RenderOptions(), output_device=None)
    total = len(motion) if isinstance(motion, MotionSequence) else getattr(motion, "n_frames", None)
    paster = None
    _tick(progress, 0, total or 0)
    for start, stop, src, x_d in iter_driving_keypoints(models, face, motion, driving,
                                                        batch_size=batch_size, edits=edits):
        with torch.inference_mode():
            (crops,) = iter_render(lp.warping_module, lp.spade_generator, src.feature_3d,
                                   src.x_s, x_d, batch_size=stop - start, options=options)
            if paste:
                if paster is None or src.per_frame:   # a photo's mask and grid: computed once
                    paster = PasteBack.for_render(src.M_c2o, src.background, crops.shape[-1],
                                                  models.device, _paste_dtype(models), src.active)
                frames = paster(crops.to(paster.background.dtype))
            else:
                frames = crops.float().permute(0, 2, 3, 1)
        _tick(progress, stop, total or stop)
        yield frames


def driving_keypoints(models: JoyVASAModels, face: FaceRepresentation | VideoFaces,
                      motion: MotionSequence, driving: DrivingSettings = DrivingSettings(), *,
                      edits: Edits | None = None, batch_size: int = 256) -> torch.Tensor:
    """All driving keypoints ``[T, 21, 3]`` float32 on the CPU (nothing is rendered):
    :func:`iter_driving_keypoints` collected."""
    return torch.cat([x_d.cpu() for _, _, _, x_d in iter_driving_keypoints(
        models, face, motion, driving, batch_size=batch_size, edits=edits)])


def render_to_file(models: JoyVASAModels, face: FaceRepresentation | VideoFaces,
                   motion: MotionSequence | Iterable[MotionSequence],
                   waveform: torch.Tensor | np.ndarray | None, sample_rate: int | None,
                   output_path: str | Path, driving: DrivingSettings = DrivingSettings(), *,
                   batch_size: int | None = None, paste: bool = True, crf: int = 18,
                   render_options: RenderOptions | None = None,
                   progress: Progress | None = None, edits: Edits | None = None,
                   on_frames: Callable[[torch.Tensor], None] | None = None) -> Path:
    """Render and encode an MP4 (H.264 at the motion's fps, the speech muxed as AAC).

    motion: a whole sequence or a stream of chunks (see :func:`iter_frames`): with a
    stream, writing starts as soon as its first chunk is ready.
    waveform [N] or [C, N] at ``sample_rate`` Hz (its original rate and channels
    are kept; None = silent video). Each chunk of frames is converted to uint8 on
    the device and encoded as soon as the next chunk is queued (on a GPU the
    encoder works while the next chunk renders), so host memory stays flat
    however long the speech is. ``edits``: see :func:`iter_frames`.
    ``on_frames(frames)`` sees each chunk as written ([b, H, W, 3] uint8 on the
    host; e.g. a preview). Returns the output path.
    """
    fps = getattr(motion, "fps", None)
    if fps is None:   # a plain iterable of chunks: its first chunk tells the fps
        chunks = iter_chunks(motion)
        first = next(chunks, None)
        if first is None:
            raise ValueError("the motion stream has no frames")
        fps, motion = first.fps, itertools.chain([first], chunks)
    audio = None if waveform is None else (waveform, int(sample_rate))
    output_path = Path(output_path)
    with VideoWriter(output_path, fps, audio=audio, crf=crf) as writer:
        pending = None
        for frames in iter_frames(models, face, motion, driving, batch_size=batch_size,
                                  paste=paste, render_options=render_options, progress=progress,
                                  edits=edits):
            staged = _stage_uint8(frames)
            if pending is not None:
                _write(writer, _finish_stage(pending), on_frames)
            pending = staged
        if pending is not None:
            _write(writer, _finish_stage(pending), on_frames)
    return output_path


def _write(writer: VideoWriter, frames: torch.Tensor, on_frames: Callable | None) -> None:
    writer.write(frames)
    if on_frames is not None:
        on_frames(frames)


def _stage_uint8(frames: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """Start moving frames [b, H, W, 3] float 0..1 to the host as uint8 (async from CUDA)."""
    levels = frames_to_uint8_tensor(frames)
    if levels.device.type != "cuda":
        return levels.cpu(), None
    host = torch.empty(levels.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(levels, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return host, event


def _finish_stage(staged: tuple[torch.Tensor, torch.cuda.Event | None]) -> torch.Tensor:
    host, event = staged
    if event is not None:
        event.synchronize()
    return host


def _tick(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)
