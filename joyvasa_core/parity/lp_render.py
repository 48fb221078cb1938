"""Parity handlers for LivePortrait's renderer networks F, W and G.

Each model is built from the fixture sidecar's ``config``, filled with the
reference fill rule, and run in eval mode on the fixture's inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from ..fill import fill_module_
from ..models.appearance import AppearanceFeatureExtractor
from ..models.spade import SPADEDecoder
from ..models.warping import WarpingNetwork
from .fixture import Fixture
from .registry import handler


def _filled(module: nn.Module, device: torch.device) -> nn.Module:
    return fill_module_(module).to(device).eval()


@handler("appearance_feature_extractor")
def appearance_feature_extractor(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    model = _filled(AppearanceFeatureExtractor(**fx.config), device)
    return {"feature_3d": model(fx.tensor("image").to(device))}


@handler("warping_module")
def warping_module(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    model = _filled(WarpingNetwork(**fx.config), device)
    captured: dict[str, torch.Tensor] = {}
    hook = model.dense_motion_network.register_forward_hook(
        lambda _m, _i, out: captured.update({"dense_motion.mask": out["mask"]}))
    try:
        out = model(fx.tensor("feature_3d").to(device),
                    kp_driving=fx.tensor("kp_driving").to(device),
                    kp_source=fx.tensor("kp_source").to(device))
    finally:
        hook.remove()
    return {**out, **captured}


@handler("spade_generator")
def spade_generator(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    model = _filled(SPADEDecoder(**fx.config), device)
    return {"image": model(fx.tensor("feature").to(device))}
