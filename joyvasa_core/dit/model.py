"""The motion generator: audio encoder + audio projection + denoiser + schedule.

Its ``state_dict()`` reproduces the official ``DitTalkingHead`` checkpoint keys,
in the file's order: ``start_audio_feat``, ``start_motion_feat``,
``null_audio_feat``, ``audio_encoder.*``, ``audio_feature_map.*``,
``denoising_net.*``, ``diffusion_sched.*``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .args import MotionGeneratorArgs
from .denoiser import DenoisingNetwork
from .schedule import DiffusionSchedule, ScheduleBuffers


#: Width of hubert/wav2vec2-base hidden states (official ``nn.Linear(768, feature_dim)``).
AUDIO_HIDDEN_SIZE = 768


def encoder_hidden_size(audio_encoder: nn.Module | None) -> int:
    """Width of the encoder's ``last_hidden_state`` (768 for hubert/wav2vec2-base)."""
    if audio_encoder is None:
        return AUDIO_HIDDEN_SIZE
    config = getattr(audio_encoder, "config", None)
    if config is None or not hasattr(config, "hidden_size"):
        raise TypeError("audio_encoder must be a transformers HubertModel/Wav2Vec2Model "
                        "(build it with joyvasa_core.dit.audio_encoder.build_audio_encoder)")
    return int(config.hidden_size)


class MotionGenerator(nn.Module):
    """JoyVASA's audio-to-motion diffusion model (official ``DitTalkingHead``), inference only.

    Parameters (shapes for the released config, p = n_prev_motions, D = motion_feat_dim,
    F = feature_dim): ``start_audio_feat`` ``[1, p, F]`` and ``start_motion_feat``
    ``[1, p, D]`` (context of the first window), ``null_audio_feat`` ``[1, 1, F]``
    (the unconditional audio of classifier-free guidance). Audio features come from
    ``audio_feature_map(audio_encoder(...))`` (see ``joyvasa_core.dit.audio_encoder``);
    sampling is in :mod:`joyvasa_core.dit.samplers`.

    ``audio_encoder=None`` builds a features-only generator (no ``audio_encoder.*``
    keys): it samples from precomputed audio features but cannot encode audio.
    """

    def __init__(self, args: MotionGeneratorArgs, audio_encoder: nn.Module | None):
        super().__init__()
        self.args = args
        p, d, f = args.n_prev_motions, args.motion_feat_dim, args.feature_dim
        self.start_audio_feat = nn.Parameter(torch.zeros(1, p, f))
        self.start_motion_feat = nn.Parameter(torch.zeros(1, p, d))
        self.null_audio_feat = nn.Parameter(torch.zeros(1, 1, f))
        self.audio_encoder = audio_encoder
        self.audio_feature_map = nn.Linear(encoder_hidden_size(audio_encoder), f)
        self.denoising_net = DenoisingNetwork(
            motion_feat_dim=d, feature_dim=f, n_heads=args.n_heads, n_layers=args.n_layers,
            mlp_ratio=args.mlp_ratio, n_prev_motions=p, n_motions=args.n_motions,
            n_diff_steps=args.n_diff_steps, align_mask_width=args.align_mask_width)
        self.diffusion_sched = ScheduleBuffers(DiffusionSchedule.build(args.n_diff_steps, args.diff_schedule))

    @property
    def n_motions(self) -> int:
        return self.args.n_motions

    @property
    def n_prev_motions(self) -> int:
        return self.args.n_prev_motions

    @property
    def motion_feat_dim(self) -> int:
        return self.args.motion_feat_dim

    def start_context(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Context for a first window: (``[B, p, D]`` motion, ``[B, p, F]`` audio)."""
        return (self.start_motion_feat.expand(batch_size, -1, -1),
                self.start_audio_feat.expand(batch_size, -1, -1))


def build_motion_generator(args: MotionGeneratorArgs, audio_encoder: nn.Module | None) -> MotionGenerator:
    """A :class:`MotionGenerator` in eval mode (weights as constructed: load or fill them next)."""
    return MotionGenerator(args, audio_encoder).eval()
