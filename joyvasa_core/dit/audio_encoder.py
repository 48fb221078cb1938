"""The motion generator's audio encoder (HuBERT / wav2vec 2.0) and its feature path.

JoyVASA stores the encoder's weights inside the motion-generator checkpoint
under ``audio_encoder.*`` (a transformers ``HubertModel`` for 'hubert_zh', a
``Wav2Vec2Model`` for 'wav2vec2'), so the architecture alone is enough to
load it; a pretrained folder (``config.json`` + weights) is only needed to
start from the original encoder or to read a non-default config.

:func:`encode_audio` reproduces the official ``DitTalkingHead.extract_audio_feature``
for one or more windows of 16 kHz audio:

1. ``pad_audio``: reflect-pad the clip twice by ``side // 2`` samples (20 for a
   64000-sample window, giving 64080) so the conv stack yields exactly 2 frames
   per video frame; one replicate sample per side if ``side`` is odd;
2. the conv feature encoder (50 Hz, ``[B, 512, F]``), truncated to
   ``round(2L * 50 / fps)`` frames and linearly resampled to ``2L`` frames;
3. feature projection and the transformer encoder (``[B, 2L, 768]``);
4. linear interpolation ``2L -> L`` (``align_corners=False``: the mean of frame pairs);
5. the generator's ``audio_feature_map`` Linear ``768 -> feature_dim``.

Unlike the official subclasses we never force ``output_attentions=True`` (which
selects eager attention and keeps every attention map); the SDPA path gives the
same numbers to float rounding (about 1e-6).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AUDIO_SAMPLE_RATE

#: ``audio_model`` names the official DitTalkingHead accepts -> encoder family.
AUDIO_MODELS = {"hubert_zh": "hubert", "hubert_zh_ori": "hubert", "hubert": "hubert",
                "wav2vec2": "wav2vec2"}
#: Rate of the conv feature encoder's output frames (16 kHz / total stride 320).
CONV_FRAME_RATE = 50
#: ``pad_audio`` parameters: samples per conv frame and the receptive-field excess.
_AUDIO_UNIT = 320
_PAD_THRESHOLD = 80


def _classes(audio_model: str) -> tuple[type, type]:
    import transformers

    family = AUDIO_MODELS.get(audio_model)
    if family is None:
        raise ValueError(f"unknown audio_model {audio_model!r}; expected one of {sorted(AUDIO_MODELS)}")
    if family == "hubert":
        return transformers.HubertModel, transformers.HubertConfig
    return transformers.Wav2Vec2Model, transformers.Wav2Vec2Config


def build_audio_encoder(audio_model: str, pretrained_dir: str | Path | None = None) -> nn.Module:
    """A transformers ``HubertModel`` / ``Wav2Vec2Model`` in eval mode (SDPA attention).

    With ``pretrained_dir`` (e.g. ``models/audio_encoders/chinese-hubert-base``
    holding ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``) the
    config and weights are read from it, offline. Without it the architecture
    comes from the default config (``HubertConfig()`` = hubert-base, the layout
    of JoyVASA's checkpoints); its weights are random until the motion
    generator's ``audio_encoder.*`` entries are loaded into it.
    """
    model_cls, config_cls = _classes(audio_model)
    if pretrained_dir is None:
        model = model_cls(config_cls())
    else:
        folder = Path(pretrained_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder / 'config.json'} not found: the audio encoder folder must be a transformers "
                f"export (config.json plus model.safetensors or pytorch_model.bin), e.g. "
                f"TencentGameMate/chinese-hubert-base for {audio_model!r}")
        with _no_progress_bars():
            model = model_cls.from_pretrained(str(folder), local_files_only=True,
                                              attn_implementation="sdpa")
    return model.eval()


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers >= 5 draws a "Loading weights" bar on stderr; a local load needs none."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def pad_audio(audio: torch.Tensor) -> torch.Tensor:
    """Official ``pad_audio``: ``[B, N] -> [B, N + 2*side]`` so the conv stack yields ``N // 320`` frames.

    ``side = ceil((320 * (N // 320) + 80 - N) / 2)``; if ``side >= 0`` the clip is
    reflect-padded twice by ``side // 2`` per side, then replicate-padded by one
    per side when ``side`` is odd (64000 -> 64080).
    """
    n = audio.shape[-1]
    side = math.ceil((_AUDIO_UNIT * (n // _AUDIO_UNIT) + _PAD_THRESHOLD - n) / 2)
    if side < 0:
        return audio
    reflect, replicate = divmod(side, 2)
    x = audio.unsqueeze(1)  # [B, 1, N]: reflect / replicate padding needs a channel axis
    if reflect > 0:
        x = F.pad(F.pad(x, (reflect, reflect), mode="reflect"), (reflect, reflect), mode="reflect")
    if replicate > 0:
        x = F.pad(x, (1, 1), mode="replicate")
    return x.squeeze(1)


@dataclass
class AudioFeatures:
    """Intermediate and final tensors of :func:`encode_audio` (B clips, L video frames).

    ``padded`` [B, N'] audio after :func:`pad_audio`; ``conv_features`` [B, 512, F]
    raw 50 Hz conv features; ``last_hidden_state`` [B, 2L, 768] encoder output;
    ``audio_feat`` [B, L, feature_dim] the generator's audio tokens.
    """

    padded: torch.Tensor
    conv_features: torch.Tensor
    last_hidden_state: torch.Tensor
    audio_feat: torch.Tensor


def encoder_hidden_states(encoder: nn.Module, padded: torch.Tensor, fps: float,
                          frame_num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official encoder forward at ``frame_num`` output frames.

    ``padded`` [B, N'] -> (conv features [B, 512, F] at 50 Hz, last hidden state
    [B, frame_num, hidden]). Conv features are cut to ``round(frame_num*50/fps)``
    frames and linearly resampled to ``frame_num`` before the projection.
    """
    conv = encoder.feature_extractor(padded)
    keep = round(frame_num * CONV_FRAME_RATE / fps)
    feats = F.interpolate(conv[:, :, :keep], size=frame_num, mode="linear", align_corners=False)
    projected = encoder.feature_projection(feats.transpose(1, 2))
    if isinstance(projected, tuple):  # wav2vec2 returns (projected, normed input)
        projected = projected[0]
    hidden = encoder.encoder(projected, attention_mask=None, output_attentions=False,
                             output_hidden_states=False, return_dict=True).last_hidden_state
    return conv, hidden


def encode_audio(model: nn.Module, audio: torch.Tensor, *, frame_num: int | None = None,
                 fps: float | None = None) -> AudioFeatures:
    """16 kHz audio ``[B, N]`` -> :class:`AudioFeatures` with ``audio_feat`` [B, L, feature_dim].

    ``model`` is the motion generator (anything with ``audio_encoder`` and
    ``audio_feature_map``; ``fps`` from ``model.args.fps`` unless given). ``frame_num``
    (L, video frames) defaults to ``round(N * fps / 16000)`` — ``n_motions`` for
    one window.
    """
    if audio.ndim != 2:
        raise ValueError(f"encode_audio expects audio [B, N], got shape {tuple(audio.shape)}")
    fps = fps if fps is not None else model.args.fps
    frame_num = frame_num or round(audio.shape[-1] * fps / AUDIO_SAMPLE_RATE)
    encoder = model.audio_encoder
    padded = pad_audio(audio.to(next(encoder.parameters()).dtype))
    conv, hidden = encoder_hidden_states(encoder, padded, fps, 2 * frame_num)
    pooled = F.interpolate(hidden.transpose(1, 2), size=frame_num, mode="linear", align_corners=False)
    audio_feat = model.audio_feature_map(pooled.transpose(1, 2))
    return AudioFeatures(padded=padded, conv_features=conv, last_hidden_state=hidden,
                         audio_feat=audio_feat)
