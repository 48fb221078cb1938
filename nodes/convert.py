"""Conversions between ComfyUI's socket values and the core's tensors.

ComfyUI conventions: IMAGE is ``[B, H, W, C]`` float32 in 0..1 on the CPU;
AUDIO is ``{"waveform": [B, C, T] float, "sample_rate": int}``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from joyvasa_core.audio import to_mono
from joyvasa_core.face.image_io import composite, to_float01
from joyvasa_core.video import even_size


def first_image(image: torch.Tensor, *, what: str = "image") -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` -> the first picture as RGB ``[H, W, 3]`` float 0..1 on the CPU.

    C may be 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); alpha is composited over
    white, as the headless command does (``image_io.composite``)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] < 1:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{what} must be an IMAGE batch [B, H, W, C]; got {shape}. "
                         "Connect a LoadImage output.")
    picture = image[0].detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    channels = picture.shape[-1]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{what} has {channels} channels; expected grey (1), grey + alpha (2), "
                         "RGB (3) or RGBA (4)")
    color = picture[..., :3] if channels >= 3 else picture[..., :1].expand(-1, -1, 3)
    if channels in (2, 4):
        color = composite(color, picture[..., -1:])
    return color


def audio_clip(audio: dict) -> tuple[torch.Tensor, int]:
    """AUDIO -> (waveform ``[C, T]`` float32 on the CPU, sample rate in Hz) of its single clip."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("audio must be ComfyUI AUDIO ({'waveform': [B, C, T], 'sample_rate': int}); "
                         "connect a LoadAudio output")
    waveform = audio["waveform"]
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise ValueError(f"audio waveform must be [B, C, T]; got {shape}")
    if waveform.shape[0] != 1:
        raise ValueError(f"audio holds a batch of {waveform.shape[0]} clips; "
                         "JoyVASA speaks one clip at a time: pass a single recording")
    if waveform.shape[-1] == 0:
        raise ValueError("audio is empty (0 samples); load a recording with speech")
    return waveform[0].detach().to("cpu", torch.float32), int(audio["sample_rate"])


def audio_for_frames(waveform: torch.Tensor, sample_rate: int, n_frames: int,
                     fps: float) -> dict:
    """AUDIO of ``waveform [C, T]`` cut (or zero-padded) to exactly ``n_frames`` at ``fps``.

    The result is float32 ``[1, C, T']`` with ``T' = floor(n_frames * sr / fps)``, so
    ComfyUI's CreateVideo (which keeps ``ceil(sr / fps * frames)`` samples) never
    finds audio longer than the frames. More than two channels are mixed to mono
    (video containers carry mono or stereo).
    """
    if waveform.shape[0] > 2:
        waveform = to_mono(waveform).unsqueeze(0)
    n_samples = int(math.floor(n_frames * sample_rate / fps))
    if waveform.shape[-1] >= n_samples:
        waveform = waveform[:, :n_samples]
    else:
        waveform = torch.nn.functional.pad(waveform, (0, n_samples - waveform.shape[-1]))
    return {"waveform": waveform.to(torch.float32).unsqueeze(0).contiguous(),
            "sample_rate": int(sample_rate)}


def collect_frames(chunks: Iterable[torch.Tensor], n_frames: int) -> torch.Tensor:
    """Frame chunks ``[b, H, W, 3]`` (any device) -> one IMAGE ``[n_frames, H', W', 3]``
    float32 on the CPU, cropped to even H', W'. Filled in place: no second copy."""
    out = None
    done = 0
    for chunk in chunks:
        if out is None:
            h, w = even_size(chunk.shape[1], chunk.shape[2])
            out = torch.empty((n_frames, h, w, 3), dtype=torch.float32)
        b = chunk.shape[0]
        out[done:done + b] = chunk[:, :out.shape[1], :out.shape[2], :3].to("cpu", torch.float32)
        done += b
    if out is None or done != n_frames:
        raise RuntimeError(f"the renderer produced {done} frames, expected {n_frames}")
    return out.clamp_(0.0, 1.0)


def uint8_to_image(picture) -> torch.Tensor:
    """``[H, W, 3]`` uint8 (numpy or torch) -> IMAGE ``[1, H, W, 3]`` float32 0..1."""
    return to_float01(torch.as_tensor(picture)).unsqueeze(0).contiguous()
