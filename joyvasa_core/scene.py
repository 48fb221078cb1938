"""Conversation scenes as values: which faces speak, with which speech (docs/conversation.md).

A scene is a photo or a video holding S >= 1 selected faces, each driven by its
own speech. This module holds what an entry point builds at its edge and the
checks that need no model:

* :class:`FaceSelector`: a face by its index in left-to-right order of the
  detected faces, or by a pixel box ``x0,y0,x1,y1`` (:func:`parse_face`);
* :class:`Speaker` / :class:`SceneSpec`: one speech file per speaker, or one
  mixed recording plus an RTTM file of who speaks when (:func:`parse_speaker`);
* :func:`select_faces`: the selectors resolved against the faces found in a
  photo (or a video's first frame), with one-line errors for a face the image
  lacks, a box outside it and two speakers on one face;
* :func:`parse_rttm` / :func:`turn_tracks`: the RTTM form, each speaker's
  track the mixture inside its turns and silence elsewhere;
* :func:`pad_tracks` and :func:`mix_speech`: tracks of different lengths
  padded with silence to the longest, and the speech of all speakers mixed
  into the one audio track of the output without clipping;
* :func:`speaker_seed` / :func:`speaker_settings`: speaker k samples its motion
  with the job's seed + k.

The render side (a source of S faces, S motion streams) is
:mod:`joyvasa_core.scene_source`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import UsageError
from .face.backends import MIN_FACE_PX, Face, box_face, box_iou

if TYPE_CHECKING:
    from .edits import Edits, Timeline
    from .settings import MotionSettings

#: Two selections whose boxes overlap this much (IoU) are one face.
SAME_FACE_IOU = 0.5
#: Seeds wrap here (the generators take any seed below it).
SEED_MODULUS = 2**32


class SceneError(UsageError):
    """A scene that cannot work (a face the image lacks, an RTTM that does not parse ...)."""


# ------------------------------------------------------------------------------- values

@dataclass(frozen=True)
class FaceSelector:
    """One face of a scene: ``index`` in left-to-right order of the detected faces (0 = the
    leftmost), or ``box`` (x0, y0, x1, y1) in source pixels; exactly one."""

    index: int | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if (self.index is None) == (self.box is None):
            raise ValueError("a face selector needs exactly one of index or box")

    def describe(self) -> str:
        if self.box is None:
            return f"face {self.index}"
        return "box " + ",".join(f"{v:g}" for v in self.box)


@dataclass(frozen=True)
class Speaker:
    """One speaker: a face and its speech, either a file (``audio``, silent where this person
    does not speak) or a label of the scene's RTTM turns (``label``).

    edits: this speaker's keypoint edits (expression, blinks, eye contact), in place of
    the job's; strength: this speaker's region strengths, in place of the job's; None:
    the job's. The command builds both for every speaker (blinks seeded with
    :func:`speaker_seed`, so the speakers do not blink together).
    """

    face: FaceSelector
    audio: Path | None = None
    label: str | None = None
    edits: "Edits | None" = None
    strength: "Timeline | None" = None

    def __post_init__(self) -> None:
        if (self.audio is None) == (self.label is None):
            raise ValueError("a speaker needs exactly one of audio or label")


@dataclass(frozen=True)
class SceneSpec:
    """The speakers of a scene, in speaker order (the order of the motions, of the saved
    keypoints and of the paste: later speakers are pasted over earlier ones).

    turns: an RTTM file of who speaks when in the job's one mixed recording (every
    speaker then has a ``label``); None: every speaker has its own ``audio`` file.
    """

    speakers: tuple[Speaker, ...]
    turns: Path | None = None

    def __post_init__(self) -> None:
        if not self.speakers:
            raise ValueError("a scene needs at least one speaker")
        labelled = [s.label is not None for s in self.speakers]
        if any(labelled) != (self.turns is not None) or len(set(labelled)) > 1:
            raise ValueError("with turns every speaker names an RTTM label; without, a file")

    def __len__(self) -> int:
        return len(self.speakers)


def speaker_seed(seed: int, k: int) -> int:
    """The motion seed of speaker ``k`` (0-based): ``(seed + k) mod 2**32``, so speaker 0
    keeps the job's seed and two speakers with the same speech do not move in lockstep."""
    return (int(seed) + int(k)) % SEED_MODULUS


def speaker_settings(settings: "MotionSettings", k: int) -> "MotionSettings":
    """The motion settings of speaker ``k``: ``settings`` with :func:`speaker_seed`'s seed."""
    from dataclasses import replace

    return replace(settings, seed=speaker_seed(settings.seed, k))


# ------------------------------------------------------------------------------ parsing

def parse_face(text: str) -> FaceSelector:
    """``"1"`` (left-to-right index) or ``"x0,y0,x1,y1"`` (pixel box) -> :class:`FaceSelector`;
    raises :class:`SceneError` naming the form."""
    text = text.strip()
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) == 1:
            index = int(parts[0])
            if index < 0:
                raise ValueError
            return FaceSelector(index=index)
        if len(parts) == 4:
            box = tuple(float(p) for p in parts)
            if all(math.isfinite(v) for v in box):
                return FaceSelector(box=box)
    except ValueError:
        pass
    raise SceneError(f"face {text!r} is neither a face index (0, 1, ... left to right; "
                     "--list-faces shows them) nor a pixel box x0,y0,x1,y1")


