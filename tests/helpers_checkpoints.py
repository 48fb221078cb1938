"""Write model files in the official formats, for tests.

* :func:`write_official_tree` writes the five LivePortrait files of a (filled)
  :class:`~joyvasa_core.loaders.LivePortraitModels` where the official
  ``pretrained_weights`` tree (or Kijai's ``models/liveportrait``) has them.
* :func:`write_motion_generator_file`, :func:`write_motion_template`: the JoyVASA files.
* :func:`tiny_backbone` / :data:`TINY_LIVEPORTRAIT`: a small config of the real
  architectures so tests build and load in milliseconds.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import pickle
import struct
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from joyvasa_core import config, model_files
from joyvasa_core.checkpoints import DDP_PREFIX
from joyvasa_core.fill import fill_module_, unit_uniform, uniform01
from joyvasa_core.loaders import LivePortraitModels, build_liveportrait
from joyvasa_core.models import convnextv2

SCHEMA = Path(__file__).parent / "data" / "schema"

TINY_BACKBONE = "tiny_test"
#: ``build_liveportrait`` overrides for tiny real-architecture models (needs :func:`tiny_backbone`).
TINY_LIVEPORTRAIT: dict[str, dict[str, Any]] = {
    "appearance_feature_extractor": dict(block_expansion=4, max_features=16, reshape_channel=4,
                                         reshape_depth=4, num_resblocks=1),
    "motion_extractor": dict(backbone=TINY_BACKBONE),
    "warping_module": dict(block_expansion=4, max_features=16, reshape_channel=4,
                           dense_motion_params=dict(block_expansion=4, max_features=16,
                                                    num_blocks=2, reshape_depth=4, compress=2)),
    "spade_generator": dict(block_expansion=4, max_features=16, out_channels=4, spade_hidden=8),
    "stitching": dict(hidden_sizes=[8, 8]),
    "lip": dict(hidden_sizes=[8, 8]),
    "eye": dict(hidden_sizes=[8, 8, 8]),
}


@contextlib.contextmanager
def tiny_backbone() -> Iterator[str]:
    """Temporarily register a 1-block-per-stage, 8-channel ConvNeXt-V2 as ``TINY_BACKBONE``."""
    convnextv2.BACKBONES[TINY_BACKBONE] = dict(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8))
    try:
        yield TINY_BACKBONE
    finally:
        del convnextv2.BACKBONES[TINY_BACKBONE]


@contextlib.contextmanager
def liveportrait_build(config_overrides: Mapping[str, Any]) -> Iterator[None]:
    """Make ``loaders.load_liveportrait`` build ``config_overrides`` (for files written with it)."""
    from joyvasa_core import loaders

    original = loaders.build_liveportrait

    def build(overrides=None):
        return original(overrides or config_overrides)

    with tiny_backbone():
        loaders.build_liveportrait = build
        try:
            yield
        finally:
            loaders.build_liveportrait = original


def filled_liveportrait(config_overrides: Mapping[str, Any] | None = None,
                        offset: float = 0.0) -> LivePortraitModels:
    """Built models filled with the reference fill rule (keys as stored in the files).

    ``offset`` is added to every floating entry, to tell two sets of weights apart.
    """
    models = build_liveportrait(config_overrides)
    for name in ("appearance_feature_extractor", "motion_extractor", "warping_module",
                 "spade_generator"):
        fill_module_(getattr(models, name))
    for name in config.STITCHING_FILE_PARTS.values():
        fill_module_(getattr(models, name), stored_key=lambda k: DDP_PREFIX + k)
    if offset:
        with torch.no_grad():
            for tensor in models.state_dict().values():
                if tensor.is_floating_point():
                    tensor.add_(offset)
    return models


def write_state_dict(path: Path, state_dict: Mapping[str, torch.Tensor]) -> Path:
    """``.safetensors`` via safetensors, anything else as ``torch.save(OrderedDict)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = OrderedDict((k, v.detach().contiguous().clone()) for k, v in state_dict.items())
    if path.suffix == ".safetensors":
        save_torch(sd, str(path))
    else:
        torch.save(sd, path)
    return path


def stitching_payload(models: LivePortraitModels, layout: str = "official") -> dict[str, Any]:
    """The stitching file content: official nested dict or Kijai's flat dict."""
    parts = {part: getattr(models, name).state_dict()
             for part, name in config.STITCHING_FILE_PARTS.items()}
    if layout == "official":
        return {part: OrderedDict((DDP_PREFIX + k, v.clone()) for k, v in sd.items())
                for part, sd in parts.items()}
    return {f"{part}_{DDP_PREFIX}{k}": v.clone().contiguous()
            for part, sd in parts.items() for k, v in sd.items()}


