"""Headless command line: one photo (or a video to dub) + one speech file -> one MP4.

    python -m joyvasa_core --image face.png --audio speech.wav --output out.mp4
    python -m joyvasa_core --video clip.mp4 --audio speech.wav --output dubbed.mp4

Cheap inputs (the photo, the audio) are checked before the models load, so a
wrong path fails in a second. Progress goes to stdout; every failure ends with
exit status 1 and a single line ``error: <cause>. <fix>`` on stderr (``--debug``
adds the traceback).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import config
from .devices import DEVICE_CHOICES, PRECISION_CHOICES
from .dit.denoiser import PE_VARIANTS
from .dit.samplers import SAMPLERS
from .driving import DRIVING_OPTIONS, REGIONS, DrivingSettings
from .edits.blink import DEFAULT_RATE as DEFAULT_BLINK_RATE
from .edits.gaze import MAX_STRENGTH as EYE_CONTACT_MAX
from .dubbing import DUBBING_REGIONS
from .render import RenderOptions
from .retime import LOOP_MODES

if TYPE_CHECKING:
    from .motion import MotionSequence, MotionStream
    from .pipeline import JoyVASAModels
    from .video_source import VideoInfo

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m joyvasa_core",
        description="Animate a portrait photo with speech (JoyVASA + LivePortrait) into an MP4.")
    io = p.add_argument_group("inputs and output")
    source = io.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="portrait photo (PNG, JPEG, ...)")
    source.add_argument("--video", type=Path,
                        help="source video to dub with the speech (mp4, mov, mkv, ...)")
    io.add_argument("--audio", required=True, type=Path,
                    help="speech (wav, mp3, flac, m4a, ... anything FFmpeg decodes)")
    io.add_argument("--output", type=Path,
                    help="MP4 file to write (required unless --save-keypoints is given)")
    io.add_argument("--save-motion", type=Path, metavar="FILE",
                    help="also save the generated motion (.safetensors)")

    models = p.add_argument_group("models")
    models.add_argument("--models-dir", type=Path,
                        help="the official pretrained_weights folder as downloaded "
                             "(default: the library's model folder; missing files are downloaded)")
    models.add_argument("--animal", action="store_true", help="use the animal LivePortrait weights")
    models.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    models.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                        help="auto: fp16 on GPUs, fp32 on CPU")

    face = p.add_argument_group("face")
    face.add_argument("--face-backend", default="auto",
                      help="face detector: auto, or a backend name of joyvasa_core.face "
                           "('none' = centred square crop)")
    face.add_argument("--face-index", type=int, default=0,
                      help="which face when several are found (0 = largest)")
    face.add_argument("--crop-only", action="store_true",
                      help="write the 512x512 face crop instead of pasting it back into the photo")

    motion = p.add_argument_group("motion generation")
    motion.add_argument("--seed", type=int, default=0)
    motion.add_argument("--cfg-scale", type=float, default=config.DEFAULT_CFG_SCALE)
    motion.add_argument("--sampler", default="ddpm", choices=SAMPLERS,
                        help="ddpm: official, every step; ddim: fast, --steps steps")
    motion.add_argument("--steps", type=int, help="sampling steps for ddim (default: its own)")
    motion.add_argument("--pose-scale", type=float, default=1.0,
                        help="head movement amplitude (1 = as generated, 0 = still head)")
    motion.add_argument("--expression-scale", type=float, default=1.0,
                        help="expression amplitude (1 = as generated)")
    motion.add_argument("--smoothing", type=float, default=1.0,
                        help="head-pose smoothing: 1 = official EMA, 0 = none")
    motion.add_argument("--pe-variant", default="head", choices=PE_VARIANTS,
                        help="positional encoding: head = the official fix of 2025-12-09 "
                             "(default), legacy = the code the released weights were trained with")

    drive = p.add_argument_group("animation")
    drive.add_argument("--animation-region", default="all",
                       choices=REGIONS)
    drive.add_argument("--driving-option", default="expression-friendly",
                       choices=DRIVING_OPTIONS)
    drive.add_argument("--no-stitching", action="store_true")
    drive.add_argument("--no-relative-motion", action="store_true")
    drive.add_argument("--driving-multiplier", type=float, default=1.0)

    edit = p.add_argument_group(
        "expression control",
        "edits applied to the driving keypoints before stitching (syntax: README, "
        "'Expression control')")
    edit.add_argument("--expression", type=_checked_text("expression"), metavar="TEXT",
                      help="slider constants and keyframes, e.g. 'smile=0.8, rotate_yaw=5' or "
                           "'smile: 0s=0, 2s=0.8 ease-in-out; blink=-3'")
    edit.add_argument("--blink", default="off", type=_checked_text("blink"), metavar="auto|off|TIMES",
                      help="natural blinks: auto (seeded by --seed), off (default), or blink "
                           "start times like '1.2, 3.5s'")
    edit.add_argument("--blink-rate", type=float, default=DEFAULT_BLINK_RATE,
                      help="automatic blinks per minute (default %(default)g)")
    edit.add_argument("--blink-strength", type=float, default=1.0,
                      help="how far a blink closes the eyes (1 = closed)")
    edit.add_argument("--eye-contact", type=float, nargs="?", const=1.0, default=0.0,
                      metavar="STRENGTH",
                      help="keep the eyes on the camera: the pupils turn against the head's "
                           "turns (strength 0-2, 1 when given alone; default 0 = off)")
    edit.add_argument("--strength", type=_checked_text("strength"), metavar="TEXT",
                      help="strength of each region of the generated motion (edit syntax over "
                           "lips, eyes, brows, expression, pitch, yaw, roll, translation; "
                           "1 = as generated), e.g. 'yaw=0.5, roll=0, eyes=1.2'")
    edit.add_argument("--pose-from", type=Path, metavar="VIDEO|MOTION.safetensors",
                      help="take the head pose from a driving video or a saved motion "
                           "(ping-pong looped or trimmed to the speech)")
    edit.add_argument("--pose-eyes", action="store_true",
                      help="with --pose-from: take the eyes and brows from it too")
    edit.add_argument("--expression-from", type=Path, metavar="PHOTO",
                      help="add a reference face's expression (minus the source's), outside "
                           "the lips")
    edit.add_argument("--expression-from-strength", type=float, default=1.0, metavar="F",
                      help="strength of --expression-from (default 1)")
    edit.add_argument("--save-keypoints", type=Path, metavar="FILE",
                      help="write the driving keypoints (safetensors: x_d [T,21,3] as rendered, "
                           "x_s [21,3]); without --output nothing is rendered")

    dub = p.add_argument_group("video dubbing (with --video)")
    dub.add_argument("--region", default="lip", choices=DUBBING_REGIONS,
                     help="what the speech drives on the video's own motion: lip (default, only "
                          "the mouth), exp (the expression), all (expression and head turns)")
    dub.add_argument("--loop", default="pingpong", choices=LOOP_MODES,
                     help="when the speech is longer than the video: play it back and forth "
                          "(pingpong) or restart it (loop)")

    run = p.add_argument_group("run")
    run.add_argument("--batch-size", type=int,
                     help="frames rendered at once on a GPU (default: from free GPU memory); "
                          "the CPU renders one frame at a time")
    run.add_argument("--cuda-graphs", action="store_true",
                     help="CUDA only: replay denoising steps and render chunks from captured "
                          "CUDA graphs (fewer kernel launches; same numbers)")
    run.add_argument("--debug", action="store_true", help="print tracebacks")
    return p


def _checked_text(kind: str):
    """An argparse type that checks edit text while the arguments are parsed (before any
    model loads) and keeps it as text. kind: ``expression``, ``strength`` or ``blink``."""
    def check(text: str) -> str:
        from .edits import parse_strengths, parse_timeline, parse_times

        try:
            if kind == "expression":
                parse_timeline(text)
            elif kind == "strength":
                parse_strengths(text)
            elif text.strip().lower() not in ("auto", "off"):
                parse_times(text)
        except ValueError as exc:
            hint = "\n  (use auto, off or times like '1.2, 3.5s')" if kind == "blink" else ""
            raise argparse.ArgumentTypeError(f"{exc}{hint}") from None
        return text
    return check


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed and cross-checked arguments (argparse's usage error on a mistake)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None and args.save_keypoints is None:
        parser.error("the following arguments are required: --output "
                     "(or --save-keypoints FILE alone for keypoints without rendering)")
    from .edits import Blinks

    try:
        Blinks(rate=args.blink_rate, strength=args.blink_strength)
    except ValueError as exc:
        parser.error(f"argument --blink-rate/--blink-strength: {exc}")
    for option in ("pose_from", "expression_from"):
        path = getattr(args, option)
        if path is not None and not path.is_file():
            parser.error(f"argument --{option.replace('_', '-')}: file not found: {path}")
    return args


class UsageError(ValueError):
    """An option value or output path that cannot work, found before any work starts."""


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is written for the user (cause + fix): no traceback needed."""
    from .audio import AudioError
    from .checkpoints import CheckpointError
    from .face.errors import FaceError
    from .video import VideoWriterError

    # CheckpointError covers model_files.MissingModelFilesError; FaceError covers
    # ImageLoadError, NoFaceError and NoFaceInVideoError; ValueError covers
    # video_source.VideoSourceError.
    return (AudioError, CheckpointError, FaceError, VideoWriterError, FileNotFoundError,
            ValueError)


