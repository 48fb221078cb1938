"""One job of the headless pipeline as a value, and running it: :class:`Job`, :func:`run_job`.

A :class:`Job` says everything about one render: the source (a photo, or a
video to dub), the speech (or a conversation scene: several faces, each with
its own speech, :class:`~joyvasa_core.scene.SceneSpec`), the motion settings,
the driving settings, the edits, the render options and the outputs. Entry
points build one at their edge (the headless command and the batch command
through :mod:`joyvasa_core.options`) and hand it to :func:`run_job` with
models loaded once (:class:`ModelOptions`).

:func:`run_job` wires the stages as streams: the speech's motion is sampled
window by window, the motion stages (:func:`motion_stages`: region strengths,
a pose taken from a video or a saved motion, the saved motion) and, for a
video, the retiming work on each window as it arrives, and frames are
written chunk by chunk; the first frame is written after the first window
whatever the options.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from . import config
from .driving import DrivingSettings
from .edits import Edits, ExpressionOffset, Timeline, apply_strengths, mix_motion
from .motion import MotionSequence, MotionStream
from .render import RenderOptions
from .retime import LoopMode
from .scene import SceneSpec, speaker_settings
from .settings import MotionSettings
from .silence import SilenceGate

if TYPE_CHECKING:
    from .pipeline import JoyVASAModels
    from .scene import SelectedFace
    from .video_source import VideoInfo

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelOptions:
    """Which models load, and where they run (the same for every job of a batch).

    models_dir: the official ``pretrained_weights`` folder (None: the library's
    default folder; missing files are downloaded); variant: ``"human"`` or
    ``"animal"``; device / precision: as :func:`joyvasa_core.devices.resolve_device`
    / :func:`~joyvasa_core.devices.resolve_dtype` take them.
    """

    models_dir: Path | None = None
    variant: str = "human"
    device: str = "auto"
    precision: str = "auto"

    def folder(self) -> Path:
        """The models folder these options name (the library's default when None): where the
        face detector's files are looked for before the models load."""
        from .model_files import default_models_dir

        return Path(self.models_dir).expanduser() if self.models_dir is not None \
            else default_models_dir()

    def load(self) -> "JoyVASAModels":
        """The models these options name (downloading missing files unless offline)."""
        from .pipeline import load_models

        return load_models(self.models_dir, variant=self.variant, device=self.device,
                           precision=self.precision)


@dataclass(frozen=True)
class SourceSpec:
    """The face to animate: a photo (``image``) or a video to dub (``video``), exactly one.

    face_backend / face_index: which detector and which face (0 = largest);
    loop: how a video shorter than the speech is played (``pingpong`` or ``loop``).
    """

    image: Path | None = None
    video: Path | None = None
    face_backend: str = "auto"
    face_index: int = 0
    loop: LoopMode = "pingpong"

    def __post_init__(self) -> None:
        if (self.image is None) == (self.video is None):
            raise ValueError("a job needs exactly one source: an image or a video")


@dataclass(frozen=True)
class JobEdits:
    """The edits of one job, parsed.

    keypoints: slider tracks, blinks and eye contact (:class:`~joyvasa_core.edits.Edits`,
    not yet bounded to the clip's length), or None; expression_from: a
    reference photo whose expression (minus the source's) is added outside the
    lips, at ``expression_from_strength``; strength: region strengths over time
    (:func:`~joyvasa_core.edits.parse_strengths`), or None; pose_from: a driving
    video or a saved motion (``.safetensors``) whose head pose replaces the
    generated one (with ``pose_eyes`` its eyes and brows too).
    """

    keypoints: Edits | None = None
    expression_from: Path | None = None
    expression_from_strength: float = 1.0
    strength: Timeline | None = None
    pose_from: Path | None = None
    pose_eyes: bool = False


@dataclass(frozen=True)
class Outputs:
    """What a job writes. video: the MP4 (None: keypoints only); paste: the face pasted
    back into the source (False: the 512 crops); save_motion: the generated motion
    (``.safetensors``); save_keypoints: the driving keypoints (``x_d [T, 21, 3]``, ``x_s [21, 3]``;
    a scene of S speakers: ``x_d [S, T, 21, 3]``, ``x_s [S, 21, 3]``)."""

    video: Path | None = None
    paste: bool = True
    save_motion: Path | None = None
    save_keypoints: Path | None = None

    def __post_init__(self) -> None:
        if self.video is None and self.save_keypoints is None:
            raise ValueError("a job must write a video or keypoints")


@dataclass(frozen=True)
class Job:
    """One render, as a value: built and checked at an entry point's edge, then run by
    :func:`run_job` unchanged.

    speech: the one speaker's speech; with a ``scene`` whose speakers name RTTM
    labels, the mixed recording their turns cut; None with a scene whose speakers
    have their own files. scene: several faces, each with its own speech (None:
    one speaker, the ``source.face_index``-th face, as always).
    """

    source: SourceSpec
    speech: Path | None
    outputs: Outputs
    motion: MotionSettings = MotionSettings()
    driving: DrivingSettings = DrivingSettings()
    silence: SilenceGate = SilenceGate()
    edits: JobEdits = JobEdits()
    render: RenderOptions = RenderOptions()
    scene: SceneSpec | None = None

    def __post_init__(self) -> None:
        files = self.scene is not None and self.scene.turns is None
        if (self.speech is None) != files:
            raise ValueError("a job needs one speech file, or a scene whose speakers have theirs")

    def writing(self, video: Path) -> "Job":
        """The same job writing its video to ``video`` (e.g. a partial file)."""
        return replace(self, outputs=replace(self.outputs, video=video))


@dataclass
class Inputs:
    """The decoded, checked inputs of one job.

    image: [H, W, 3] uint8 RGB photo (None with a video); waveform: [C, N] float32
    speech as decoded (muxed into the video at its own rate); sample_rate: its
    rate in Hz; speech: [M] float32 mono 16 kHz, what the motion generator
    hears; video: the source video's stream facts (None with a photo; its
    frames are decoded chunk by chunk while rendering). A scene: waveform is
    every speaker's speech mixed (:func:`~joyvasa_core.scene.mix_speech`), tracks
    [S, M] float32 16 kHz each speaker's speech padded to the longest (speech is
    tracks[0]), faces each speaker's face as found in the photo or the video's
    first frame, and face_backend the detector that found them.
    """

    image: np.ndarray | None
    waveform: torch.Tensor
    sample_rate: int
    speech: torch.Tensor
    video: "VideoInfo | None" = None
    tracks: torch.Tensor | None = None
    faces: "tuple[SelectedFace, ...] | None" = None
    face_backend: str = "auto"

    def describe(self) -> str:
        """One line: the source's size (and rate) and the speech's length."""
        source = f"photo {self.image.shape[1]}x{self.image.shape[0]}" if self.video is None \
            else f"video {self.video.width}x{self.video.height} at {self.video.fps:.3f} fps"
        speakers = "" if self.tracks is None else f", {self.tracks.shape[0]} speakers"
        return (f"{source}, speech {self.waveform.shape[-1] / self.sample_rate:.2f} s at "
                f"{self.sample_rate} Hz{speakers}")


def read_inputs(job: Job, models_dir: Path | None = None) -> Inputs:
    """Decode and check the photo (or probe the video) and the speech (seconds at most; no
    model is loaded). A scene's faces are found here too (the face detector only, from
    ``models_dir`` when it holds the official one), so a face the source lacks fails now.

    Raises ImageLoadError / VideoSourceError / AudioError / SceneError with the file's name
    and the fix.
    """
    _check_steps(job.motion, models_dir)
    if job.scene is not None:
        return _read_scene(job, models_dir)
    from .audio import check_duration, load_audio_file, prepare_waveform
    from .face.image_io import check_photo_size, load_image
    from .video_source import probe_video

    image = video = None
    if job.source.video is not None:
        video = probe_video(job.source.video)
    else:
        image = check_photo_size(load_image(job.source.image), str(job.source.image))
        _check_face_index(image, job.source, models_dir)
    waveform, sample_rate = load_audio_file(job.speech)
    speech = prepare_waveform(waveform, sample_rate)
    check_duration(speech.shape[0], fps=config.DEFAULT_FPS)
    return Inputs(image, waveform, sample_rate, speech, video)


def _check_steps(motion: MotionSettings, models_dir: Path | None) -> None:
    """``steps`` against the diffusion steps of the motion generator, read from its file's args
    (weights left on disk) when the file is already there; else the sampler judges it later."""
    if motion.steps is None:
        return
    from .checkpoints import peek_motion_generator_args
    from .dit.args import MotionGeneratorArgs
    from .model_files import default_models_dir, resolve_motion_generator
    from .option_checks import check_steps

    try:
        path = resolve_motion_generator(models_dir or default_models_dir())
    except FileNotFoundError:
        return
    raw = peek_motion_generator_args(path)
    if raw is None or raw.get("n_diff_steps") is None:
        return
    check_steps(motion.sampler, motion.steps,
                MotionGeneratorArgs.from_checkpoint_args(raw).n_diff_steps)


def _check_face_index(image: np.ndarray, source: SourceSpec, models_dir: Path | None) -> None:
    """A photo's ``face_index`` beyond the faces it holds fails now, from the face detector
    alone (index 0, a box-less ``none`` backend and videos are judged where they are used)."""
    if source.face_index == 0 or source.face_backend == "none":
        return
    from .face.backends import detect_faces
    from .face.errors import FaceIndexError

    faces, _ = detect_faces(image, source.face_backend, models_dir, image_name=str(source.image))
    if source.face_index >= len(faces):
        raise FaceIndexError(str(source.image), source.face_index, len(faces))


def _read_scene(job: Job, models_dir: Path | None) -> Inputs:
    """:func:`read_inputs` of a scene: every speaker's speech and face."""
    from .audio import check_duration, load_audio_file, prepare_waveform
    from .face.backends import get_backend
    from .scene import (first_image, list_faces, mix_speech, pad_tracks, read_turns,
                        select_faces, turn_tracks)
    from .video_source import probe_video

    spec = job.scene
    if spec.turns is None:
        decoded = [load_audio_file(s.audio) for s in spec.speakers]
        tracks = pad_tracks([prepare_waveform(w, r, allow_silence=True) for w, r in decoded])
        waveform, sample_rate = mix_speech(decoded)
    else:
        labels = [s.label for s in spec.speakers]
        turns = read_turns(spec.turns, labels)
        waveform, sample_rate = load_audio_file(job.speech)
        tracks = turn_tracks(prepare_waveform(waveform, sample_rate), config.AUDIO_SAMPLE_RATE,
                             turns, labels)
    check_duration(tracks.shape[1], fps=config.DEFAULT_FPS)
    video = None if job.source.video is None else probe_video(job.source.video)
    first, name = first_image(job.source.image, job.source.video)
    by_index = any(s.face.index is not None for s in spec.speakers)
    backend = get_backend(job.source.face_backend, models_dir).name \
        if job.source.face_backend != "none" else "none"
    faces = list_faces(first, backend, models_dir, name) if by_index else []
    selected = select_faces(faces, [s.face for s in spec.speakers], first.shape[:2], name)
    return Inputs(first if video is None else None, waveform, sample_rate, tracks[0], video,
                  tracks, selected, backend)


class JobLog(Protocol):
    """Where a job reports: one line per stage, and progress callbacks by label
    (``motion``: windows sampled; ``frames``: frames written; ``frames tracked``)."""

    def stage(self, text: str) -> None:
        ...

    def progress(self, label: str) -> Progress | None:
        ...


class QuietLog:
    """A :class:`JobLog` that reports nothing."""

    def stage(self, text: str) -> None:
        pass

    def progress(self, label: str) -> None:
        return None


class _SpeakersLog:
    """``log`` for the S equally long motions of a scene: their windows counted together as
    one ``motion`` progress (``done`` over all speakers, of S times a speaker's windows)."""

    def __init__(self, log: JobLog, speakers: int) -> None:
        self.log, self.speakers, self.done = log, speakers, []
        self.report = log.progress("motion")

    def stage(self, text: str) -> None:
        self.log.stage(text)

    def progress(self, label: str) -> Progress | None:
        if label != "motion" or self.report is None:
            return self.log.progress(label)
        k = len(self.done)
        self.done.append(0)

        def report(done: int, total: int) -> None:
            self.done[k] = done
            self.report(sum(self.done), self.speakers * total)
        return report


# ------------------------------------------------------------------------------ running

def run_job(models: "JoyVASAModels", job: Job, inputs: Inputs | None = None,
            log: JobLog | None = None) -> Path:
    """Face, motion and frames of one job with already loaded models; returns the MP4 path
    (the keypoint file's in keypoints-only mode). ``inputs``: from :func:`read_inputs`
    (decoded here when None)."""
    log = log or QuietLog()
    out = _run(models, job, inputs, log)
    if job.outputs.video is not None:
        log.stage(f"wrote {out}")
    return out


def _run(models: "JoyVASAModels", job: Job, inputs: Inputs | None, log: JobLog) -> Path:
    """:func:`run_job` without its last line (the video's final name may come later)."""
    inputs = inputs or read_inputs(job, models.models_dir)
    if job.scene is not None:
        return _scene(models, job, inputs, log)
    if job.source.video is not None:
        return _dub(models, job, inputs, log)
    from .pipeline import extract_face, iter_driving_keypoints, render_to_file

    face = extract_face(models, inputs.image, face_backend=job.source.face_backend,
                        face_index=job.source.face_index)
    generated, saved = _generated(models, job, inputs.speech, log)
    motion = motion_stages(generated, job.edits, models, job.source)
    edits = _keypoint_edits(models, job, face, generated)
    keypoints = _KeypointsFile(job.outputs.save_keypoints, face.x_s)
    if job.outputs.video is None:
        for start, stop, _, x_d in iter_driving_keypoints(models, face, motion, job.driving,
                                                          batch_size=256, edits=edits):
            keypoints(start, stop, x_d)
        saved.write()
        return keypoints.write(log)
    log.stage(f"rendering {motion.n_frames} frames at {motion.fps:g} fps")
    out = render_to_file(models, face, motion, inputs.waveform, inputs.sample_rate,
                         job.outputs.video, job.driving, paste=job.outputs.paste,
                         render_options=job.render, progress=log.progress("frames"),
                         edits=edits, on_keypoints=keypoints if keypoints.path else None)
    saved.write()
    keypoints.write(log)
    return out


def partial_path(output: Path) -> Path:
    """Where ``output`` streams until it is complete: ``NAME.partial.mp4`` in its folder."""
    return output.with_name(f"{output.stem}.partial{output.suffix or '.mp4'}")


def run_job_atomically(models: "JoyVASAModels", job: Job, inputs: Inputs | None = None,
                       log: JobLog | None = None) -> Path:
    """:func:`run_job` with the video streamed to its :func:`partial_path` and renamed over
    the final name only once complete. On any exception (Ctrl-C, a full disk, a bad
    input) the partial file is removed and a file already at the final name (an
    earlier render) is left as it was."""
    output = job.outputs.video
    if output is None:
        return run_job(models, job, inputs, log)
    log = log or QuietLog()
    partial = partial_path(output)
    try:
        _run(models, job.writing(partial), inputs, log)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    log.stage(f"wrote {output}")
    return output


def _dub(models: "JoyVASAModels", job: Job, inputs: Inputs, log: JobLog) -> Path:
    """A video source: dub it with the speech (:mod:`joyvasa_core.dubbing`)."""
    from .dubbing import dub_to_file
    from .sources import open_video

    seconds = inputs.waveform.shape[-1] / inputs.sample_rate
    log.stage("tracking the face")
    with open_video(models.liveportrait, job.source.video, seconds, loop=job.source.loop,
                    face_backend=job.source.face_backend, face_index=job.source.face_index,
                    models_dir=models.models_dir, progress=log.progress("frames tracked")) as video:
        generated, saved = _generated(models, job, inputs.speech, log)
        motion = motion_stages(generated, job.edits, models, job.source)
        log.stage(f"rendering {len(video)} frames at {inputs.video.fps:g} fps ({job.source.loop}, "
                  f"region {job.driving.animation_region})")
        out = dub_to_file(models, video, motion, inputs.waveform, inputs.sample_rate,
                          job.outputs.video, job.driving, paste=job.outputs.paste,
                          render_options=job.render, progress=log.progress("frames"),
                          edits=_keypoint_edits(models, job, None, generated))
    saved.write()
    return out


def _scene(models: "JoyVASAModels", job: Job, inputs: Inputs, log: JobLog) -> Path:
    """A conversation scene: one motion per speaker (:func:`speaker_motion`), the S faces
    rendered in one batch per chunk and pasted back in speaker order
    (:mod:`joyvasa_core.scene_source`), all the speech mixed into the one audio track."""
    from .dubbing import motion_for_video
    from .pipeline import iter_driving_keypoints, render_to_file
    from .scene_source import SceneMotion, open_video_scene, photo_scene

    speakers = inputs.tracks.shape[0]
    render = dict(paste=job.outputs.paste, render_options=job.render,
                  progress=log.progress("frames"))
    log = _SpeakersLog(log, speakers)
    if job.source.video is not None:
        log.stage(f"tracking {speakers} faces")
        seconds = inputs.waveform.shape[-1] / inputs.sample_rate
        with open_video_scene(models.liveportrait, job.source.video, seconds, inputs.faces,
                              loop=job.source.loop, face_backend=job.source.face_backend,
                              models_dir=models.models_dir, edits=_scene_edits(job, seconds),
                              progress=log.progress("frames tracked")) as scene:
            motions = [speaker_motion(models, job, inputs.tracks[k], k, log)
                       for k in range(speakers)]
            motion = SceneMotion([motion_for_video(m, scene) for m in motions])
            log.stage(f"rendering {len(scene)} frames of {speakers} faces at {scene.fps:g} fps")
            out = render_to_file(models, scene, motion, inputs.waveform, inputs.sample_rate,
                                 job.outputs.video, job.driving, **render)
        return out
    motions = [speaker_motion(models, job, inputs.tracks[k], k, log) for k in range(speakers)]
    scene = photo_scene(models.liveportrait, inputs.image, inputs.faces,
                        backend=inputs.face_backend,
                        edits=_scene_edits(job, motions[0].n_frames / motions[0].fps))
    motion = SceneMotion(motions)
    keypoints = _KeypointsFile(job.outputs.save_keypoints, scene.x_s, speakers)
    if job.outputs.video is None:
        for start, stop, _, x_d in iter_driving_keypoints(models, scene, motion, job.driving,
                                                          batch_size=256):
            keypoints(start, stop, x_d)
        return keypoints.write(log)
    log.stage(f"rendering {motions[0].n_frames} frames of {speakers} faces at "
              f"{motions[0].fps:g} fps")
    out = render_to_file(models, scene, motion, inputs.waveform, inputs.sample_rate,
                         job.outputs.video, job.driving,
                         on_keypoints=keypoints if keypoints.path else None, **render)
    keypoints.write(log)
    return out


def speaker_motion(models: "JoyVASAModels", job: Job, speech: torch.Tensor, k: int,
                   log: JobLog | None = None) -> MotionStream:
    """Speaker ``k``'s motion: ``speech`` ([M] float32 16 kHz) through the same sampler and
    motion stages (:func:`motion_stages`) as a single job's, with the seed
    :func:`~joyvasa_core.scene.speaker_seed` (the job's seed + k) and the silence gate driven
    by ``speech`` itself, so a silent listener keeps quiet."""
    seeded = replace(job, motion=speaker_settings(job.motion, k))
    generated, _ = _generated(models, seeded, speech, log or QuietLog())
    speaker = job.scene.speakers[k] if job.scene is not None else None
    edits = job.edits if speaker is None or speaker.strength is None else \
        replace(job.edits, strength=speaker.strength)
    return motion_stages(generated, edits, models, job.source)


def _scene_edits(job: Job, seconds: float) -> list[Edits | None]:
    """Each speaker's keypoint edits (its own, else the job's), bounded to the clip."""
    edits = [s.edits if s.edits is not None else job.edits.keypoints for s in job.scene.speakers]
    return [None if e is None else e.until(seconds) for e in edits]


class _MotionFile:
    """``--save-motion``: the generated chunks kept as they pass, written once all were read."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.chunks = path, []

    def __call__(self, chunk: MotionSequence, _start: int) -> MotionSequence:
        self.chunks.append(chunk)
        return chunk

    def write(self) -> None:
        if self.path is not None and self.chunks:
            MotionSequence.cat(self.chunks).save(self.path)


class _KeypointsFile:
    """``--save-keypoints``: each chunk's driving keypoints kept where they were made (252 bytes a
    frame; no host sync between render chunks), moved to the CPU and written at the end.
    speakers: S of a scene (each chunk's x_d then [S * b, 21, 3], speaker-major)."""

    def __init__(self, path: Path | None, x_s: torch.Tensor, speakers: int | None = None) -> None:
        self.path, self.x_s, self.parts, self.speakers = path, x_s, [], speakers

    def __call__(self, _start: int, _stop: int, x_d: torch.Tensor) -> None:
        self.parts.append(x_d)

    def write(self, log: JobLog) -> Path | None:
        """Write ``x_d`` [T, 21, 3] and ``x_s`` [21, 3] (a scene: [S, T, 21, 3] and [S, 21, 3]),
        float32, as safetensors."""
        if self.path is None:
            return None
        from safetensors.torch import save_file

        if self.speakers is None:
            x_d, x_s = torch.cat(self.parts), self.x_s.reshape(-1, 3)
        else:
            x_d = torch.cat([p.reshape(self.speakers, -1, *p.shape[1:]) for p in self.parts], 1)
            x_s = self.x_s.reshape(self.speakers, -1, 3)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"x_d": x_d.to("cpu", torch.float32).contiguous(),
                   "x_s": x_s.to("cpu", torch.float32).contiguous()}, str(self.path))
        log.stage(f"wrote {self.path}")
        return self.path