def write_official_tree(root: Path, models: LivePortraitModels, variant: str = "human",
                        layout: str = "official", stitching: bool = True) -> dict[str, Path]:
    """Write F, M, W, G (and the stitching file) where ``layout`` puts them under ``root``.

    ``layout="official"``: ``liveportrait[_animals]/base_models/*.pth`` and
    ``liveportrait/retargeting_models/stitching_retargeting_module.pth``;
    ``layout="kijai"``: ``[animal/]*.safetensors``. Returns slot -> path.
    """
    files = model_files.liveportrait_files(variant, layout)
    out = {}
    for slot, mf in files.items():
        path = root / mf.relpath
        if slot == "stitching_retargeting_module":
            if not stitching:
                continue
            payload = stitching_payload(models, layout)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".safetensors":
                save_torch(payload, str(path))
            else:
                torch.save(payload, path)
        else:
            write_state_dict(path, getattr(models, slot).state_dict())
        out[slot] = path
    return out


def write_motion_generator_file(path: Path, state_dict: Mapping[str, torch.Tensor],
                                args: Mapping[str, Any] | None = None, iteration: int = 1) -> Path:
    """``torch.save({'args': Namespace, 'model': state dict, 'iter': int})`` as train.py does.

    ``args`` default: the schema's ``args_namespace`` (``data_root`` as a ``pathlib.Path``).
    """
    if args is None:
        args = dict(json.loads((SCHEMA / "motion_generator.json").read_text())["args_namespace"])
        args["data_root"] = pathlib.Path(args["data_root"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"args": argparse.Namespace(**args), "model": OrderedDict(state_dict),
                "iter": iteration}, path)
    return path


def make_motion_template() -> dict[str, np.ndarray]:
    """Every schema entry, float32; the decoder's entries as in the reference fixtures."""
    entries = json.loads((SCHEMA / "motion_template.json").read_text())["entries"]
    out = {e["key"]: (0.1 + uniform01("template/" + e["key"], int(np.prod(e["shape"]))))
           .astype(np.float32).reshape(e["shape"]) for e in entries}
    out.update(
        mean_exp=(0.02 * unit_uniform("input/template/mean_exp", 63)).astype(np.float32),
        std_exp=(0.01 + 0.02 * uniform01("input/template/std_exp", 63)).astype(np.float32),
        min_scale=np.array([1.3], np.float32), max_scale=np.array([1.9], np.float32),
        min_t=np.array([-0.1, -0.1, -0.05], np.float32), max_t=np.array([0.1, 0.1, 0.05], np.float32),
        min_pitch=np.array([-20], np.float32), max_pitch=np.array([20], np.float32),
        min_yaw=np.array([-30], np.float32), max_yaw=np.array([30], np.float32),
        min_roll=np.array([-15], np.float32), max_roll=np.array([15], np.float32),
    )
    return out


def numpy1_pickle(obj: Any, protocol: int) -> bytes:
    """A pickle of ``obj`` whose numpy globals use numpy 1.x paths (``numpy.core.*``).

    Protocol 2 names globals in text; protocol >= 4 pickles of small objects are
    one frame, whose length is rewritten after the rename.
    """
    data = pickle.dumps(obj, protocol=protocol)
    if protocol <= 3:
        return data.replace(b"numpy._core.", b"numpy.core.")
    if not (data[2:3] == b"\x95" and struct.unpack("<Q", data[3:11])[0] == len(data) - 11):
        raise ValueError("object too large for a single-frame pickle")
    # STACK_GLOBAL module names are SHORT_BINUNICODE: opcode 0x8c, 1-byte length, text.
    for new in (b"numpy.core.multiarray", b"numpy.core.numeric"):
        old = new.replace(b"numpy.core.", b"numpy._core.")
        data = data.replace(b"\x8c" + bytes([len(old)]) + old, b"\x8c" + bytes([len(new)]) + new)
    return data[:3] + struct.pack("<Q", len(data) - 11) + data[11:]


def write_motion_template(path: Path, template: Mapping[str, np.ndarray],
                          numpy1_names: bool = False, protocol: int = 4) -> Path:
    """``.pkl`` (pickle of a dict of arrays), ``.json`` (lists) or ``.safetensors``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in template.items()}))
    elif path.suffix == ".safetensors":
        save_numpy({k: np.ascontiguousarray(v) for k, v in template.items()}, str(path))
    else:
        data = (numpy1_pickle(dict(template), protocol) if numpy1_names
                else pickle.dumps(dict(template), protocol=protocol))
        path.write_bytes(data)
    return path
