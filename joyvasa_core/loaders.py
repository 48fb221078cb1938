"""Build and load the LivePortrait networks (F, M, W, G and the stitching/retargeting MLPs).

:func:`load_liveportrait` finds the five files (:mod:`joyvasa_core.model_files`),
reads them safely (:mod:`joyvasa_core.checkpoints`), checks each against the
layout of the module it is loaded into (so a wrong, truncated or misplaced file
is named with its fix) and loads strictly.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import config
from .checkpoints import layout_of, read_state_dict, read_stitching_file, validate_state_dict
from .keypoints import KeypointInfo
from .model_files import download_hint, resolve_liveportrait
from .models.appearance import AppearanceFeatureExtractor
from .models.motion_extractor import MotionExtractor
from .models.spade import SPADEDecoder
from .models.stitching import StitchingRetargetingNetwork
from .models.warping import WarpingNetwork

#: The four base networks: attribute (= model-file slot) -> (class, default config).
BASE_NETWORKS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "appearance_feature_extractor": (AppearanceFeatureExtractor, config.APPEARANCE_FEATURE_EXTRACTOR),
    "motion_extractor": (MotionExtractor, config.MOTION_EXTRACTOR),
    "warping_module": (WarpingNetwork, config.WARPING_MODULE),
    "spade_generator": (SPADEDecoder, config.SPADE_GENERATOR),
}
#: The three MLPs (attribute = ``config.STITCHING_RETARGETING`` key).
MLP_NETWORKS = tuple(config.STITCHING_RETARGETING)  # ("stitching", "lip", "eye")


class LivePortraitModels(nn.Module):
    """LivePortrait's networks in one module (one ``state_dict``, one ``.to()``).

    Attributes: ``appearance_feature_extractor`` (F), ``motion_extractor`` (M),
    ``warping_module`` (W), ``spade_generator`` (G), and the MLPs ``stitching``,
    ``lip``, ``eye``. ``files`` records which file each slot was loaded from
    (empty for built, untrained models); ``variant`` is ``"human"`` or ``"animal"``.
    """

    def __init__(self, appearance_feature_extractor: nn.Module, motion_extractor: nn.Module,
                 warping_module: nn.Module, spade_generator: nn.Module, stitching: nn.Module,
                 lip: nn.Module, eye: nn.Module) -> None:
        super().__init__()
        self.appearance_feature_extractor = appearance_feature_extractor
        self.motion_extractor = motion_extractor
        self.warping_module = warping_module
        self.spade_generator = spade_generator
        self.stitching = stitching
        self.lip = lip
        self.eye = eye
        self.variant = "human"
        self.files: dict[str, Path] = {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @torch.inference_mode()
    def keypoints(self, crops_256: torch.Tensor) -> KeypointInfo:
        """M on face crops ``[b, 3, 256, 256]`` float 0..1 (any device): float32 keypoint info
        (angles in degrees) on the models' device."""
        raw = self.motion_extractor(crops_256.to(self.device, self.dtype))
        return KeypointInfo.from_raw({k: v.float() for k, v in raw.items()})

    @torch.inference_mode()
    def encode(self, crops_256: torch.Tensor) -> tuple[torch.Tensor, KeypointInfo]:
        """F and M on face crops ``[b, 3, 256, 256]`` float 0..1: (feature_3d ``[b, 32, 16, 64,
        64]`` in the models' dtype, float32 :class:`KeypointInfo`), on the models' device."""
        crops = crops_256.to(self.device, self.dtype)
        return self.appearance_feature_extractor(crops), self.keypoints(crops)


def _merged(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``override`` applied; nested dicts are merged key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_liveportrait(config_overrides: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> LivePortraitModels:
    """Untrained networks in eval mode, built from ``joyvasa_core.config``.

    ``config_overrides`` maps an attribute name (``"warping_module"``, ``"lip"``, ...)
    to constructor arguments replacing the defaults (nested dicts such as
    ``dense_motion_params`` are merged), e.g. for tiny test models. Built on the
    current default device (``with torch.device("meta"):`` gives a shape-only model).
    """
    overrides = dict(config_overrides or {})
    unknown = set(overrides) - set(BASE_NETWORKS) - set(MLP_NETWORKS)
    if unknown:
        raise ValueError(f"unknown network(s) in config_overrides: {sorted(unknown)}; known: "
                         f"{[*BASE_NETWORKS, *MLP_NETWORKS]}")
    nets = {name: cls(**_merged(cfg, overrides.get(name)))
            for name, (cls, cfg) in BASE_NETWORKS.items()}
    for name in MLP_NETWORKS:
        nets[name] = StitchingRetargetingNetwork(
            **_merged(config.STITCHING_RETARGETING[name], overrides.get(name)))
    return LivePortraitModels(**nets).eval()


def load_liveportrait(models_dir: str | Path, variant: str = "human",
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                      extra_dirs: Iterable[str | Path] = (),
                      config_overrides: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> LivePortraitModels:
    """Load the official (or Kijai safetensors) LivePortrait weights, validated and strict.

    ``models_dir``: the ``pretrained_weights`` folder; ``extra_dirs``: other folders
    searched too (e.g. ComfyUI ``models/liveportrait`` with Kijai's files).
    ``variant``: ``"human"`` or ``"animal"`` (animal F/M/W/G, human stitching, as
    the official JoyVASA). Returns the models on ``device`` in ``dtype``, eval
    mode, without gradients. Raises :class:`~joyvasa_core.model_files.ModelFilesError`
    (every missing file) or :class:`~joyvasa_core.checkpoints.CheckpointError`
    (bad file: which one, what is wrong, how to fix it).
    """
    paths = resolve_liveportrait(models_dir, variant, extra_dirs)
    models = build_liveportrait(config_overrides)
    for slot in BASE_NETWORKS:
        module = getattr(models, slot)
        fix = download_hint(slot, variant)
        state_dict = read_state_dict(paths[slot], slot, fix)
        validate_state_dict(state_dict, layout_of(module), paths[slot], slot, fix)
        module.load_state_dict(state_dict, strict=True)
        del state_dict

    slot = "stitching_retargeting_module"
    fix = download_hint(slot, variant)
    parts = read_stitching_file(paths[slot], fix)
    for part, name in config.STITCHING_FILE_PARTS.items():
        module = getattr(models, name)
        validate_state_dict(parts[part], layout_of(module), paths[slot], f"{slot}[{part}]", fix)
        module.load_state_dict(parts[part], strict=True)

    models.variant = variant
    models.files = dict(paths)
    return place(models, device, dtype)


def place(models: LivePortraitModels, device: str | torch.device,
          dtype: torch.dtype) -> LivePortraitModels:
    """``models`` on ``device`` in ``dtype``, eval, frozen: in place.

    bfloat16 on the CPU is the CPU fast path: only W and G (the per-frame work,
    compute-bound convolutions) take bfloat16; F, M and the MLPs stay float32,
    so the face's appearance, its keypoints and every keypoint sum keep full
    precision (measured by ``benchmarks/render.py --fast-path``: whole frames
    46.5 dB PSNR against float32 that way, against 33.4 dB with F and M in
    bfloat16 too, whose keypoint errors move the face).
    """
    models.eval().requires_grad_(False)
    if torch.device(device).type == "cpu" and dtype == torch.bfloat16:
        # only W and G are converted: a round trip through bf16 would round F's and M's weights
        models.to(device=device)
        for name in ("warping_module", "spade_generator"):
            getattr(models, name).to(dtype=dtype)
        return models
    return models.to(device=device, dtype=dtype)
