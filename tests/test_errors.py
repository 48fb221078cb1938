"""joyvasa_core/errors.py: one line per failure, known errors without the debug hint."""
from __future__ import annotations

from joyvasa_core.errors import CheckpointError, UsageError, one_line
from joyvasa_core.face.errors import NoFaceError
from joyvasa_core.video import VideoWriterError


def test_known_errors_keep_their_message_on_one_line():
    assert one_line(UsageError("--steps must be >= 1,\n  got 0")) == "--steps must be >= 1, got 0"
    assert one_line(CheckpointError("bad file\nFix: download it")) == "bad file Fix: download it"
    assert one_line(VideoWriterError("no encoder")) == "no encoder"          # a RuntimeError too
    assert one_line(NoFaceError("a.png", "mtcnn")).startswith("no face")
    assert one_line(FileNotFoundError("x.wav not found")) == "x.wav not found"


def test_unexpected_errors_say_how_to_see_the_traceback():
    line = one_line(RuntimeError("boom"))
    assert line == "unexpected RuntimeError: boom (rerun with --debug for the traceback)"
    assert one_line(KeyError()).startswith("unexpected KeyError: KeyError")
