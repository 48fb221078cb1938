"""ComfyUI adapter for :mod:`joyvasa_core` (V3 node schema, ``comfy_entrypoint``).

Import it as a subpackage of the pack (``<pack>.nodes``): the pack root's
``__init__.py`` does (and makes ``joyvasa_core`` importable), and ComfyUI loads
the root. Modules here import each other relatively: ComfyUI itself owns the
top-level module name ``nodes``.
"""
from __future__ import annotations

from .api import ComfyExtension, io
from .companions import NODES as COMPANION_NODES
from .conversation import NODES as CONVERSATION_NODES
from .dubbing import NODES as DUBBING_NODES
from .expression import NODES as EXPRESSION_NODES
from .models import register_folders
from .paste import NODES as PASTE_NODES
from .portrait import NODES as PORTRAIT_NODES

NODE_LIST: list[type[io.ComfyNode]] = [*PORTRAIT_NODES, *COMPANION_NODES, *EXPRESSION_NODES,
                                       *DUBBING_NODES, *PASTE_NODES, *CONVERSATION_NODES]


class JoyVASAExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_LIST)


async def comfy_entrypoint() -> JoyVASAExtension:
    """ComfyUI's V3 entry point (the pack defines no NODE_CLASS_MAPPINGS)."""
    register_folders()
    return JoyVASAExtension()
