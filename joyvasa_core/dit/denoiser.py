"""JoyVASA's denoiser: a post-norm transformer decoder over motion tokens.

Token layout per window: ``[prev (p) | current (n)]`` motion frames are the
decoder targets; the matching ``[prev | current]`` audio features are the
memory; the cross-attention is diagonal (motion token i sees audio token i
only). The diffusion step enters as ``diff_step_map(TE.pe[0, t])`` added to
every token. Attribute names reproduce the official ``denoising_net.*`` keys.
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor, nn

PeVariant = Literal["head", "legacy"]
PE_VARIANTS: tuple[str, ...] = get_args(PeVariant)
PE_MAX_LEN = 600  # rows of the official token positional table


def sinusoid_table(length: int, dim: int) -> Tensor:
    """Vanilla sinusoidal table ``[1, length, dim]`` float32: sin on even, cos on odd channels."""
    position = torch.arange(0, length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table.unsqueeze(0)


class PositionalEncoding(nn.Module):
    """Holds the sinusoidal table as buffer ``pe`` ``[1, max_len, dim]``.

    ``forward(x, variant)``: ``"head"`` adds ``pe[:, :L]`` (position i to token i,
    official code since the Dec 2025 fix); ``"legacy"`` adds the single row
    ``pe[:, L]`` to every token (the behaviour the released weights were trained
    with). Dropout of the official module is inference-inert and omitted.
    """

    def __init__(self, dim: int, max_len: int = PE_MAX_LEN):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, dim))

    def forward(self, x: Tensor, variant: PeVariant = "head") -> Tensor:
        """x: ``[B, L, dim]`` -> ``[B, L, dim]``."""
        length = x.shape[1]
        if variant == "head":
            return x + self.pe[:, :length].to(x.dtype)
        if variant == "legacy":
            return x + self.pe[:, length].to(x.dtype).unsqueeze(1)
        raise ValueError(f"pe_variant must be one of {PE_VARIANTS}, got {variant!r}")


def alignment_mask(length: int, width: int = 1) -> Tensor:
    """Cross-attention mask ``[length, length]`` bool, True = blocked.

    Token i may attend to memory tokens ``[i - (width-1), i + width)`` (clipped at 0);
    width 1 is the diagonal.
    """
    i = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    expansion = width - 1
    allowed = (j >= (i - expansion).clamp(min=0)) & (j < i + expansion + 1)
    return ~allowed


class DenoisingNetwork(nn.Module):
    """Predicts the clean motion (or the noise) of ``[prev | current]`` frames.

    Args:
        motion_feat_dim: coefficients per frame (70).
        feature_dim: transformer width (512).
        n_heads, n_layers, mlp_ratio: transformer shape (8, 8, 4).
        n_prev_motions, n_motions: tokens of context and of the window (10, 100).
        n_diff_steps: T; the step table ``TE.pe`` has T + 1 rows.
        align_mask_width: half-width of the cross-attention band (1 = diagonal; 0 = none).
    """

    def __init__(self, motion_feat_dim: int = 70, feature_dim: int = 512, n_heads: int = 8,
                 n_layers: int = 8, mlp_ratio: int = 4, n_prev_motions: int = 10,
                 n_motions: int = 100, n_diff_steps: int = 500, align_mask_width: int = 1):
        super().__init__()
        self.n_prev_motions = n_prev_motions
        self.n_motions = n_motions
        seq_len = n_prev_motions + n_motions
        self.TE = PositionalEncoding(feature_dim, max_len=n_diff_steps + 1)
        self.diff_step_map = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.GELU(), nn.Linear(feature_dim, feature_dim))
        # The legacy variant reads row L, so the table needs at least L + 1 rows.
        self.PE = PositionalEncoding(feature_dim, max_len=max(PE_MAX_LEN, seq_len + 1))
        self.feature_proj = nn.Linear(motion_feat_dim, feature_dim)
        layer = nn.TransformerDecoderLayer(
            d_model=feature_dim, nhead=n_heads, dim_feedforward=mlp_ratio * feature_dim,
            dropout=0.1, activation="gelu", batch_first=True)
        self.transformer = nn.TransformerDecoder(layer, num_layers=n_layers)
        if align_mask_width > 0:
            self.register_buffer("alignment_mask", alignment_mask(seq_len, align_mask_width))
        else:
            self.alignment_mask = None
        self.motion_dec = nn.Sequential(
            nn.Linear(feature_dim, feature_dim // 2), nn.GELU(), nn.Linear(feature_dim // 2, motion_feat_dim))

    def step_embedding(self, step: Tensor) -> Tensor:
        """step: ``[B]`` int64 in 0..T -> ``[B, 1, feature_dim]``."""
        return self.diff_step_map(self.TE.pe[0, step].to(self.feature_proj.weight.dtype)).unsqueeze(1)

    def forward(self, motion_feat: Tensor, audio_feat: Tensor, prev_motion_feat: Tensor,
                prev_audio_feat: Tensor, step: Tensor, pe_variant: PeVariant = "head") -> Tensor:
        """Denoise one batch of windows.

        Args:
            motion_feat: ``[B, n, motion_feat_dim]`` noisy motion x_t.
            audio_feat: ``[B, n, feature_dim]`` audio features (or the null feature for CFG).
            prev_motion_feat: ``[B, p, motion_feat_dim]`` context motion.
            prev_audio_feat: ``[B, p, feature_dim]`` context audio.
            step: ``[B]`` int64 diffusion steps t in 1..T.
            pe_variant: ``"head"`` (default) or ``"legacy"``, see :class:`PositionalEncoding`.

        Returns:
            ``[B, p + n, motion_feat_dim]`` prediction for every token (the caller keeps ``[:, -n:]``).
        """
        tokens = self.feature_proj(torch.cat([prev_motion_feat, motion_feat], dim=1))
        tokens = self.PE(tokens, pe_variant) + self.step_embedding(step)
        memory = torch.cat([prev_audio_feat, audio_feat], dim=1)
        return self.motion_dec(self.transformer(tokens, memory, memory_mask=self.alignment_mask))
