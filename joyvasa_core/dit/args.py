"""Motion-generator hyper-parameters, read the way the official loader reads them.

A JoyVASA motion-generator checkpoint carries ``args`` (the ``argparse.Namespace``
of the official ``train.py``; a parity fixture's sidecar carries the same as a
``config`` dict). The official ``load_model`` wraps it in ``NullableArgs`` and
passes only six of its fields to ``DitTalkingHead``; every other architectural
choice is a constructor default, whatever the args say (for example the file
holds ``n_layers=6`` but the network has 8 layers). :class:`MotionGeneratorArgs`
reproduces exactly that: :meth:`MotionGeneratorArgs.from_checkpoint_args` reads
the six sizes plus the three options the official wrapper reads (fps, pad_mode,
use_indicator) and leaves the rest at the official constructor defaults.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import config

#: Fields the official ``load_model`` passes to ``DitTalkingHead``; they fix the layout.
ARCHITECTURE_KEYS = ("motion_feat_dim", "n_motions", "n_prev_motions", "feature_dim",
                     "audio_model", "n_diff_steps")


def nullable_arg(args: Mapping[str, Any], key: str) -> Any:
    """``getattr(NullableArgs(args), key)``: the stored value, else the official fallback.

    A missing key reads as ``None``, except ``align_mask_width`` (1/0 from a stored
    ``use_alignment_mask``, else 0), ``no_head_pose`` (``not predict_head_pose``)
    and ``no_use_learnable_pe`` (``not use_learnable_pe``), whose fallbacks read
    another key the same nullable way.
    """
    if key in args:
        return args[key]
    if key == "align_mask_width":
        return (1 if args["use_alignment_mask"] else 0) if "use_alignment_mask" in args else 0
    if key == "no_head_pose":
        return not nullable_arg(args, "predict_head_pose")
    if key == "no_use_learnable_pe":
        return not nullable_arg(args, "use_learnable_pe")
    return None


def args_to_dict(args: Mapping[str, Any] | argparse.Namespace | Any) -> dict[str, Any]:
    """A checkpoint's ``args`` (Namespace, NullableArgs-like object or mapping) as a plain dict."""
    if isinstance(args, Mapping):
        return dict(args)
    if hasattr(args, "__dict__"):
        return dict(vars(args))
    raise TypeError(f"motion-generator args must be a mapping or a Namespace, got {type(args).__name__}")


@dataclass(frozen=True)
class MotionGeneratorArgs:
    """Everything that shapes a :class:`~joyvasa_core.dit.model.MotionGenerator`.

    Sizes: motion coefficients per frame (``motion_feat_dim``, 70 = exp 63 | scale 1
    | t 3 | pitch, yaw, roll 3), frames per window (``n_motions``), context frames
    carried from the previous window (``n_prev_motions``), transformer width
    (``feature_dim``), diffusion steps T (``n_diff_steps``). The fields after
    ``use_indicator`` are official constructor defaults that a checkpoint's args
    never override; tests may set them to build tiny networks.
    """

    motion_feat_dim: int = 70
    n_motions: int = 100
    n_prev_motions: int = 10
    feature_dim: int = 512
    audio_model: str = "hubert_zh"
    n_diff_steps: int = 500
    fps: int | None = config.DEFAULT_FPS  # video frames per second of the motion
    pad_mode: str | None = "zero"        # how the last audio window is padded
    use_indicator: bool | None = True    # passed by the official wrapper, ignored by the network
    # Official constructor defaults (never read from args):
    target: str = "sample"               # the network predicts x0 ('sample') or the noise ('noise')
    diff_schedule: str = "cosine"
    cfg_mode: str = "incremental"
    guiding_conditions: tuple[str, ...] = ("audio",)
    n_heads: int = 8
    n_layers: int = 8
    mlp_ratio: int = 4
    align_mask_width: int = 1

    def __post_init__(self) -> None:
        for key in ARCHITECTURE_KEYS:
            if getattr(self, key) is None:
                raise ValueError(
                    f"motion-generator args lack {key!r}; the checkpoint's 'args' (or the fixture "
                    f"sidecar 'config') must name {', '.join(ARCHITECTURE_KEYS)}")
        if self.target not in ("sample", "noise"):
            raise ValueError(f"target must be 'sample' or 'noise', got {self.target!r}")

    @property
    def seq_len(self) -> int:
        """Tokens per denoiser call: ``n_prev_motions + n_motions``."""
        return self.n_prev_motions + self.n_motions

    @property
    def audio_samples(self) -> int:
        """Audio samples per window: ``AUDIO_SAMPLE_RATE * n_motions / fps`` (64000 for 100
        frames at 25 fps and 16 kHz)."""
        if not self.fps:
            raise ValueError("motion-generator args lack 'fps' (the official wrapper divides by it)")
        return round(config.AUDIO_SAMPLE_RATE * self.n_motions / self.fps)

    @classmethod
    def from_checkpoint_args(cls, args: Mapping[str, Any] | argparse.Namespace | Any,
                             **overrides: Any) -> "MotionGeneratorArgs":
        """Build from a checkpoint's ``args`` as the official ``load_model`` does.

        Only :data:`ARCHITECTURE_KEYS` plus ``fps``, ``pad_mode`` and ``use_indicator``
        are read (missing ones read as ``None``, as with ``NullableArgs``); a missing
        architecture key raises. ``overrides`` replace fields afterwards.
        """
        raw = args_to_dict(args)
        values = {k: nullable_arg(raw, k) for k in ARCHITECTURE_KEYS + ("fps", "pad_mode", "use_indicator")}
        values.update(overrides)
        return cls(**values)
