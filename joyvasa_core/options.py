"""Options of the headless and batch commands: argv (or a jobs-file row) -> checked values.

The one parser of the headless pipeline's options (:func:`build_parser`), used
by ``python -m joyvasa_core`` (:mod:`joyvasa_core.cli`) and by the batch
command's jobs files (:mod:`joyvasa_core.batch.jobs`); the live server reuses
its model and face options (:func:`add_model_arguments`, :func:`add_face_arguments`).
:func:`job_from_args` turns parsed options into a frozen
:class:`~joyvasa_core.job.Job` and :func:`model_options` into
:class:`~joyvasa_core.job.ModelOptions`, judging every value and output path
that can be judged without decoding or loading (a :class:`~joyvasa_core.errors.UsageError`
names the option and the fix). Nothing below this edge sees an
``argparse.Namespace``.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import config
from .devices import DEVICE_CHOICES, PRECISION_CHOICES
from .dit.denoiser import PE_VARIANTS
from .dit.samplers import SAMPLERS
from .driving import DRIVING_OPTIONS, REGIONS, DrivingSettings
from .dubbing import DUBBING_REGIONS
from .edits import build_edits, parse_strengths, parse_timeline, parse_times
from .edits.blink import DEFAULT_RATE as DEFAULT_BLINK_RATE
from .errors import UsageError
from .job import Job, JobEdits, ModelOptions, Outputs, SourceSpec
from .option_checks import NUMBER_RANGES, check_numbers, check_output_path, check_outputs_apart
from .render import RenderOptions
from .retime import LOOP_MODES
from .scene import SceneSpec, parse_speaker, speaker_seed, split_face
from .settings import MotionSettings
from .silence import SilenceGate

#: A file name each output option's error suggests (--output, --save-motion, --save-keypoints).
OUTPUT_EXAMPLES = ("talking.mp4", "motion.safetensors", "keypoints.safetensors")
#: The parser's group of load-time options (the batch command gives them once for all jobs).
MODELS_GROUP = "models"


def add_model_arguments(group) -> None:
    """--models-dir, --animal, --device, --precision (read back by :func:`model_options`)."""
    group.add_argument("--models-dir", type=Path,
                       help="the official pretrained_weights folder as downloaded "
                            "(default: the library's model folder; missing files are downloaded)")
    group.add_argument("--animal", action="store_true", help="use the animal LivePortrait weights")
    group.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    group.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                       help="auto: fp16 on GPUs, fp32 on CPU; bf16 on a CPU: the fast path "
                            "(W and G in bf16, compiled on the first frame: 2.1-2.4x float32 on an "
                            "AVX512-BF16 CPU; docs/benchmarks.md)")


def add_face_arguments(group) -> None:
    """--face-backend and --face-index."""
    group.add_argument("--face-backend", default="auto",
                       help="face detector: auto, or a backend name of joyvasa_core.face "
                            "('none' = centred square crop)")
    group.add_argument("--face-index", type=int, default=0,
                       help="which face when several are found (0 = largest)")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes end like every other failure of the command: one
    ``error: <cause>`` line on stderr (no usage wall; ``--help`` has it), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m joyvasa_core",
        description="Animate a portrait photo with speech (JoyVASA + LivePortrait) into an MP4.")
    io = p.add_argument_group("inputs and output")
    source = io.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="portrait photo (PNG, JPEG, ...)")
    source.add_argument("--video", type=Path,
                        help="source video to dub with the speech (mp4, mov, mkv, ...)")
    io.add_argument("--audio", type=Path,
                    help="speech (wav, mp3, flac, m4a, ... anything FFmpeg decodes); with "
                         "--turns, the mixed recording of a conversation")
    io.add_argument("--output", type=Path,
                    help="MP4 file to write (required unless --save-keypoints is given)")
    io.add_argument("--save-motion", type=Path, metavar="FILE",
                    help="also save the generated motion (.safetensors)")

    scene = p.add_argument_group("conversation (several faces, docs/conversation.md)")
    scene.add_argument("--speaker", action="append", metavar="FACE=AUDIO",
                       help="a conversation: FACE (a left-to-right face index 0, 1, ... or a box "
                            "x0,y0,x1,y1) speaks AUDIO; repeat for every speaker. With --turns: "
                            "FACE=LABEL, a speaker of the RTTM file (docs/conversation.md)")
    scene.add_argument("--turns", type=Path, metavar="FILE.rttm",
                       help="who speaks when in the --audio mixture (RTTM, as diarization tools "
                            "write it); each --speaker FACE=LABEL gets the mixture in its turns")
    scene.add_argument("--speaker-expression", action="append", metavar="FACE=TEXT",
                       help="the --expression of one speaker (FACE as its --speaker gives it), in "
                            "place of --expression; repeatable")
    scene.add_argument("--speaker-strength", action="append", metavar="FACE=TEXT",
                       help="the --strength of one speaker, in place of --strength; repeatable")
    scene.add_argument("--list-faces", action="store_true",
                       help="print the detected faces of --image (or the first frame of --video): "
                            "left-to-right index, box and score; writes nothing")

    add_model_arguments(p.add_argument_group(MODELS_GROUP))

    face = p.add_argument_group("face")
    add_face_arguments(face)
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

    gate = p.add_argument_group(
        "silence gate", "lips held still, closed as in the source, where the speech is silent "
        "(a voice-activity detector finds the spans; docs/command_line.md)")
    gate.add_argument("--silence-gate", default="on", choices=("on", "off"),
                      help="on (default) or off: the mouth exactly as generated")
    gate.add_argument("--silence-threshold", type=float, default=SilenceGate.threshold,
                      metavar="P", help="speech probability from which 32 ms count as speech "
                                        "(0-1, default %(default)g)")
    gate.add_argument("--silence-ramp", type=float, default=SilenceGate.ramp, metavar="S",
                      help="seconds over which the lips fade in and out of the hold "
                           "(default %(default)g)")

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
        "edits applied to the driving keypoints before stitching (syntax: "
        "docs/expression_control.md)")
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
    if args.list_faces:
        return args
    if args.output is None and args.save_keypoints is None:
        parser.error("the following arguments are required: --output "
                     "(or --save-keypoints FILE alone for keypoints without rendering)")
    for option in ("pose_from", "expression_from"):
        path = getattr(args, option)
        if path is not None and not path.is_file():
            parser.error(f"argument --{option.replace('_', '-')}: file not found: {path}")
    return args


def check_options(args: argparse.Namespace) -> None:
    """Judge every job option and output path that can be judged without decoding or loading.

    Raises :class:`UsageError` (one line, cause and fix). Costs no I/O beyond
    a few ``stat`` calls, so a batch can check all its jobs first.
    """
    check_numbers((flag, getattr(args, flag.lstrip("-").replace("-", "_")))
                  for flag in NUMBER_RANGES)
    scene = scene_from_args(args)
    outputs = (("--output", args.output), ("--save-motion", args.save_motion),
               ("--save-keypoints", args.save_keypoints))
    for (option, path), example in zip(outputs, OUTPUT_EXAMPLES):
        if path is not None:
            check_output_path(path, option, example)
    speech = () if scene is None or scene.turns is not None else \
        tuple(("--speaker", s.audio) for s in scene.speakers)
    check_outputs_apart(outputs, (("--image", args.image), ("--video", args.video),
                                  ("--audio", args.audio), ("--pose-from", args.pose_from),
                                  ("--expression-from", args.expression_from),
                                  ("--turns", args.turns), *speech))
    if args.video is not None:
        for option, value in (("--expression-from", args.expression_from),
                              ("--save-keypoints", args.save_keypoints)):
            if value is not None:
                raise UsageError(f"{option} works with --image only (a video's keypoints "
                                 "change every frame); drop it or use a photo")


def scene_from_args(args: argparse.Namespace) -> SceneSpec | None:
    """The conversation scene that ``--speaker`` (and ``--turns``) describe, or None for one
    speaker (``--audio`` alone). Raises :class:`UsageError` for a mixture of the forms,
    a malformed ``FACE=AUDIO`` and the options a scene cannot take."""
    speakers, turns, audio = getattr(args, "speaker", None), getattr(args, "turns", None), \
        args.audio
    if not speakers:
        for option in ("--speaker-expression", "--speaker-strength"):
            if getattr(args, option.lstrip("-").replace("-", "_"), None):
                raise UsageError(f"{option} needs the speakers of a conversation (--speaker)")
        if turns is not None:
            raise UsageError("--turns needs --speaker FACE=LABEL for every RTTM speaker to show")
        if audio is None:
            raise UsageError("the speech is missing: give --audio SPEECH (one speaker) or "
                             "--speaker FACE=AUDIO for each speaker of a conversation")
        return None
    if audio is not None and turns is None:
        raise UsageError("--speaker and --audio exclude each other: give each speaker its own "
                         "file (--speaker FACE=AUDIO), or the mixture as --audio with --turns "
                         "FILE.rttm and --speaker FACE=LABEL")
    if turns is not None and audio is None:
        raise UsageError("--turns needs the mixed recording as --audio MIX")
    for option, value in (("--save-motion", args.save_motion),
                          ("--expression-from", args.expression_from),
                          ("--crop-only", args.crop_only or None),
                          ("--face-index", args.face_index or None)):
        if value is not None:
            raise UsageError(f"{option} works with one speaker (--audio) only; drop it for a "
                             "conversation")
    parsed = [parse_speaker(text, labelled=turns is not None) for text in speakers]
    own = {option: _per_speaker(getattr(args, option.lstrip("-").replace("-", "_"), None),
                                option, parsed)
           for option in ("--speaker-expression", "--speaker-strength")}
    return SceneSpec(tuple(
        replace(speaker,
                edits=build_edits(own["--speaker-expression"].get(k, args.expression),
                                  args.blink, blink_rate=args.blink_rate,
                                  blink_strength=args.blink_strength,
                                  seed=speaker_seed(args.seed, k), eye_contact=args.eye_contact),
                strength=_strengths(own["--speaker-strength"].get(k, args.strength)))
        for k, speaker in enumerate(parsed)), turns)


def _per_speaker(texts: list[str] | None, option: str, speakers: list) -> dict[int, str]:
    """``FACE=TEXT`` options -> {speaker number: TEXT}, the text checked (edit syntax)."""
    kind = option.removeprefix("--speaker-")
    chosen: dict[int, str] = {}
    for text in texts or ():
        face, rest = split_face(text, option, "TEXT (edit text)")
        matches = [k for k, s in enumerate(speakers) if s.face == face]
        if not matches:
            raise UsageError(f"{option} {text!r}: no --speaker has {face.describe()}; give "
                             "FACE exactly as its --speaker does")
        if matches[0] in chosen:
            raise UsageError(f"{option} is given twice for {face.describe()}; give it once")
        try:
            _checked_text(kind)(rest)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{option} {face.describe()}: {exc}") from None
        chosen[matches[0]] = rest
    return chosen


def _strengths(text: str | None):
    return None if text is None else parse_strengths(text)


def job_from_args(args: argparse.Namespace) -> Job:
    """The :class:`~joyvasa_core.job.Job` that parsed options describe, checked
    (:func:`check_options`); raises :class:`UsageError` or ``ValueError`` naming the fix."""
    check_options(args)
    dubbing = args.video is not None
    return Job(
        source=SourceSpec(image=args.image, video=args.video, face_backend=args.face_backend,
                          face_index=args.face_index, loop=args.loop),
        speech=args.audio,
        scene=scene_from_args(args),
        outputs=Outputs(video=args.output, paste=not args.crop_only, save_motion=args.save_motion,
                        save_keypoints=args.save_keypoints),
        motion=MotionSettings(seed=args.seed, cfg_scale=args.cfg_scale, sampler=args.sampler,
                              steps=args.steps, smoothing=args.smoothing,
                              pose_scale=args.pose_scale, expression_scale=args.expression_scale,
                              pe_variant=args.pe_variant, cuda_graphs=args.cuda_graphs),
        # a video's region has its own flag (its regions are LivePortrait's video editing's)
        silence=silence_gate(args),
        driving=DrivingSettings(driving_option=args.driving_option,
                                animation_region=args.region if dubbing else args.animation_region,
                                flag_stitching=not args.no_stitching,
                                flag_relative_motion=not args.no_relative_motion,
                                driving_multiplier=args.driving_multiplier),
        edits=JobEdits(
            keypoints=build_edits(args.expression, args.blink, blink_rate=args.blink_rate,
                                  blink_strength=args.blink_strength, seed=args.seed,
                                  eye_contact=args.eye_contact),
            expression_from=args.expression_from,
            expression_from_strength=args.expression_from_strength,
            strength=_strengths(args.strength),
            pose_from=args.pose_from, pose_eyes=args.pose_eyes),
        render=RenderOptions(batch_size=args.batch_size, cuda_graphs=args.cuda_graphs))


def silence_gate(args: argparse.Namespace) -> SilenceGate:
    """The :class:`~joyvasa_core.silence.SilenceGate` the ``--silence-*`` options describe."""
    return SilenceGate(enabled=args.silence_gate == "on", threshold=args.silence_threshold,
                       ramp=args.silence_ramp)


def model_options(args: argparse.Namespace) -> ModelOptions:
    """The models that parsed options (:func:`add_model_arguments`) name."""
    if args.models_dir is not None and args.models_dir.exists() and not args.models_dir.is_dir():
        raise UsageError(f"--models-dir {args.models_dir} is a file; pass the pretrained_weights "
                         "folder")
    return ModelOptions(models_dir=args.models_dir, variant="animal" if args.animal else "human",
                        device=args.device, precision=args.precision)
