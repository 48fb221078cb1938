"""Load an official JoyVASA motion-generator checkpoint into a :class:`MotionGenerator`.

Like the official ``load_model``: build from the checkpoint's ``args``, drop
``denoising_net.TE.pe`` (rebuilt from the config), load non-strictly, so the
file's ``PE.pe``, ``alignment_mask`` and ``diffusion_sched.*`` buffers are used.
Unlike it, missing keys are not silently ignored: a missing network weight
raises, and what was missing or unexpected is logged and kept on the model
(``model.load_report``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from .args import MotionGeneratorArgs
from .model import MotionGenerator, build_motion_generator

log = logging.getLogger(__name__)

#: Entries the official loader pops before loading (rebuilt by the constructor).
POPPED_KEYS = ("denoising_net.TE.pe",)
#: Buffers the constructor builds deterministically; a file without them is fine.
CONSTRUCTED_BUFFERS = ("denoising_net.alignment_mask", "denoising_net.PE.pe", "diffusion_sched.betas",
                       "diffusion_sched.alphas", "diffusion_sched.alpha_bars",
                       "diffusion_sched.sigmas_flex", "diffusion_sched.sigmas_inflex")
ENCODER_PREFIX = "audio_encoder."


@dataclass
class LoadReport:
    """What a load did: keys the model kept from construction, keys the file had extra."""

    path: Path
    iteration: int | None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _check_missing(missing: list[str], path: Path, encoder_from_folder: bool) -> None:
    encoder = [k for k in missing if k.startswith(ENCODER_PREFIX)]
    network = [k for k in missing if not k.startswith(ENCODER_PREFIX)
               and k not in CONSTRUCTED_BUFFERS + POPPED_KEYS]
    if network:
        raise CheckpointError(
            f"{path} lacks {len(network)} motion-generator weights (e.g. {network[:3]}); it is not a "
            f"complete JoyVASA motion_generator checkpoint. Download motion_generator/"
            f"motion_generator_hubert_chinese.pt from jdh-algo/JoyVASA again.")
    if encoder and not encoder_from_folder:
        raise CheckpointError(
            f"{path} lacks {len(encoder)} audio-encoder weights (e.g. {encoder[:3]}) and no encoder "
            f"folder was given: pass audio_encoder_dir= (e.g. models/audio_encoders/chinese-hubert-base, "
            f"a transformers export of TencentGameMate/chinese-hubert-base).")


def load_motion_generator(pt_path: str | Path, audio_encoder_dir: str | Path | None = None,
                          device: torch.device | str = "cpu",
                          dtype: torch.dtype = torch.float32) -> MotionGenerator:
    """Read ``pt_path`` (``{'args', 'model', 'iter'}``) and return the model in eval mode.

    ``audio_encoder_dir``: a transformers folder to build the audio encoder from
    (its weights are then overridden by the checkpoint's ``audio_encoder.*``
    entries, as in the official code); without it the encoder is built from the
    default config and every ``audio_encoder.*`` weight must be in the file.
    The schedule buffers stay float32 whatever ``dtype`` is.
    """
    from ..checkpoints import check_finite, read_motion_generator_file
    from .audio_encoder import build_audio_encoder

    path = Path(pt_path)
    raw_args, state_dict, iteration = read_motion_generator_file(path)
    args = MotionGeneratorArgs.from_checkpoint_args(raw_args)
    model = build_motion_generator(args, build_audio_encoder(args.audio_model, audio_encoder_dir))
    state_dict = {k: v for k, v in state_dict.items() if k not in POPPED_KEYS}
    check_finite(state_dict, path, "motion_generator")
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches are raised even when non-strict
        raise CheckpointError(
            f"{path} does not match the architecture its own args describe "
            f"({', '.join(f'{k}={getattr(args, k)}' for k in ('n_prev_motions', 'n_motions', 'feature_dim', 'n_diff_steps'))}): "
            f"{' '.join(str(exc).split())[:600]}. Download motion_generator/"
            f"motion_generator_hubert_chinese.pt from jdh-algo/JoyVASA again.") from exc
    missing = [k for k in result.missing_keys if k not in POPPED_KEYS]
    report = LoadReport(path, iteration, missing, list(result.unexpected_keys))
    _check_missing(report.missing, path, audio_encoder_dir is not None)
    rebuilt = [k for k in report.missing if k not in POPPED_KEYS]   # TE.pe: popped as officially
    if rebuilt:
        log.warning("%s: %d entries kept from construction: %s", path, len(rebuilt), rebuilt[:5])
    if report.unexpected:
        log.warning("%s: %d unexpected entries ignored: %s", path, len(report.unexpected), report.unexpected[:5])
    model.load_report = report
    return model.to(device=device, dtype=dtype).eval()