def split_face(text: str, option: str, what: str) -> tuple[FaceSelector, str]:
    """``FACE=REST`` -> (the face, REST); the face ends at the first ``=``. Raises
    :class:`SceneError` naming ``option`` and the form (``what``: REST's name)."""
    face, sep, rest = text.partition("=")
    if not sep or not face.strip() or not rest.strip():
        raise SceneError(f"{option} {text!r} is not FACE={what.split(' ')[0]}: give a face "
                         f"(an index or a box x0,y0,x1,y1), '=', then {what}")
    return parse_face(face), rest


def speaker_under(text: str, folder: Path) -> str:
    """``FACE=AUDIO`` with a relative AUDIO made relative to ``folder`` (a jobs file's folder);
    anything else as it is (it fails later, where it is parsed)."""
    face, sep, rest = text.partition("=")
    if not sep or not rest.strip():
        return text
    return f"{face}={Path(folder) / Path(rest).expanduser()}"


def parse_speaker(text: str, *, labelled: bool) -> Speaker:
    """``FACE=AUDIO`` (or ``FACE=LABEL`` when ``labelled``: the RTTM form) -> :class:`Speaker`."""
    what = "LABEL (a speaker of the --turns file)" if labelled else "AUDIO (a speech file)"
    selector, rest = split_face(text, "--speaker", what)
    if labelled:
        return Speaker(selector, label=rest.strip())
    return Speaker(selector, audio=Path(rest))


# --------------------------------------------------------------------------------- faces

def describe_faces(faces: Sequence[Face]) -> str:
    """``0: 12,30,96,120 (0.99); 1: ...``: the faces found, as --list-faces numbers them."""
    if not faces:
        return "none"
    return "; ".join(f"{i}: {box_text(f.box)} ({f.score:.2f})" for i, f in enumerate(faces))


def box_text(box) -> str:
    """A box as the ``x0,y0,x1,y1`` whole pixels a selector takes."""
    return ",".join(str(int(round(float(v)))) for v in box)


@dataclass(frozen=True)
class SelectedFace:
    """A speaker's face as found: ``face`` (box and landmarks, source pixels) and whether a
    detector found it (False: a box that matched no detected face, placed as given)."""

    face: Face
    detected: bool


def select_faces(faces: Sequence[Face], selectors: Sequence[FaceSelector],
                 size: tuple[int, int], name: str = "the source") -> tuple[SelectedFace, ...]:
    """Resolve ``selectors`` against ``faces`` (left to right, as
    :func:`~joyvasa_core.face.backends.detect_faces` gives them; empty with no detector) in
    an image of ``size`` (height, width).

    A box matching a detected face (IoU >= :data:`SAME_FACE_IOU`) takes that face's
    landmarks. Raises :class:`SceneError`: an index the image lacks (the message lists
    the faces found), a box outside the image or too small, two speakers on one face.
    """
    height, width = size
    chosen: list[SelectedFace] = []
    for k, selector in enumerate(selectors):
        if selector.index is not None:
            if selector.index >= len(faces):
                raise SceneError(
                    f"speaker {k} asks for face {selector.index} but {name} has "
                    f"{len(faces)} detected face(s) (left to right: {describe_faces(faces)}); "
                    "use one of those indices or a box x0,y0,x1,y1")
            chosen.append(SelectedFace(faces[selector.index], True))
            continue
        box = np.asarray(selector.box, np.float64)
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise SceneError(f"speaker {k}'s box {box_text(box)} is not inside {name} "
                             f"({width}x{height} pixels); give x0,y0,x1,y1 with "
                             f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")
        if max(x1 - x0, y1 - y0) < MIN_FACE_PX:
            raise SceneError(f"speaker {k}'s box {box_text(box)} is smaller than "
                             f"{MIN_FACE_PX} pixels; give the box of the whole face")
        match = max(faces, key=lambda f: box_iou(f.box, box), default=None)
        if match is not None and box_iou(match.box, box) >= SAME_FACE_IOU:
            chosen.append(SelectedFace(match, True))
        else:
            chosen.append(SelectedFace(box_face(box), False))
    for k, a in enumerate(chosen):
        for j in range(k):
            if box_iou(a.face.box, chosen[j].face.box) >= SAME_FACE_IOU:
                raise SceneError(
                    f"speakers {j} ({selectors[j].describe()}) and {k} "
                    f"({selectors[k].describe()}) are the same face of {name} (box "
                    f"{box_text(a.face.box)}); give each speaker its own face")
    return tuple(chosen)


def first_image(image: Path | None, video: Path | None) -> tuple[np.ndarray, str]:
    """The picture a scene's faces are chosen in: the photo ``image``, or the first frame of
    ``video`` ([H, W, 3] uint8 RGB), and how errors name it."""
    from .face.image_io import check_photo_size, load_image
    from .video_source import iter_video, probe_video

    if video is not None:
        first = next(iter_video(video, 1, probe_video(video))).frames[0].numpy()
        return first, f"the first frame of {video}"
    return check_photo_size(load_image(image), str(image)), str(image)


def list_faces(image: np.ndarray, backend: str = "auto", models_dir: Path | None = None,
               name: str = "the source") -> list[Face]:
    """The faces a scene selects from (``image`` [H, W, 3] uint8 RGB), left to right: what
    ``--list-faces`` prints (:func:`describe_faces`). Runs the face detector only."""
    from .face.backends import detect_faces

    if backend == "none":
        raise SceneError("--face-backend none detects no face; pick a detector (auto) to list "
                         "faces, or select faces by box x0,y0,x1,y1")
    return detect_faces(image, backend, models_dir, image_name=name)[0]


# ---------------------------------------------------------------------------------- RTTM

@dataclass(frozen=True)
class Turn:
    """One RTTM ``SPEAKER`` line: ``label`` speaks from ``start`` for ``duration`` seconds."""

    label: str
    start: float
    duration: float


def parse_rttm(text: str, name: str = "the RTTM file") -> list[Turn]:
    """The turns of an RTTM file: one ``SPEAKER file chan start dur <NA> <NA> label <NA> <NA>``
    line per turn (10 space-separated fields; other record types, blank lines and ``#``
    comments are skipped). Raises :class:`SceneError` naming the first bad line."""
    turns = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] != "SPEAKER":
            if fields[0].isupper():          # another RTTM record type (SPKR-INFO, LEXEME ...)
                continue
            raise SceneError(f"{name} line {number} is not an RTTM record ({line.strip()!r}); "
                             "give lines 'SPEAKER file 1 START DUR <NA> <NA> LABEL <NA> <NA>'")
        try:
            if len(fields) < 9:
                raise ValueError("fewer than 9 fields")
            start, duration = float(fields[3]), float(fields[4])
            if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or duration < 0:
                raise ValueError("a negative or non-finite time")
        except ValueError as exc:
            raise SceneError(f"{name} line {number} does not parse as an RTTM SPEAKER line "
                             f"({exc}): {line.strip()!r}; the form is 'SPEAKER file 1 START "
                             "DUR <NA> <NA> LABEL <NA> <NA>' with times in seconds") from None
        turns.append(Turn(fields[7], start, duration))
    if not turns:
        raise SceneError(f"{name} has no SPEAKER line; give the RTTM output of a "
                         "diarization tool")
    return turns


