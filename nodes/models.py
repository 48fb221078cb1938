"""Model folders, loading, caching and ComfyUI memory management for the nodes.

Folders (registered in ``folder_paths``, never replacing the user's
``extra_model_paths.yaml`` entries):

* ``joyvasa``: ``ComfyUI/models/joyvasa/`` holds the official
  ``pretrained_weights`` tree as downloaded (``liveportrait/``,
  ``liveportrait_animals/``, ``JoyVASA/``, ``chinese-hubert-base/``, ...).
* ``liveportrait``: ``ComfyUI/models/liveportrait/`` with Kijai's
  LivePortrait safetensors (used when the official ``.pth`` files are absent).

Loaded networks are cached across queue runs (one entry: a new choice
replaces the old one) and wrapped in ``comfy.model_patcher.ModelPatcher``, so
ComfyUI's memory manager can offload them; :meth:`LoadedModels.ready` loads
them back onto the compute device before each use.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths

from joyvasa_core import model_files, pipeline
from joyvasa_core.motion import MotionTemplate
from .progress import progress_bar

JOYVASA_FOLDER = "joyvasa"
LIVEPORTRAIT_FOLDER = "liveportrait"
_EXTENSIONS = (".pt", ".pth", ".pkl", ".safetensors", ".onnx", ".bin", ".json")


def register_folders() -> None:
    """Add the ``joyvasa`` and ``liveportrait`` model folders to ``folder_paths``.

    A key the user already configured (``extra_model_paths.yaml``) keeps its
    paths; only the file extensions this pack reads are added to it.
    """
    for name in (JOYVASA_FOLDER, LIVEPORTRAIT_FOLDER):
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[name] = (
                [os.path.join(folder_paths.models_dir, name)], set())
        paths, extensions = folder_paths.folder_names_and_paths[name]
        if isinstance(extensions, set):
            extensions.update(_EXTENSIONS)
        else:  # some keys carry a list
            folder_paths.folder_names_and_paths[name] = (
                paths, [*extensions, *(e for e in _EXTENSIONS if e not in extensions)])


def joyvasa_dirs() -> list[Path]:
    """Every configured ``joyvasa`` folder, the default (download target) first."""
    return [Path(p) for p in folder_paths.get_folder_paths(JOYVASA_FOLDER)]


def liveportrait_dirs() -> list[Path]:
    """Every configured ``liveportrait`` folder (Kijai's safetensors)."""
    return [Path(p) for p in folder_paths.get_folder_paths(LIVEPORTRAIT_FOLDER)]


def _files_under(sub: str, suffixes: tuple[str, ...]) -> list[str]:
    names = set()
    for root in joyvasa_dirs():
        folder = root / sub
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    return sorted(names)


def motion_generator_choices() -> list[str]:
    """``.pt`` files in ``joyvasa/JoyVASA/motion_generator``, the official name first."""
    found = _files_under(model_files.MOTION_GENERATOR_DIR, (".pt",))
    default = model_files.MOTION_GENERATOR_FILE
    return [default, *(f for f in found if f != default)]


def motion_template_choices() -> list[str]:
    """Templates (``.pkl``, or converted ``.safetensors`` / ``.json``) in
    ``joyvasa/JoyVASA/motion_template``, the official name first."""
    found = _files_under(model_files.MOTION_TEMPLATE_DIR, (".pkl", ".safetensors", ".json"))
    default = model_files.MOTION_TEMPLATE_FILE
    return [default, *(f for f in found if f != default)]


def _models_root(motion_generator: str) -> Path:
    """The ``joyvasa`` folder holding the chosen motion generator, else the default one."""
    roots = joyvasa_dirs()
    for root in roots:
        if (root / model_files.MOTION_GENERATOR_DIR / motion_generator).is_file():
            return root
    return roots[0]


def compute_device(device: str) -> torch.device:
    """``auto`` follows ComfyUI (``--cpu``, ``--directml``, ...); other names are checked."""
    if device == "auto":
        return mm.get_torch_device()
    return pipeline.resolve_device(device)


class _Managed(nn.Module):
    """Holder that ComfyUI's ModelPatcher may decorate without touching the network."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network


@dataclass
class LoadedModels:
    """The value of a ``JOYVASA_MODELS`` socket.

    ``models`` is the core's :class:`joyvasa_core.pipeline.JoyVASAModels`;
    ``patchers`` wrap its networks for ComfyUI's memory manager.
    """

    models: pipeline.JoyVASAModels
    patchers: dict[str, comfy.model_patcher.ModelPatcher]

    def patchers_of(self, *parts: str) -> list[comfy.model_patcher.ModelPatcher]:
        """The patchers of the named networks (``"liveportrait"``, ``"motion_generator"``)."""
        missing = [p for p in parts if p not in self.patchers]
        if missing:
            raise ValueError(f"these JoyVASA models were not loaded: {missing}; "
                             "reload them with LoadJoyVASAModels")
        return [self.patchers[p] for p in parts]

    def ready(self, *parts: str) -> pipeline.JoyVASAModels:
        """Load the named networks (``"liveportrait"``, ``"motion_generator"``) onto the device."""
        mm.load_models_gpu(self.patchers_of(*parts), force_full_load=True)
        return self.models


_cache: dict[tuple, LoadedModels] = {}


def load(*, variant: str, motion_generator: str, audio_encoder: str, motion_template: str,
         precision: str, device: str) -> LoadedModels:
    """Load (or reuse) the networks for these choices.

    Missing files are downloaded first (progress per file) when online; offline,
    the error lists every missing file and the folder it belongs in.
    """
    register_folders()
    torch_device = compute_device(device)
    dtype = pipeline.resolve_dtype(precision, torch_device)
    root = _models_root(motion_generator)
    key = (str(root), variant, motion_generator, audio_encoder, motion_template,
           str(torch_device), dtype)
    if key in _cache:
        return _cache[key]
    _cache.clear()  # one set of networks at a time
    mm.soft_empty_cache()

    extra = tuple(liveportrait_dirs())
    download = progress_bar(1)
    model_files.ensure_files(root, variant=variant, audio_encoder=audio_encoder,
                             motion_generator=motion_generator, download=True,
                             extra_liveportrait_dirs=extra,
                             on_file=lambda done, total, _file: download(done, total))
    models = pipeline.load_models(
        root, variant=variant, audio_encoder=audio_encoder, motion_generator=motion_generator,
        device=torch_device, precision=dtype, download=False, extra_liveportrait_dirs=extra,
        progress=progress_bar(3))
    if motion_template != model_files.MOTION_TEMPLATE_FILE:
        models = replace(models, template=MotionTemplate.from_file(
            root / model_files.MOTION_TEMPLATE_DIR / motion_template))

    offload = mm.unet_offload_device()
    patchers = {"liveportrait": comfy.model_patcher.ModelPatcher(
        _Managed(models.liveportrait), load_device=torch_device, offload_device=offload)}
    if models.motion_generator is not None:
        patchers["motion_generator"] = comfy.model_patcher.ModelPatcher(
            _Managed(models.motion_generator), load_device=torch_device, offload_device=offload)
    loaded = LoadedModels(models=models, patchers=patchers)
    _cache[key] = loaded
    return loaded