def _generated(models: "JoyVASAModels", job: Job, speech: torch.Tensor,
               log: JobLog) -> tuple[MotionStream, _MotionFile]:
    """The motion stream of ``speech`` ([M] float32 16 kHz; sampled as it is read), reporting
    each window to ``log``, and the ``--save-motion`` file its chunks pass through."""
    from .pipeline import audio_motion_stream

    stream = audio_motion_stream(models, speech, config.AUDIO_SAMPLE_RATE, job.motion,
                                 silence=job.silence)
    report = log.progress("motion")
    if report is not None:
        windows = stream.windows or 0
        done = [0]

        def counted(chunk: MotionSequence, _start: int) -> MotionSequence:
            done[0] += 1
            report(done[0], max(windows, done[0]))
            return chunk
        stream = stream.map(counted)
    saved = _MotionFile(job.outputs.save_motion)
    return (stream.map(saved) if saved.path is not None else stream), saved


def motion_stages(stream: MotionStream, edits: JobEdits, models: "JoyVASAModels",
                  source: SourceSpec) -> MotionStream:
    """The motion-side edits as stream stages, each applied to a chunk as it arrives at its
    frame offset: the head pose from ``edits.pose_from`` (read now, before any
    window is sampled), then the region strengths (frame 0 of the stream is
    their reference)."""
    if edits.pose_from is not None:
        other = _pose_motion(models, edits.pose_from, stream, source)
        stream = stream.map(lambda chunk, start: mix_motion(chunk, other, eyes=edits.pose_eyes,
                                                            first_frame=start))
    if edits.strength is not None:
        reference: list[MotionSequence] = []

        def strengthened(chunk: MotionSequence, start: int) -> MotionSequence:
            if not reference:
                reference.append(chunk[:1])
            return apply_strengths(chunk, edits.strength, reference[0], first_frame=start)
        stream = stream.map(strengthened)
    return stream