class _StageLog:
    """One short status line per stage on stdout; progress overwrites itself on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.start = time.perf_counter()

    def stage(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {text}", flush=True)

    def progress(self, label: str):
        last = [-1]

        def report(done: int, total: int) -> None:
            percent = 100 * done // max(total, 1)
            if self.tty and percent != last[0]:
                print(f"\r  {label}: {done}/{total} ({percent}%)", end="", flush=True)
                if done >= total:
                    print()
            last[0] = percent
        return report


# ------------------------------------------------------------------- checks before any work

def _check_number(value: float | None, option: str, *, minimum: float | None = None,
                  maximum: float | None = None) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{option} must be >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{option} must be <= {maximum:g}, got {value:g}")


def check_output_path(path: Path, option: str, example: str) -> None:
    """Raise :class:`UsageError` unless ``path`` can be created as a file.

    A folder, a parent that is a file, or a parent folder without write
    permission fail here, in a millisecond, instead of after the render.
    Missing parent folders are fine (the writers create them).
    """
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {path / example}")
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a folder. "
                         "Choose another output path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: no permission to write in {parent}. "
                         "Choose a writable folder.")


def check_options(args: argparse.Namespace) -> None:
    """Judge every option and output path that can be judged without decoding or loading.

    Raises :class:`UsageError` (one line, cause and fix). Costs no I/O beyond
    a few ``stat`` calls, so a batch can check all its jobs first.
    """
    _check_number(args.cfg_scale, "--cfg-scale", minimum=0.0)
    for option, value in (("--pose-scale", args.pose_scale),
                          ("--expression-scale", args.expression_scale),
                          ("--driving-multiplier", args.driving_multiplier)):
        _check_number(value, option)
    _check_number(args.smoothing, "--smoothing", minimum=0.0)
    _check_number(args.eye_contact, "--eye-contact", minimum=0.0, maximum=EYE_CONTACT_MAX)
    _check_number(args.steps, "--steps", minimum=1)
    _check_number(args.batch_size, "--batch-size", minimum=1)
    _check_number(args.face_index, "--face-index", minimum=0)
    if args.output is not None:
        check_output_path(args.output, "--output", "talking.mp4")
    for option, path, example in (("--save-motion", args.save_motion, "motion.safetensors"),
                                  ("--save-keypoints", args.save_keypoints, "keypoints.safetensors")):
        if path is not None:
            check_output_path(path, option, example)
    if args.video is not None:
        for option, value in (("--expression-from", args.expression_from),
                              ("--save-keypoints", args.save_keypoints)):
            if value is not None:
                raise UsageError(f"{option} works with --image only (a video's keypoints "
                                 "change every frame); drop it or use a photo")
    if args.models_dir is not None and args.models_dir.exists() and not args.models_dir.is_dir():
        raise UsageError(f"--models-dir {args.models_dir} is a file; pass the pretrained_weights "
                         "folder")


@dataclass
class Inputs:
    """The decoded, checked inputs of one job.

    image: [H, W, 3] uint8 RGB photo (None with --video); waveform: [C, N] float32
    speech as decoded (muxed into the video at its own rate); sample_rate: its
    rate in Hz; speech: [M] float32 mono 16 kHz, what the motion generator
    hears; video: the --video's stream facts (None with --image; its frames are
    decoded chunk by chunk while rendering).
    """

    image: np.ndarray | None
    waveform: torch.Tensor
    sample_rate: int
    speech: torch.Tensor
    video: "VideoInfo | None" = None


def read_inputs(args: argparse.Namespace) -> Inputs:
    """Decode and check the photo (or probe the video) and the speech (seconds at most; no
    model is loaded).

    Raises ImageLoadError / VideoSourceError / AudioError with the file's name and the fix.
    """
    from .audio import check_duration, load_audio_file, prepare_waveform
    from .face.image_io import check_photo_size, load_image
    from .video_source import probe_video

    image = video = None
    if args.video is not None:
        video = probe_video(args.video)
    else:
        image = check_photo_size(load_image(args.image), str(args.image))
    waveform, sample_rate = load_audio_file(args.audio)
    speech = prepare_waveform(waveform, sample_rate)
    check_duration(speech.shape[0], fps=config.DEFAULT_FPS)
    return Inputs(image, waveform, sample_rate, speech, video)


def load_models(args: argparse.Namespace) -> "JoyVASAModels":
    """The models the options name (downloading missing files unless offline)."""
    from . import pipeline

    return pipeline.load_models(args.models_dir, variant="animal" if args.animal else "human",
                                device=args.device, precision=args.precision)


def render_job(models: "JoyVASAModels", args: argparse.Namespace, inputs: Inputs,
               log: _StageLog | None = None) -> Path:
    """Face, motion and frames of one job with already loaded models; returns the MP4 path
    (the keypoint file's in keypoints-only mode)."""
    from . import pipeline
    from .face.image_io import load_image

    log = log or _StageLog()
    driving = DrivingSettings(
        driving_option=args.driving_option,
        animation_region=args.animation_region if args.video is None else args.region,
        flag_stitching=not args.no_stitching, flag_relative_motion=not args.no_relative_motion,
        driving_multiplier=args.driving_multiplier)
    if args.video is not None:
        return _dub(models, args, inputs, driving, log)
    face = pipeline.extract_face(models, inputs.image, face_backend=args.face_backend,
                                 face_index=args.face_index)
    # A stream is sampled as the renderer reads it: writing starts after the first window.
    motion, finish = _motion(args, models, inputs, log,
                             whole=args.save_keypoints is not None)
    edits = _edits(args, motion)
    if args.expression_from is not None:
        from .edits import Edits, ExpressionOffset

        reference = pipeline.extract_face(models, load_image(args.expression_from),
                                          face_backend=args.face_backend)
        offset = ExpressionOffset.from_faces(reference.source, face.source,
                                             args.expression_from_strength)
        edits = (edits or Edits()) + Edits(offset_tracks=(offset,))
    if args.save_keypoints is not None:
        _save_keypoints(args.save_keypoints, face.x_s,
                        pipeline.driving_keypoints(models, face, motion, driving, edits=edits))
        log.stage(f"wrote {args.save_keypoints}")
        if args.output is None:
            return args.save_keypoints
    log.stage(f"rendering {_frames(motion)} frames at {motion.fps:g} fps")
    out = pipeline.render_to_file(models, face, motion, inputs.waveform, inputs.sample_rate,
                                  args.output, driving, batch_size=args.batch_size,
                                  paste=not args.crop_only,
                                  render_options=RenderOptions(cuda_graphs=args.cuda_graphs),
                                  progress=log.progress("frames"), edits=edits)
    finish()
    log.stage(f"wrote {out}")
    return out


def _motion(args: argparse.Namespace, models: "JoyVASAModels", inputs: Inputs,
            log: _StageLog, *, whole: bool) -> tuple["MotionSequence | MotionStream", Callable]:
    """The speech's motion as the options ask, and a ``finish()`` to call once it was read.

    A :class:`~joyvasa_core.motion.MotionStream` whose windows are sampled as
    the renderer reads them (``finish`` then writes --save-motion), or, when
    ``whole`` or --pose-from / --strength need all of it, the collected
    sequence (saved at once) with those applied.
    """
    from . import pipeline
    from .motion import MotionSequence

    stream = pipeline.audio_motion_stream(
        models, inputs.speech, config.AUDIO_SAMPLE_RATE, seed=args.seed,
        cfg_scale=args.cfg_scale, sampler=args.sampler, steps=args.steps,
        smoothing=args.smoothing, pose_scale=args.pose_scale,
        expression_scale=args.expression_scale, pe_variant=args.pe_variant,
        cuda_graphs=args.cuda_graphs,
        progress=log.progress("motion") if whole or args.pose_from or args.strength else None)
    if whole or args.pose_from is not None or args.strength is not None:
        log.stage("generating motion")
        motion = stream.collect()
        if args.save_motion is not None:
            motion.save(args.save_motion)
        return _mixed_motion(args, models, motion), lambda: None
    kept: list[MotionSequence] = []   # --save-motion: the chunks as they pass to the renderer
    if args.save_motion is not None:
        stream = stream.map(lambda chunk: kept.append(chunk) or chunk)

    def finish() -> None:
        if kept:
            MotionSequence.cat(kept).save(args.save_motion)
    return stream, finish


def _frames(motion: "MotionSequence | MotionStream") -> int:
    return motion.n_frames if hasattr(motion, "n_frames") else len(motion)


def _edits(args: argparse.Namespace, motion: "MotionSequence | MotionStream"):
    """--expression, --blink and --eye-contact over the motion's duration (None when there are none)."""
    from .edits import build_edits

    return build_edits(args.expression, args.blink, blink_rate=args.blink_rate,
                       blink_strength=args.blink_strength, seed=args.seed,
                       eye_contact=args.eye_contact,
                       duration=_frames(motion) / motion.fps)


def _dub(models: "JoyVASAModels", args: argparse.Namespace, inputs: Inputs,
         driving: DrivingSettings, log: _StageLog) -> Path:
    """--video: dub the source video with the speech (joyvasa_core.dubbing)."""
    from .dubbing import dub_to_file, open_source_video

    seconds = inputs.waveform.shape[-1] / inputs.sample_rate
    log.stage("tracking the face")
    with open_source_video(args.video, seconds, loop=args.loop, face_backend=args.face_backend,
                           face_index=args.face_index, models_dir=models.models_dir,
                           progress=log.progress("frames tracked")) as video:
        motion, _ = _motion(args, models, inputs, log, whole=True)   # resampled to the video
        log.stage(f"rendering {len(video)} frames at {inputs.video.fps:g} fps ({args.loop}, "
                  f"region {driving.animation_region})")
        out = dub_to_file(models, video, motion, inputs.waveform, inputs.sample_rate,
                          args.output, driving, batch_size=args.batch_size,
                          paste=not args.crop_only,
                          render_options=RenderOptions(cuda_graphs=args.cuda_graphs),
                          progress=log.progress("frames"), edits=_edits(args, motion))
    log.stage(f"wrote {out}")
    return out


def run(args: argparse.Namespace) -> Path:
    """Do the job described by parsed arguments; returns the written MP4's path.

    Cheap checks first (options, paths, then decoding the photo and the speech),
    so a bad input fails in a second, before any model loads.
    """
    log = _StageLog()
    check_options(args)
    inputs = read_inputs(args)
    source = f"photo {inputs.image.shape[1]}x{inputs.image.shape[0]}" if inputs.video is None \
        else f"video {inputs.video.width}x{inputs.video.height} at {inputs.video.fps:.3f} fps"
    log.stage(f"{source}, speech {inputs.waveform.shape[-1] / inputs.sample_rate:.2f} s at "
              f"{inputs.sample_rate} Hz")
    log.stage("loading models")
    models = load_models(args)
    log.stage(f"device {models.device}, {str(models.dtype).removeprefix('torch.')}")
    return render_job(models, args, inputs, log)


def _mixed_motion(args: argparse.Namespace, models, motion):
    """The generated motion with ``--pose-from`` mixed in and ``--strength`` applied."""
    from .edits import apply_strengths, mix_motion, parse_strengths
    from .motion import MotionSequence

    if args.pose_from is not None:
        if args.pose_from.suffix.lower() == ".safetensors":
            other = MotionSequence.load(args.pose_from)
        else:
            from . import pipeline
            from .video import read_video_frames

            frames, fps = read_video_frames(args.pose_from,
                                            max_frames=int(len(motion) / motion.fps * 120) + 1)
            other = pipeline.motion_from_video(models, frames, face_backend=args.face_backend,
                                               face_index=args.face_index, fps=fps)
        motion = mix_motion(motion, other, eyes=args.pose_eyes)
    if args.strength is not None:
        motion = apply_strengths(motion, parse_strengths(args.strength))
    return motion


def _save_keypoints(path: Path, x_s, x_d) -> None:
    """``x_d`` [T, 21, 3] and ``x_s`` [21, 3], float32, as safetensors."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x_d": x_d.to("cpu", torch.float32).contiguous(),
               "x_s": x_s.reshape(-1, 3).to("cpu", torch.float32).contiguous()}, str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    # Library warnings are progress information here; stderr is kept for the one error line.
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        stream=sys.stdout, format="%(levelname)s: %(message)s")
    try:
        run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into a message
        if args.debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    try:
        known = isinstance(exc, _known_errors())
    except ImportError:  # a building block is missing: every error is then "unexpected"
        known = False
    if known:
        return text
    return f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the traceback)"
