"""ComfyUI-JoyVASA: a ComfyUI node pack (V3 schema) around the ``joyvasa_core`` library.

ComfyUI imports this folder as a package (under a name derived from its path),
so the folder may have any name. ``joyvasa_core`` is a plain library shipped
beside ``nodes/`` and shared with the CLI; it is made importable by appending
this folder to ``sys.path`` (appended, so ComfyUI's own top-level modules, such
as ``nodes``, keep priority). The pack's ``nodes`` package is only ever imported
relatively. Registration is through ``comfy_entrypoint`` only: this module
deliberately defines no ``NODE_CLASS_MAPPINGS`` (ComfyUI would then ignore the
entry point). ``WEB_DIRECTORY`` is defined in every case: ComfyUI serves ``web/``
at ``/extensions/<pack>/``, and its frontend shows ``web/docs/<NodeID>.md``
(``web/docs/<NodeID>/<locale>.md`` for other languages) as each node's help page.
"""
import importlib.util
import os
import sys


def _make_core_importable() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.find_spec("joyvasa_core")
    if spec is None:
        sys.path.append(here)
        return
    found = os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))
    if os.path.realpath(found) != os.path.realpath(here):
        raise ImportError(
            f"another joyvasa_core is importable from {found}; ComfyUI-JoyVASA needs its own "
            f"copy in {here}. Remove the other copy (pip uninstall, or a second JoyVASA "
            "folder in custom_nodes) and restart ComfyUI.")


_make_core_importable()

# Served by ComfyUI at /extensions/<pack>/: the help pages of the nodes live in web/docs/.
WEB_DIRECTORY = "./web"

# Outside ComfyUI (pytest collecting this folder as a package, a plain
# `import joyvasa_core` user) there is no comfy_api: then the pack registers nothing.
# Nor does it when imported as a lone module, without a package around it (pytest
# does that when the folder's name is not a Python name, as in "ComfyUI-JoyVASA"):
# the relative import needs one. ComfyUI always imports the folder as a package.
if importlib.util.find_spec("comfy_api") is not None and __package__:
    from .nodes import comfy_entrypoint  # noqa: E402

    __all__ = ["comfy_entrypoint"]
