"""Generated head motion: de-normalisation, pose smoothing and the :class:`MotionSequence` value.

The motion generator emits normalised coefficients ``[T, 70]`` per frame,
laid out ``[exp 63 | scale 1 | t 3 | pitch 1 | yaw 1 | roll 1]``. The motion
template (JoyVASA's ``motion_template.pkl``) maps them back to LivePortrait
motion: ``exp = c * std_exp + mean_exp``, every other entry
``c * (max - min) + min``; angles come out in degrees.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Protocol
from pathlib import Path

import numpy as np
import torch

from .config import DEFAULT_FPS, LIP_INDICES, NUM_KP, POSE_EMA_ALPHA
from .keypoints import rotation_matrix

#: Coefficients per frame and the layout of the pose part (after the 63 exp values).
MOTION_DIM = 70
EXP_DIM = NUM_KP * 3
POSE_KEYS = ("scale", "t", "pitch", "yaw", "roll")
_POSE_SIZES = (1, 3, 1, 1, 1)
TEMPLATE_KEYS = ("mean_exp", "std_exp") + tuple(f"{b}_{k}" for k in POSE_KEYS for b in ("min", "max"))
#: Regions of the motion that strengths scale (:meth:`MotionSequence.scaled_regions`): keypoint
#: groups of the expression, then the head's angles (each axis) and translation.
REGION_NAMES: tuple[str, ...] = ("lips", "eyes", "brows", "expression", "pitch", "yaw", "roll",
                                 "translation")
EXPRESSION_REGIONS = ("lips", "eyes", "brows", "expression")
EYE_KEYPOINTS = (11, 13, 15, 16)
BROW_KEYPOINTS = (1, 2)
_FORMAT = "joyvasa-motion-sequence"
_FORMAT_VERSION = "1"


def _keypoint_region() -> torch.Tensor:
    """``[21]`` index into REGION_NAMES of each keypoint's expression region."""
    region = torch.full((NUM_KP,), REGION_NAMES.index("expression"), dtype=torch.long)
    for name, indices in (("lips", LIP_INDICES), ("eyes", EYE_KEYPOINTS), ("brows", BROW_KEYPOINTS)):
        region[list(indices)] = REGION_NAMES.index(name)
    return region


_KEYPOINT_REGION = _keypoint_region()


@dataclass(frozen=True)
class MotionTemplate:
    """De-normalisation statistics: ``mean_exp``/``std_exp`` [63] and pose ``low``/``high`` [7].

    ``low``/``high`` hold the template minima / maxima of (scale, tx, ty, tz,
    pitch°, yaw°, roll°), in that order. float32 tensors.
    """

    mean_exp: torch.Tensor
    std_exp: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    @classmethod
    def from_dict(cls, stats: Mapping[str, np.ndarray | torch.Tensor | list[float]]) -> "MotionTemplate":
        """From the template's ``{name: array}`` (only :data:`TEMPLATE_KEYS` are read)."""
        missing = [k for k in TEMPLATE_KEYS if k not in stats]
        if missing:
            raise KeyError(f"motion template lacks {missing}; it must be JoyVASA's motion_template.pkl "
                           f"(keys {', '.join(TEMPLATE_KEYS)})")

        def vec(key: str) -> torch.Tensor:
            return torch.as_tensor(np.asarray(stats[key], dtype=np.float32)).reshape(-1)

        low = torch.cat([vec(f"min_{k}") for k in POSE_KEYS])
        high = torch.cat([vec(f"max_{k}") for k in POSE_KEYS])
        template = cls(mean_exp=vec("mean_exp"), std_exp=vec("std_exp"), low=low, high=high)
        if template.mean_exp.numel() != EXP_DIM or template.std_exp.numel() != EXP_DIM \
                or low.numel() != sum(_POSE_SIZES):
            raise ValueError(f"motion template has wrong sizes: exp {template.mean_exp.numel()} "
                             f"(expected {EXP_DIM}), pose {low.numel()} (expected {sum(_POSE_SIZES)})")
        return template

    @classmethod
    def from_file(cls, path: str | Path) -> "MotionTemplate":
        """Read ``motion_template.pkl`` safely (numpy-only unpickling) via ``joyvasa_core.checkpoints``."""
        from .checkpoints import read_motion_template

        return cls.from_dict(read_motion_template(path))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MotionTemplate":
        return MotionTemplate(*(getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)))