def read_turns(path: Path, labels: Sequence[str]) -> list[Turn]:
    """The turns of the RTTM file ``path`` of the speakers ``labels``; raises
    :class:`SceneError` when it does not parse or lacks a label given."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"--turns {path} cannot be read ({exc}); give an RTTM text file") \
            from None
    turns = parse_rttm(text, str(path))
    named = sorted({t.label for t in turns})
    missing = [label for label in labels if label not in named]
    if missing:
        raise SceneError(f"{path} names no speaker {', '.join(missing)} (it names "
                         f"{', '.join(named)}); map --speaker FACE=LABEL to those labels")
    return [t for t in turns if t.label in labels]


def turn_tracks(mix: torch.Tensor, rate: int, turns: Sequence[Turn],
                labels: Sequence[str]) -> torch.Tensor:
    """Each label's track: ``mix`` [N] inside its turns, 0 elsewhere -> [len(labels), N]."""
    n = mix.shape[-1]
    masks = torch.zeros(len(labels), n, dtype=mix.dtype, device=mix.device)
    for turn in turns:
        lo = min(n, int(round(turn.start * rate)))
        hi = min(n, int(round((turn.start + turn.duration) * rate)))
        for k, label in enumerate(labels):
            if label == turn.label:
                masks[k, lo:hi] = 1
    return masks * mix


# ------------------------------------------------------------------------- tracks, mixing

def pad_tracks(tracks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Tracks [N_k] -> [S, max N_k], the shorter ones padded with silence at the end."""
    n = max(int(t.shape[-1]) for t in tracks)
    return torch.stack([torch.nn.functional.pad(t, (0, n - t.shape[-1])) for t in tracks])


def mix_speech(waveforms: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    """The speakers' speech mixed into the output's one audio track.

    waveforms: ``(wave [C, N], rate)`` per speaker, as decoded. Each is made mono
    and resampled to the highest rate among them, padded with silence to the
    longest, and the tracks are summed; when the sum's peak exceeds 1 the whole
    mix is scaled down to peak 1 (no clipping, no change when it fits).
    Returns ``([1, N] float32, rate)``.
    """
    from .audio import resample, to_mono, to_float_tensor

    rate = max(int(r) for _, r in waveforms)
    tracks = [resample(to_mono(to_float_tensor(w)), int(r), rate) for w, r in waveforms]
    mix = pad_tracks(tracks).sum(0)
    peak = float(mix.abs().max()) if mix.numel() else 0.0
    if peak > 1.0:
        mix = mix / peak
    return mix[None].to(torch.float32), rate
