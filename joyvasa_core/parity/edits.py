"""Parity handler for the ``expression_edit`` fixture (the editor's slider semantics)."""
from __future__ import annotations

import torch

from ..edits.sliders import SLIDER_NAMES, slider_offsets
from .fixture import Fixture
from .registry import handler


@handler("expression_edit")
def expression_edit(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    """Every ``sliders.<case>`` [12] (in the sidecar's ``slider_names`` order) ->
    ``delta_exp.<case>`` [21, 3] and ``delta_rot.<case>`` [3]."""
    order = fx.meta.get("slider_names")
    if order is None or sorted(order) != sorted(SLIDER_NAMES):
        raise ValueError(f"expression_edit: slider_names {order} must name exactly the sliders "
                         f"{list(SLIDER_NAMES)}")
    ours = torch.tensor([order.index(n) for n in SLIDER_NAMES], device=device)
    out: dict[str, torch.Tensor] = {}
    for name in fx.names("input"):
        case = name.removeprefix("sliders.")
        # float64 like the editor's Python-float angle arithmetic, one rounding to float32
        values = fx.tensor(name).to(device, torch.float64)[ours]
        edit = slider_offsets(values)
        out[f"delta_exp.{case}"] = edit.delta_exp.float()
        out[f"delta_rot.{case}"] = edit.delta_rot.float()
    return out
