"""Headless command line: one photo + one speech file -> one MP4.

    python -m joyvasa_core --image face.png --audio speech.wav --output out.mp4

Cheap inputs (the photo, the audio) are checked before the models load, so a
wrong path fails in a second. Progress goes to stdout; every failure ends with
exit status 1 and a single line ``error: <cause>. <fix>`` on stderr (``--debug``
adds the traceback).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import config
from .devices import DEVICE_CHOICES, PRECISION_CHOICES
from .dit.denoiser import PE_VARIANTS
from .dit.samplers import SAMPLERS
from .driving import DRIVING_OPTIONS, REGIONS, DrivingSettings
from .render import RenderOptions

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m joyvasa_core",
        description="Animate a portrait photo with speech (JoyVASA + LivePortrait) into an MP4.")
    io = p.add_argument_group("inputs and output")
    io.add_argument("--image", required=True, type=Path, help="portrait photo (PNG, JPEG, ...)")
    io.add_argument("--audio", required=True, type=Path,
                    help="speech (wav, mp3, flac, m4a, ... anything FFmpeg decodes)")
    io.add_argument("--output", required=True, type=Path, help="MP4 file to write")
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

    run = p.add_argument_group("run")
    run.add_argument("--batch-size", type=int,
                     help="frames rendered at once (default: from free GPU memory; 4 on CPU)")
    run.add_argument("--cuda-graphs", action="store_true",
                     help="CUDA only: replay denoising steps and render chunks from captured "
                          "CUDA graphs (fewer kernel launches; same numbers)")
    run.add_argument("--debug", action="store_true", help="print tracebacks")
    return p


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is written for the user (cause + fix): no traceback needed."""
    from .audio import AudioError
    from .checkpoints import CheckpointError
    from .face.errors import FaceError
    from .video import VideoWriterError

    # CheckpointError covers model_files.MissingModelFilesError; FaceError covers
    # ImageLoadError and NoFaceError.
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


def run(args: argparse.Namespace) -> Path:
    """Do the job described by parsed arguments; returns the written MP4's path."""
    from . import pipeline
    from .audio import load_audio_file
    from .face.image_io import load_image
    from .motion import MotionSequence

    log = _StageLog()
    driving = DrivingSettings(
        driving_option=args.driving_option, animation_region=args.animation_region,
        flag_stitching=not args.no_stitching, flag_relative_motion=not args.no_relative_motion,
        driving_multiplier=args.driving_multiplier)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    image = load_image(args.image)
    waveform, sample_rate = load_audio_file(args.audio)
    log.stage(f"photo {image.shape[1]}x{image.shape[0]}, speech "
              f"{waveform.shape[-1] / sample_rate:.2f} s at {sample_rate} Hz")

    log.stage("loading models")
    models = pipeline.load_models(args.models_dir, variant="animal" if args.animal else "human",
                                  device=args.device, precision=args.precision)
    log.stage(f"device {models.device}, {str(models.dtype).removeprefix('torch.')}")
    face = pipeline.extract_face(models, image, face_backend=args.face_backend,
                                 face_index=args.face_index)
    motion = pipeline.audio_motion_stream(models, waveform, sample_rate, seed=args.seed,
                                          cfg_scale=args.cfg_scale, sampler=args.sampler,
                                          steps=args.steps, smoothing=args.smoothing,
                                          pose_scale=args.pose_scale,
                                          expression_scale=args.expression_scale,
                                          pe_variant=args.pe_variant, cuda_graphs=args.cuda_graphs)
    kept: list = []   # --save-motion: the chunks as they pass to the renderer
    if args.save_motion is not None:
        motion = motion.map(lambda chunk: kept.append(chunk) or chunk)
    # Windows are sampled as the renderer asks for them: writing starts after the first one.
    log.stage(f"generating motion and rendering {motion.n_frames} frames at {motion.fps:g} fps")
    out = pipeline.render_to_file(models, face, motion, waveform, sample_rate, args.output,
                                  driving, batch_size=args.batch_size, paste=not args.crop_only,
                                  render_options=RenderOptions(cuda_graphs=args.cuda_graphs),
                                  progress=log.progress("frames"))
    if args.save_motion is not None:
        MotionSequence.cat(kept).save(args.save_motion)
    log.stage(f"wrote {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
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
