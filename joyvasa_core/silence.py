"""The silence gate: lips that hold still, closed as in the source, where a speaker is silent.

The motion generator moves the mouth in silence too (breathing, murmurs of
the noise), and a listener whose mouth chatters spoils a conversation. The
gate finds the spans without speech in the speaker's own 16 kHz track with
a voice-activity detector (silero-vad's ONNX model, shipped inside its wheel
and run by onnxruntime) and, inside them, holds the lip keypoints' expression
at the stream's frame 0 (:meth:`~joyvasa_core.motion.MotionSequence.scaled_regions`
with the ``lips`` strength at 0). Frame 0 is what the relative driving maps
onto the source's own face (expression-friendly, the default), so a gated
mouth is the source's mouth, closed by the lip normalisation when it was
open; with absolute driving it is the generated rest mouth of frame 0. The
head, eyes, brows and every keypoint edit (blinks, eye contact) keep moving:
a listener stays alive and quiet.

The gate is a stage of the motion stream (:meth:`SilenceGate.apply`; a live
session gates each committed chunk as its audio arrives); its weights are a
pure function of the detector's probabilities (:func:`speech_frames`, then
:func:`gate_weights`): 1 where a frame overlaps speech, 0 in silence, and
a linear ramp of ``ramp`` seconds on the silent side of every edge, so a
speaking frame is exactly as generated and the mouth never snaps. Pauses
shorter than ``min_silence`` (gaps between words) count as speech.

Timeline: frame ``f`` of a motion stream at ``fps`` covers the padded
samples ``[f, f + 1) · 16000 / fps``, the speech starting after
:data:`~joyvasa_core.config.AUDIO_PAD_BEFORE` zeros (the official clock).
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import config
from .motion import REGION_NAMES, MotionSequence, MotionStream

#: Samples per detector block at 16 kHz (32 ms), and the samples of the block before it
#: that the model sees as context.
BLOCK = 512
CONTEXT = 64
_MODEL = "silero_vad.onnx"
_LIPS = REGION_NAMES.index("lips")


class VoiceActivityError(RuntimeError):
    """The voice-activity detector is missing or unusable (names the fix)."""


@dataclass(frozen=True)
class SilenceGate:
    """How silent spans hold the lips still (see the module docstring).

    enabled: False leaves the motion exactly as generated (the official output).
    threshold: speech probability (0..1) from which a 32 ms block counts as speech.
    ramp: seconds over which the lips fade from generated to held (and back),
        on the silent side of each edge.
    min_silence: pauses shorter than this (s) count as speech.
    """

    enabled: bool = True
    threshold: float = 0.5
    ramp: float = 0.2
    min_silence: float = 0.3

    def __post_init__(self) -> None:
        for name, low, high in (("threshold", 0.0, 1.0), ("ramp", 0.0, 10.0),
                                ("min_silence", 0.0, 60.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not low <= value <= high:
                raise ValueError(f"silence gate {name} must lie in {low:g}..{high:g}, "
                                 f"got {value!r}")

    def weights(self, speech: torch.Tensor | np.ndarray, n_frames: int,
                fps: float = config.DEFAULT_FPS) -> np.ndarray:
        """Lip weights ``[n_frames]`` float32 in 0..1 of the motion frames of ``speech``
        (``[N]`` mono 16 kHz; frame 0 at the start of the padded clock)."""
        if not self.enabled:
            return np.ones(n_frames, np.float32)
        probabilities = VoiceActivity().feed(speech, last=True)
        return frame_weights(probabilities, n_frames, fps, self)

    def apply(self, stream: MotionStream, speech: torch.Tensor | np.ndarray) -> MotionStream:
        """``stream`` with the lips gated by ``speech`` (``[N]`` mono 16 kHz, what the stream
        was sampled from; its frame count must be known). Disabled: ``stream`` itself.

        The detector runs as the chunks are read, each time only as far as the chunk's
        frames plus the ramp and the shortest pause reach (so the first frame does not
        wait for a long clip's detection); the weights equal :meth:`weights` of the whole.
        """
        if not self.enabled:
            return stream
        if stream.n_frames is None:
            raise ValueError("the silence gate needs the stream's frame count; gate a live "
                             "stream with speech_frames() and gate_weights() as its audio arrives")
        samples = speech.detach().to("cpu", torch.float32).numpy() \
            if isinstance(speech, torch.Tensor) else np.asarray(speech, np.float32)
        samples = samples.reshape(-1)
        gate = StreamGate(self, stream.fps)

        def gated(chunk: MotionSequence, start: int) -> MotionSequence:
            need = min(samples.shape[0], math.ceil((start + len(chunk) + gate.reach) * gate.spf)
                       - config.AUDIO_PAD_BEFORE + BLOCK)
            if not gate.complete and (need > gate.fed or need == samples.shape[0]):
                gate.hear(samples[gate.fed:need], gate.fed, last=need == samples.shape[0])
            return gate(chunk, start)
        return stream.map(gated)


#: The gate off: the motion exactly as generated.
NO_GATE = SilenceGate(enabled=False)


def hold_lips(chunk: MotionSequence, weights: np.ndarray | torch.Tensor,
              reference: MotionSequence) -> MotionSequence:
    """``chunk`` with its lip expression at ``ref + w · (exp − ref)``.

    weights: ``[len(chunk)]`` in 0..1 (1: as generated, exactly; 0: held at
    ``reference``, one frame, the stream's frame 0). Other keypoints, the head
    pose and scale are untouched.
    """
    w = torch.as_tensor(np.asarray(weights, np.float32))
    strengths = torch.ones(len(chunk), len(REGION_NAMES), dtype=torch.float32)
    strengths[:, _LIPS] = w
    return chunk.scaled_regions(strengths, reference)


def frame_weights(probabilities: np.ndarray, n_frames: int, fps: float,
                  gate: SilenceGate) -> np.ndarray:
    """Lip weights ``[n_frames]`` float32 in 0..1 from the detector's block probabilities
    ``[B]`` of a whole clip (:func:`speech_frames`, then :func:`gate_weights`)."""
    return gate_weights(speech_frames(probabilities, n_frames, fps, gate.threshold), fps, gate)


def speech_frames(probabilities: np.ndarray, n_frames: int, fps: float, threshold: float,
                  first_sample: int = 0) -> np.ndarray:
    """``[n_frames]`` bool: the motion frames a speaking block overlaps.

    probabilities: ``[B]`` speech probability of consecutive 32 ms blocks, block b
    covering speech samples ``first_sample + [512 b, 512 (b + 1))`` (16 kHz; padded
    samples from ``AUDIO_PAD_BEFORE`` on); a block speaks from ``threshold`` on.
    """
    spf = config.AUDIO_SAMPLE_RATE / fps
    loud = np.flatnonzero(np.asarray(probabilities, np.float32) >= threshold)
    start = config.AUDIO_PAD_BEFORE + first_sample + BLOCK * loud          # padded samples
    lo = np.minimum(np.floor(start / spf).astype(np.int64), n_frames)      # a block touches
    hi = np.minimum(np.ceil((start + BLOCK) / spf).astype(np.int64), n_frames)   # 1-3 frames
    edges = np.zeros(n_frames + 1, np.int64)
    np.add.at(edges, lo, 1)
    np.add.at(edges, hi, -1)
    return np.cumsum(edges[:-1]) > 0


def gate_weights(speech: np.ndarray, fps: float, gate: SilenceGate, *,
                 known_frames: int | None = None) -> np.ndarray:
    """Lip weights ``[T]`` float32 in 0..1 of frames whose speech flags are ``speech [T]``.

    Silent runs shorter than ``gate.min_silence`` between speech become speech;
    then the weight is ``1 − d / (r + 1)`` at d frames from the nearest speech
    frame (r = ``gate.ramp`` in frames), clipped at 0. known_frames: for a live
    stream, frames from it on are not heard yet (not silence): a silent run
    reaching them is not filled.
    """
    speech = np.array(speech, bool)
    _fill_short_silences(speech, round(gate.min_silence * fps), known_frames)
    return _ramped(speech, round(gate.ramp * fps))


def _fill_short_silences(speech: np.ndarray, shortest: int, known: int | None) -> None:
    """Mark as speech (in place) every silent run shorter than ``shortest`` frames that
    has speech on both sides (known frames only)."""
    edges = np.flatnonzero(np.diff(speech.astype(np.int8)))
    for lo, hi in zip(edges[:-1], edges[1:]):
        if speech[lo] and not speech[lo + 1] and hi - lo < shortest \
                and (known is None or hi + 1 < known):
            speech[lo + 1:hi + 1] = True


def _ramped(speech: np.ndarray, ramp: int) -> np.ndarray:
    """1 on speech frames, ``1 − d / (ramp + 1)`` at distance d from the nearest, ≥ 0."""
    n = speech.shape[0]
    if not speech.any():
        return np.zeros(n, np.float32)
    index = np.arange(n)
    where = np.flatnonzero(speech)
    after = np.searchsorted(where, index)              # first speech frame at or after each
    next_ = where[np.minimum(after, where.size - 1)]
    prev = where[np.maximum(after - 1, 0)]
    distance = np.minimum(np.abs(next_ - index), np.abs(index - prev))
    return np.clip(1.0 - distance / (ramp + 1.0), 0.0, 1.0).astype(np.float32)


class StreamGate:
    """The silence gate of one motion stream whose speech is heard as it comes (a live
    session's, or an offline clip's read chunk by chunk): :meth:`hear` the 16 kHz speech,
    then gate each chunk of motion (:meth:`__call__`) by the frames known so far.

    A chunk's weights look :attr:`reach` frames around it (the ramp and the shortest
    pause), so hearing that far beyond a chunk gives it the weights of the whole clip
    (:meth:`SilenceGate.weights`); less (a live stream's lookahead) treats the frames
    not yet heard as unknown. The hold's reference is the stream's frame 0.
    """

    def __init__(self, gate: SilenceGate, fps: float) -> None:
        self.gate, self.fps = gate, fps
        self.spf = config.AUDIO_SAMPLE_RATE / fps
        self.reach = round((gate.ramp + gate.min_silence) * fps) + 2
        self.reference: MotionSequence | None = None
        self.flags = np.zeros(0, bool)                  # speech flag of each frame
        self.restart(0)

    def restart(self, frame: int) -> None:
        """Forget the speech from ``frame`` on (an interrupt): detect afresh from there."""
        self.origin = max(0, round(frame * self.spf) - config.AUDIO_PAD_BEFORE)  # speech sample
        self.fed, self.complete = self.origin, False
        self.detector: VoiceActivity | None = None
        self.flags = self.flags[:frame]

    @property
    def known(self) -> int:
        """Frames whose speech is all heard."""
        blocks = 0 if self.detector is None else self.detector.blocks
        return int((config.AUDIO_PAD_BEFORE + self.origin + BLOCK * blocks) // self.spf)

    def hear(self, samples: torch.Tensor | np.ndarray, start: int, *, last: bool = False) -> None:
        """Speech ``[n]`` 16 kHz from speech sample ``start`` (what was heard already is
        skipped); ``last``: the stream's speech ends there."""
        if not self.gate.enabled:
            return
        if self.detector is None:
            self.detector = VoiceActivity()
        probabilities = self.detector.feed(samples[max(0, self.fed - start):], last=last)
        first_block = self.detector.blocks - probabilities.shape[0]
        self.fed = max(self.fed, start + int(samples.shape[0]))
        self.complete = last
        self._grow(self.known)
        self.flags |= speech_frames(probabilities, self.flags.shape[0], self.fps,
                                    self.gate.threshold, self.origin + BLOCK * first_block)

    def __call__(self, chunk: MotionSequence, first: int) -> MotionSequence:
        """``chunk`` (frames ``first..``) with its lips held where they are silent."""
        if self.reference is None:
            self.reference = chunk[:1]
        if not self.gate.enabled:
            return chunk
        stop = first + len(chunk)
        known = self.known
        self._grow(stop)
        lo = max(0, first - self.reach)
        if self.complete:
            hi, unknown = min(self.flags.shape[0], stop + self.reach), None
        else:
            hi = max(stop, min(known, stop + self.reach))
            self._grow(hi)
            unknown = known - lo
        weights = gate_weights(self.flags[lo:hi], self.fps, self.gate, known_frames=unknown)
        return hold_lips(chunk, weights[first - lo:stop - lo], self.reference)

    def _grow(self, frames: int) -> None:
        if frames > self.flags.shape[0]:
            self.flags = np.concatenate([self.flags, np.zeros(frames - self.flags.shape[0], bool)])


def _model_path() -> Path:
    """silero-vad's ONNX model inside its installed wheel (the package is not imported:
    its ``__init__`` sets torch's thread count to 1 for the whole process)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceActivityError("the silence gate needs silero-vad: pip install silero-vad "
                                 "(or turn the gate off: --silence-gate off)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _MODEL
    if not path.is_file():
        raise VoiceActivityError(f"silero-vad is installed without its model ({path}); "
                                 "reinstall it: pip install --force-reinstall silero-vad")
    return path


class VoiceActivity:
    """silero-vad over 16 kHz speech, streamed: :meth:`feed` samples as they come, get the
    speech probability of every 32 ms block completed so far. One stream per instance."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(_model_path()), options,
                                                     providers=["CPUExecutionProvider"])
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._rest = np.zeros(0, np.float32)
        self._rate = np.array(config.AUDIO_SAMPLE_RATE, np.int64)
        self.blocks = 0

    def feed(self, samples: torch.Tensor | np.ndarray, *, last: bool = False) -> np.ndarray:
        """Probabilities ``[b]`` float32 of the blocks these ``[n]`` samples complete (with
        ``last``, the final partial block padded with zeros too)."""
        x = samples.detach().to("cpu", torch.float32).numpy() if isinstance(samples, torch.Tensor) \
            else np.asarray(samples, np.float32)
        x = np.concatenate([self._rest, x.reshape(-1)])
        whole = x.shape[0] // BLOCK * BLOCK
        if last and whole < x.shape[0]:
            x = np.concatenate([x, np.zeros(BLOCK - (x.shape[0] - whole), np.float32)])
            whole = x.shape[0]
        self._rest = x[whole:]
        out = np.empty(whole // BLOCK, np.float32)
        for i, start in enumerate(range(0, whole, BLOCK)):
            block = np.concatenate([self._context, x[start:start + BLOCK]])[None]
            probability, self._state = self._session.run(
                None, {"input": block, "state": self._state, "sr": self._rate})
            out[i] = probability.reshape(-1)[0]
            self._context = block[0, -CONTEXT:]
        self.blocks += out.shape[0]
        return out
