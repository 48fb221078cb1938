"""How motion is sampled from speech: :class:`MotionSettings`, one value for every entry point.

The headless and batch commands, the nodes, the live session and the live
server each build one at their edge; it is passed unchanged down to the
window sampler (:class:`joyvasa_core.generate.WindowSampler`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import DEFAULT_CFG_SCALE
from .dit.denoiser import PE_VARIANTS
from .dit.samplers import SAMPLERS


@dataclass(frozen=True)
class MotionSettings:
    """The motion-sampling settings of one stream of speech. Defaults are the official ones.

    seed: seeds the starting noise (on the motion generator's device).
    cfg_scale: classifier-free guidance scale (>= 0; None = no guidance, as some
        official fixtures run it).
    sampler: ``"ddpm"`` (official, every step of the checkpoint's schedule) or
        ``"ddim"`` with ``steps`` jumps (None: its own default).
    smoothing: head-pose EMA strength: 1 = the official EMA, 0 = none.
    pose_scale, expression_scale: each channel's change from frame 0 of the
        stream (1 = as generated, 0 = frozen; :meth:`MotionSequence.rescaled`).
    pe_variant: ``"head"`` (the official fix of 2025-12-09) or ``"legacy"``
        positional encoding (what the released weights were trained with).
    cuda_graphs: replay each denoising step from a CUDA graph (CUDA only; same numbers).
    """

    seed: int = 0
    cfg_scale: float | None = DEFAULT_CFG_SCALE
    sampler: str = "ddpm"
    steps: int | None = None
    smoothing: float = 1.0
    pose_scale: float = 1.0
    expression_scale: float = 1.0
    pe_variant: str = "head"
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be a whole number, got {self.seed!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.pe_variant not in PE_VARIANTS:
            raise ValueError(f"pe_variant must be one of {PE_VARIANTS}, got {self.pe_variant!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or self.steps < 1):
            raise ValueError(f"steps must be a whole number >= 1, got {self.steps!r}")
        for name, low in (("cfg_scale", 0.0), ("smoothing", 0.0), ("pose_scale", None),
                          ("expression_scale", None)):
            value = getattr(self, name)
            if value is None and name == "cfg_scale":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if low is not None and value < low:
                raise ValueError(f"{name} must be >= {low:g}, got {value:g}")