@dataclass(frozen=True)
class MotionSequence:
    """Per-frame LivePortrait motion of T frames at ``fps`` frames per second.

    exp ``[T, 21, 3]``; scale ``[T, 1]``; t ``[T, 3]``; pitch, yaw, roll ``[T]``
    in degrees. Slicing (``seq[10:20]``) gives a shorter sequence.
    """

    exp: torch.Tensor
    scale: torch.Tensor
    t: torch.Tensor
    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    fps: float = DEFAULT_FPS

    _TENSORS = ("exp", "scale", "t", "pitch", "yaw", "roll")

    def __post_init__(self) -> None:
        n = self.exp.shape[0]
        expected = {"exp": (n, NUM_KP, 3), "scale": (n, 1), "t": (n, 3), "pitch": (n,), "yaw": (n,),
                    "roll": (n,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"MotionSequence.{name} must be {list(shape)}, "
                                 f"got {list(getattr(self, name).shape)}")

    def __len__(self) -> int:
        return self.exp.shape[0]

    def __getitem__(self, index: slice | int | torch.Tensor) -> "MotionSequence":
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return replace(self, **{k: getattr(self, k)[index] for k in self._TENSORS})

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return len(self) / self.fps

    def pose(self) -> torch.Tensor:
        """``[T, 7]``: scale, tx, ty, tz, pitch, yaw, roll (degrees)."""
        return torch.cat([self.scale, self.t, self.pitch[:, None], self.yaw[:, None], self.roll[:, None]], 1)

    def with_pose(self, pose: torch.Tensor) -> "MotionSequence":
        """The same expressions with pose ``[T, 7]`` (layout of :meth:`pose`)."""
        scale, t, pitch, yaw, roll = pose.split(_POSE_SIZES, dim=1)
        return replace(self, scale=scale, t=t, pitch=pitch[:, 0], yaw=yaw[:, 0], roll=roll[:, 0])

    def rescaled(self, pose: float = 1.0, expression: float = 1.0,
                 reference: "MotionSequence | None" = None) -> "MotionSequence":
        """Scale each channel's change from frame 0 (user strength controls).

        ``pose`` scales pitch/yaw/roll (degrees) and t; ``expression`` scales
        exp. 1.0 returns the motion unchanged (official), 0 freezes the channel
        at frame 0, values above 1 exaggerate. Scale (zoom) is left alone.
        ``reference``: the stream's frame 0 when this is a later chunk of it
        (default: this sequence's own frame 0), so chunks rescale like the whole.
        The two-knob case of :meth:`scaled_regions`.
        """
        if pose == 1.0 and expression == 1.0:
            return self
        regions = torch.tensor([expression if name in EXPRESSION_REGIONS else pose
                                for name in REGION_NAMES], dtype=torch.float64)
        return self.scaled_regions(regions, reference)

    def scaled_regions(self, strengths: torch.Tensor,
                       reference: "MotionSequence | None" = None) -> "MotionSequence":
        """Scale each region's change from ``reference`` (default: this sequence's frame 0).

        strengths: ``[T, 8]`` or ``[8]`` in :data:`REGION_NAMES` order: the
        expression keypoint groups (lips, eyes, brows, the other keypoints),
        then pitch, yaw, roll (degrees) and translation t; ``x_ref + k · (x −
        x_ref)``, exactly ``x`` where k is 1. ``reference`` is one frame: the
        stream's frame 0 when this is a later chunk. Scale (zoom) is left
        alone. Computed in the motion's dtype and device.
        """
        ref = self[:1] if reference is None else reference
        k = strengths.to(self.exp.device, self.exp.dtype).expand(len(self), len(REGION_NAMES))

        def scaled(x: torch.Tensor, x0: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
            return torch.where(kx == 1, x, x0 + kx * (x - x0))   # strength 1: exactly as generated

        k_exp = k[:, _KEYPOINT_REGION.to(k.device)][..., None]            # [T, 21, 1]
        column = {name: k[:, i] for i, name in enumerate(REGION_NAMES)}
        return replace(self, exp=scaled(self.exp, ref.exp, k_exp),
                       t=scaled(self.t, ref.t, column["translation"][:, None]),
                       pitch=scaled(self.pitch, ref.pitch, column["pitch"]),
                       yaw=scaled(self.yaw, ref.yaw, column["yaw"]),
                       roll=scaled(self.roll, ref.roll, column["roll"]))

    def stream(self) -> "MotionStream":
        """This sequence as a stream of one chunk (:class:`Motion`)."""
        return MotionStream((self,), fps=self.fps, n_frames=len(self), windows=1)

    @classmethod
    def cat(cls, chunks: "Iterable[MotionSequence]") -> "MotionSequence":
        """Consecutive chunks of one stream -> one sequence (the first chunk's fps)."""
        parts = list(chunks)
        if not parts:
            raise ValueError("no motion chunks to join: the stream was empty")
        return replace(parts[0], **{k: torch.cat([getattr(p, k) for p in parts]) for k in cls._TENSORS})

    def rotation(self) -> torch.Tensor:
        """Head rotation ``[T, 3, 3]`` (LivePortrait's transposed Rz·Ry·Rx, for row-vector keypoints)."""
        return rotation_matrix(self.pitch, self.yaw, self.roll)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MotionSequence":
        return replace(self, **{k: getattr(self, k).to(device=device, dtype=dtype) for k in self._TENSORS})

    def save(self, path: str | Path) -> None:
        """Write a ``.safetensors`` file (float tensors + ``fps`` and format in the metadata)."""
        from safetensors.torch import save_file

        tensors = {k: getattr(self, k).detach().to("cpu").contiguous() for k in self._TENSORS}
        save_file(tensors, str(path), metadata={"format": _FORMAT, "version": _FORMAT_VERSION,
                                                "fps": json.dumps(float(self.fps))})

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "MotionSequence":
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a JoyVASA motion sequence (metadata format "
                                 f"{meta.get('format')!r}); write it with MotionSequence.save")
            return cls(**{k: f.get_tensor(k) for k in cls._TENSORS}, fps=json.loads(meta["fps"]))


def decode_motion(coef: torch.Tensor, template: MotionTemplate, fps: float = DEFAULT_FPS) -> MotionSequence:
    """Normalised coefficients ``[T, 70]`` (or ``[1, T, 70]``) -> :class:`MotionSequence`.

    ``exp = c[:63] * std_exp + mean_exp``; pose ``c[63:] * (high - low) + low``.
    """
    if coef.ndim == 3 and coef.shape[0] == 1:
        coef = coef[0]
    if coef.ndim != 2 or coef.shape[1] != MOTION_DIM:
        raise ValueError(f"motion coefficients must be [T, {MOTION_DIM}], got {list(coef.shape)}")
    tpl = template.to(coef.device, coef.dtype)
    exp = coef[:, :EXP_DIM] * tpl.std_exp + tpl.mean_exp
    pose = coef[:, EXP_DIM:] * (tpl.high - tpl.low) + tpl.low
    scale, t, pitch, yaw, roll = pose.split(_POSE_SIZES, dim=1)
    return MotionSequence(exp=exp.reshape(-1, NUM_KP, 3), scale=scale, t=t, pitch=pitch[:, 0],
                          yaw=yaw[:, 0], roll=roll[:, 0], fps=fps)


class PoseEMA:
    """The official head-pose EMA as a causal filter over consecutive chunks of a stream.

    ``y_0 = x_0``, ``y_i = a * x_i + (1 - a) * y_{i-1}`` over scale, t and the
    angles (exp untouched), with ``a = alpha ** strength``: strength 1 is the
    official filter (alpha 0.01, head pose nearly frozen at frame 0), 0 turns it
    off, values between shorten the time constant geometrically (0.5 -> a = 0.1).
    The last output row is carried to the next chunk, so filtering a sequence
    chunk by chunk gives exactly (bit for bit) what filtering it whole gives.
    """

    def __init__(self, alpha: float = POSE_EMA_ALPHA, strength: float = 1.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if strength < 0.0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        self.a = alpha ** strength
        self._last: torch.Tensor | None = None   # previous output row [7], float on the CPU

    def __call__(self, seq: MotionSequence) -> MotionSequence:
        """Filter the next chunk (T >= 0 frames) of the stream."""
        if self.a >= 1.0 or len(seq) == 0:
            return seq
        pose = seq.pose()
        rows = list(pose.detach().to("cpu").unbind(0))   # a recursive filter: T tiny steps on the CPU
        first = 0 if self._last is None else None
        prev = self._last
        for i in range(len(rows)):
            if i != first:
                rows[i] = self.a * rows[i] + (1.0 - self.a) * prev
            prev = rows[i]
        self._last = prev
        if first == 0 and len(rows) == 1:
            return seq
        return seq.with_pose(torch.stack(rows).to(pose.device))


def smooth_pose(seq: MotionSequence, alpha: float = POSE_EMA_ALPHA, strength: float = 1.0) -> MotionSequence:
    """Official EMA over scale, t and the angles of a whole sequence (see :class:`PoseEMA`)."""
    return PoseEMA(alpha, strength)(seq)


@dataclass
class MotionStream:
    """A motion sequence produced chunk by chunk (iterate it once): what every stage reads.

    ``chunks`` yields consecutive :class:`MotionSequence` chunks at ``fps``;
    ``n_frames`` is their total when known in advance (offline), None when not
    (live); ``windows`` the number of chunks when known (one per sampled
    window). Frame 0 of the first chunk is the reference of relative motion.
    A whole sequence is :meth:`collect` over its stream.
    """

    chunks: Iterable[MotionSequence]
    fps: float = DEFAULT_FPS
    n_frames: int | None = None
    windows: int | None = None

    def __iter__(self) -> Iterator[MotionSequence]:
        return iter(self.chunks)

    def stream(self) -> "MotionStream":
        """The stream itself (:class:`Motion`)."""
        return self

    def map(self, stage: "Callable[[MotionSequence, int], MotionSequence]") -> "MotionStream":
        """The same stream with ``stage(chunk, start)`` applied to each chunk, lazily: ``start``
        is the index of the chunk's first frame in the stream (lengths must not change)."""
        def staged() -> Iterator[MotionSequence]:
            start = 0
            for chunk in self.chunks:
                out = stage(chunk, start)
                if len(out) != len(chunk):
                    raise ValueError(f"a motion stage changed a chunk of {len(chunk)} frames "
                                     f"into {len(out)}")
                start += len(chunk)
                yield out
        return replace(self, chunks=staged())

    def collect(self) -> MotionSequence:
        """All chunks joined into one sequence."""
        return MotionSequence.cat(self)


class Motion(Protocol):
    """Anything a renderer reads motion from: a whole :class:`MotionSequence`, a
    :class:`MotionStream`, or a node's deferred motion. One read = one stream."""

    def stream(self) -> MotionStream:
        ...