def _pose_motion(models: "JoyVASAModels", path: Path, stream: MotionStream,
                 source: SourceSpec) -> MotionSequence:
    """The motion whose pose is mixed in: a saved motion, or a driving video's motion read
    through M along its tracked face (the seconds the speech needs, plus one)."""
    if path.suffix.lower() == ".safetensors":
        return MotionSequence.load(path)
    from .sources import motion_from_video, open_video

    seconds = (stream.n_frames or 0) / stream.fps + 1.0
    with open_video(models.liveportrait, path, None, face_backend=source.face_backend,
                    face_index=source.face_index, models_dir=models.models_dir,
                    until=seconds) as video:
        return motion_from_video(video)


def _keypoint_edits(models: "JoyVASAModels", job: Job, face, generated: MotionStream
                    ) -> Edits | None:
    """The keypoint edits bounded to the clip (the generated motion's length), with the
    reference photo's expression offset (``expression_from``, photos only)."""
    edits = job.edits.keypoints
    if edits is not None:
        edits = edits.until(generated.n_frames / generated.fps)
    if job.edits.expression_from is not None and face is not None:
        from .face.image_io import load_image
        from .pipeline import extract_face

        reference = extract_face(models, load_image(job.edits.expression_from),
                                 face_backend=job.source.face_backend)
        offset = ExpressionOffset.from_faces(reference.source, face.source,
                                             job.edits.expression_from_strength)
        edits = (edits or Edits()) + Edits(offset_tracks=(offset,))
    return edits
