"""Small, fast pipeline models for tests and benchmarks (real architectures, tiny sizes).

:data:`FAST_LIVEPORTRAIT` is ``helpers_checkpoints.TINY_LIVEPORTRAIT`` with F
downsampling 16x instead of 4x: the feature grid is 16x16 instead of 64x64, so W
and G run at 1/16 of the area and G renders 128x128 crops of the official 512
crop. Everything else (keypoints, driving, paste-back, encoding) is the code
path of the full-size models.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import helpers_checkpoints as hcp
import helpers_tiny_models as htm
from joyvasa_core.dit.args import MotionGeneratorArgs
from joyvasa_core.dit.model import build_motion_generator
from joyvasa_core.fill import fill_module_
from joyvasa_core.motion import MotionSequence, MotionTemplate
from joyvasa_core.pipeline import JoyVASAModels

FAST_LIVEPORTRAIT = {**hcp.TINY_LIVEPORTRAIT,
                     "appearance_feature_extractor": {
                         **hcp.TINY_LIVEPORTRAIT["appearance_feature_extractor"],
                         "num_down_blocks": 4}}
FAST_RENDER_SIZE = 128   # G output of FAST_LIVEPORTRAIT (pixels)


def fast_liveportrait_build():
    """Make ``load_liveportrait`` build :data:`FAST_LIVEPORTRAIT` (for files written with it)."""
    return hcp.liveportrait_build(FAST_LIVEPORTRAIT)


def write_fast_pretrained_weights(root: Path) -> Path:
    """A complete official-format ``pretrained_weights`` tree with the fast tiny networks."""
    htm.write_tiny_pretrained_weights(root)
    with hcp.tiny_backbone():
        hcp.write_official_tree(root, hcp.filled_liveportrait(FAST_LIVEPORTRAIT))
    return root


def write_full_size_renderer_weights(root: Path) -> Path:
    """An official-format tree that an unpatched loader (a real ComfyUI server) loads:
    full-size LivePortrait (about 130 M parameters, filled) with the tiny motion
    generator and HuBERT (the loader reads their sizes from the files)."""
    htm.write_tiny_pretrained_weights(root)
    hcp.write_official_tree(root, hcp.filled_liveportrait())
    return root


def fast_models(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                models_dir: Path | None = None,
                liveportrait_config: dict | None = None,
                generator_args: dict | None = None) -> JoyVASAModels:
    """:class:`JoyVASAModels` built directly from filled tiny modules (no files).

    ``liveportrait_config``: ``build_liveportrait`` overrides (default :data:`FAST_LIVEPORTRAIT`);
    ``generator_args``: :class:`MotionGeneratorArgs` fields replacing the tiny ones.
    """
    from transformers import HubertConfig, HubertModel

    with hcp.tiny_backbone():
        liveportrait = hcp.filled_liveportrait(liveportrait_config or FAST_LIVEPORTRAIT)
    encoder = HubertModel(HubertConfig(**htm.TINY_HUBERT)).eval()
    generator = fill_module_(build_motion_generator(MotionGeneratorArgs(**{**htm.TINY_GENERATOR_ARGS, **(generator_args or {})}),
                                                    encoder))
    template = MotionTemplate.from_dict(hcp.make_motion_template())
    return JoyVASAModels(liveportrait.to(device, dtype).requires_grad_(False),
                         generator.to(device).requires_grad_(False), template,
                         torch.device(device), dtype, "human", models_dir)


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic voiced-speech-like float32 waveform [N] (harmonics, syllable envelope).

    Built one second at a time, so a long clip costs only its own float32 array.
    """
    out = np.empty(int(seconds * rate), np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, out.size, rate):
        t = np.arange(start, min(start + rate, out.size)) / rate
        envelope = 0.5 - 0.5 * np.cos(2 * np.pi * 3 * t)
        voice = sum((0.3 / k) * np.sin(2 * np.pi * k * 140 * t + k) for k in range(1, 6))
        out[start:start + t.size] = envelope * voice + 0.01 * rng.standard_normal(t.size)
    return out


def random_motion(frames: int, seed: int, fps: float = 25.0) -> MotionSequence:
    """A seeded MotionSequence of ``frames`` frames with plausible spreads (not generated)."""
    g = torch.Generator().manual_seed(seed)
    return MotionSequence(exp=0.02 * torch.randn(frames, 21, 3, generator=g),
                          scale=1 + 0.01 * torch.randn(frames, 1, generator=g),
                          t=0.01 * torch.randn(frames, 3, generator=g),
                          pitch=5 * torch.randn(frames, generator=g),
                          yaw=5 * torch.randn(frames, generator=g),
                          roll=torch.randn(frames, generator=g), fps=fps)


def two_faces() -> np.ndarray:
    """[241, 451, 3] uint8: skimage's astronaut (left) and cameraman (right), 200 px each,
    on a grey canvas of odd size."""
    import cv2
    import skimage.data

    astronaut = cv2.resize(skimage.data.astronaut()[:300, 80:380], (200, 200),
                           interpolation=cv2.INTER_AREA)
    camera = np.stack([skimage.data.camera()[60:300, 100:340]] * 3, -1)
    camera = cv2.resize(camera, (200, 200), interpolation=cv2.INTER_AREA)
    canvas = np.full((241, 451, 3), 90, np.uint8)
    canvas[20:220, 10:210] = astronaut
    canvas[20:220, 240:440] = camera
    return canvas
