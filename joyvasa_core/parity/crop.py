"""Parity handler for fixture ``crop``: the official crop geometry and paste-back.

Everything is read from the fixture: the image, the landmark sets, the
(dsize, scale) combinations (parsed from the output names
``<lmk>.d<dsize>.s<scale>.<what>``), the crop options (sidecar ``vy_ratio`` and
``flag_do_rot``, default the Cropper's -0.125 and True; ``vx_ratio`` is ignored
as by the official ``crop_image``), the resize sizes (``img_crop_<S>x<S>``), the
mask template and the rendered crop. Outputs are produced for every landmark
set / combination the fixture names.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from .. import config
from ..face import crop as geometry
from ..face.image_io import to_float01, to_uint8
from ..face.paste import PasteBack, mask_to_original
from .fixture import Fixture
from .registry import handler

_COMBO = re.compile(r"^(?P<lmk>[^.]+)\.d(?P<dsize>\d+)\.s(?P<scale>\d+(?:\.\d+)?)\.(?P<what>.+)$")
_RESIZED = re.compile(r"img_crop_(\d+)x\1")


def crop_option(fx: Fixture, key: str, default):
    """A crop_image keyword from the sidecar (top level, ``crop_kwargs`` or ``config``)."""
    for table in (fx.meta, fx.meta.get("crop_kwargs", {}), fx.config):
        if key in table:
            return table[key]
    return default


@handler("crop")
def run_crop(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    image = fx.tensor("background_rgb").numpy()
    height, width = image.shape[:2]
    vy_ratio = float(crop_option(fx, "vy_ratio", config.CROP_VY_RATIO))
    rotate = bool(crop_option(fx, "flag_do_rot", True))
    out: dict[str, torch.Tensor] = {}
    combos: dict[tuple[str, int, str], set[str]] = {}
    for name in fx.names("output"):
        m = _COMBO.match(name)
        if m:
            combos.setdefault((m["lmk"], int(m["dsize"]), m["scale"]), set()).add(m["what"])

    crops: dict[int, list[np.ndarray]] = {}   # dsize -> M_c2o of each image crop, in fixture order
    for (lmk_name, dsize, scale_text), wanted in combos.items():
        prefix = f"{lmk_name}.d{dsize}.s{scale_text}"
        pts = fx.tensor(lmk_name).numpy()
        m_o2c, m_c2o = geometry.crop_transform(pts, dsize=dsize, scale=float(scale_text),
                                               vy_ratio=vy_ratio, rotate=rotate, dtype=np.float32)
        out[f"{prefix}.M_o2c"] = torch.from_numpy(m_o2c)
        out[f"{prefix}.M_c2o"] = torch.from_numpy(m_c2o)
        out[f"{prefix}.pt_crop"] = torch.from_numpy(geometry.transform_points(pts, m_o2c)).float()
        if any(w.startswith("img_crop") for w in wanted):
            crop = geometry.warp_crop(image, m_o2c, dsize)
            out[f"{prefix}.img_crop"] = torch.from_numpy(crop)
            for what in wanted:
                size = _RESIZED.fullmatch(what)
                if size:  # the official Cropper's INTER_AREA resize
                    out[f"{prefix}.{what}"] = torch.from_numpy(geometry.resize_for_model(crop, int(size[1])))
            crops.setdefault(dsize, []).append(m_c2o)

    if "paste_back" in fx.specs or "mask_ori" in fx.specs:
        rendered = fx.tensor("rendered_crop")
        # The paste-back uses the M_c2o of the image crop the rendered frame stands in for.
        candidates = crops.get(int(rendered.shape[0]), [])
        if not candidates:
            raise KeyError(f"fixture crop: paste-back outputs need an '<lmk>.d{rendered.shape[0]}.s*.img_crop' "
                           "output (the crop the rendered frame stands in for)")
        paste_m_c2o = candidates[0]
        mask = fx.tensor("mask_template").numpy()
        out["mask_ori"] = torch.from_numpy(mask_to_original(mask, paste_m_c2o, (width, height)))
        frames = to_float01(rendered.to(device)).permute(2, 0, 1)[None]
        paster = PasteBack(paste_m_c2o, torch.from_numpy(image), mask=mask, device=device)
        out["paste_back"] = to_uint8(paster(frames))[0, :height, :width].cpu()
    return out
