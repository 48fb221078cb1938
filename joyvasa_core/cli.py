"""Headless command line: one photo (or a video to dub) + one speech file -> one MP4.

    python -m joyvasa_core --image face.png --audio speech.wav --output out.mp4
    python -m joyvasa_core --video clip.mp4 --audio speech.wav --output dubbed.mp4
    python -m joyvasa_core --image two.png --speaker 0=a.wav --speaker 1=b.wav --output talk.mp4
    python -m joyvasa_core --image two.png --list-faces

This module only turns argv into a :class:`~joyvasa_core.job.Job`
(:mod:`joyvasa_core.options`), runs it (:func:`joyvasa_core.job.run_job`) and
reports. Cheap inputs (the options, the photo, the audio) are checked before
the models load, so a wrong path fails in a second. Stage lines go to stdout;
progress goes to stderr (overwriting bars on a terminal; otherwise one line
per motion window and per chunk of frames, with the elapsed time, so the log
of a server or a batch shows where a job is). Every failure ends with exit
status 1 and a single line ``error: <cause>. <fix>`` on stderr (``--debug``
adds the traceback); only an error that lists several causes (every missing
model file) keeps one line per cause, then the download commands.
"""
from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import options
from .errors import EXIT_ERROR, EXIT_INTERRUPTED
from .errors import report as error_report
from .job import Job, ModelOptions, read_inputs, run_job_atomically

#: How each progress label is counted in the progress lines.
UNITS = {"motion": "windows"}


class StageLog:
    """A :class:`~joyvasa_core.job.JobLog` for a terminal or a log file: one timed line per
    stage on stdout; progress on stderr, overwriting itself on a terminal, else one timed
    line per report (``[  12.3s] motion 2/3 windows``, ``[  14.0s] frames 48/300``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def _elapsed(self) -> str:
        return f"[{time.perf_counter() - self.start:6.1f}s]"

    def stage(self, text: str) -> None:
        print(f"{self._elapsed()} {text}", flush=True)

    def progress(self, label: str):
        unit = f" {UNITS[label]}" if label in UNITS else ""
        last = [-1]

        def report(done: int, total: int) -> None:
            if self.tty:
                percent = 100 * done // max(total, 1)
                if percent != last[0]:
                    print(f"\r  {label}: {done}/{total} ({percent}%)", end="", file=sys.stderr,
                          flush=True)
                    if done >= total:
                        print(file=sys.stderr)
                last[0] = percent
            elif done > max(last[0], 0):   # nothing for the bar's start (0 done)
                print(f"{self._elapsed()} {label} {done}/{total}{unit}", file=sys.stderr,
                      flush=True)
                last[0] = done
        return report


def run(job: Job, models: ModelOptions, log: StageLog | None = None) -> Path:
    """Do one job: decode its inputs (a bad input fails in a second, before any model
    loads), load the models, run it; returns the written file's path. The video streams
    to ``NAME.partial.mp4`` and takes its name once complete: a failed run leaves no
    partial file and an earlier file of that name untouched."""
    log = log or StageLog()
    inputs = read_inputs(job, models.folder())
    log.stage(inputs.describe())
    log.stage("loading models")
    loaded = models.load()
    log.stage(f"device {loaded.device}, {str(loaded.dtype).removeprefix('torch.')}")
    return run_job_atomically(loaded, job, inputs, log)


def print_faces(args) -> None:
    """``--list-faces``: one line per detected face of the photo (or the video's first frame),
    left to right: ``INDEX  x0,y0,x1,y1  score S`` (the index and the box are what
    ``--speaker FACE=...`` takes). Runs the face detector only; writes no file."""
    from .scene import box_text, first_image, list_faces

    image, name = first_image(args.image, args.video)
    faces = list_faces(image, args.face_backend, options.model_options(args).folder(), name)
    for index, face in enumerate(faces):
        print(f"{index}  {box_text(face.box)}  score {face.score:.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = options.parse_args(argv)
    # Library warnings are progress information here; stderr is kept for the one error line.
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        stream=sys.stdout, format="%(levelname)s: %(message)s")
    try:
        if args.list_faces:
            print_faces(args)
            return 0
        run(options.job_from_args(args), options.model_options(args))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into a message
        if args.debug:
            traceback.print_exc()
        print(f"error: {error_report(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return 0
