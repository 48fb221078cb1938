"""Parity handler for fixture ``crop``: the official crop geometry and paste-back.

Everything is read from the fixture: the image, both landmark sets, the
(dsize, scale) combinations (parsed from the output names
``<lmk>.d<dsize>.s<scale>.<what>``), the mask template and the rendered crop.
The image crop, its 256x256 resize and the paste-back are produced for every
landmark set / combination the fixture names.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from ..face import crop as geometry
from ..face.paste import PasteBack, mask_to_original, to_uint8
from .fixture import Fixture
from .registry import handler

_COMBO = re.compile(r"^(?P<lmk>[^.]+)\.d(?P<dsize>\d+)\.s(?P<scale>\d+(?:\.\d+)?)\.(?P<what>.+)$")


@handler("crop")
def run_crop(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    image = fx.tensor("background_rgb").numpy()
    height, width = image.shape[:2]
    out: dict[str, torch.Tensor] = {}
    combos: dict[tuple[str, int, str], set[str]] = {}
    for name in fx.names("output"):
        m = _COMBO.match(name)
        if m:
            combos.setdefault((m["lmk"], int(m["dsize"]), m["scale"]), set()).add(m["what"])

    paste_m_c2o = None
    for (lmk_name, dsize, scale_text), wanted in combos.items():
        prefix = f"{lmk_name}.d{dsize}.s{scale_text}"
        pts = fx.tensor(lmk_name).numpy()
        m_o2c, m_c2o = geometry.crop_transform(pts, dsize=dsize, scale=float(scale_text),
                                               vy_ratio=-0.125, dtype=np.float32)
        out[f"{prefix}.M_o2c"] = torch.from_numpy(m_o2c)
        out[f"{prefix}.M_c2o"] = torch.from_numpy(m_c2o)
        out[f"{prefix}.pt_crop"] = torch.from_numpy(geometry.transform_points(pts, m_o2c)).float()
        if "img_crop" in wanted:
            crop = geometry.warp_crop(image, m_o2c, dsize)
            out[f"{prefix}.img_crop"] = torch.from_numpy(crop)
            out[f"{prefix}.img_crop_256x256"] = torch.from_numpy(geometry.resize_for_model(crop))
            paste_m_c2o = m_c2o

    if "paste_back" in fx.specs or "mask_ori" in fx.specs:
        if paste_m_c2o is None:
            raise KeyError("fixture crop: paste-back outputs need an '<lmk>.d*.s*.img_crop' output")
        mask = fx.tensor("mask_template").numpy()
        out["mask_ori"] = torch.from_numpy(mask_to_original(mask, paste_m_c2o, (width, height)))
        rendered = fx.tensor("rendered_crop").to(device)
        frames = rendered.permute(2, 0, 1)[None].float() / 255.0
        paster = PasteBack(paste_m_c2o, torch.from_numpy(image), mask=mask, device=device)
        out["paste_back"] = to_uint8(paster(frames))[0, :height, :width].cpu()
    return out
