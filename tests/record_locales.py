"""Write the English locale files of the pack from the live node schemas.

The ComfyUI frontend translates a custom pack's nodes from the pack's
``locales/<lang>/nodeDefs.json`` and its category names from
``locales/<lang>/main.json`` (the server merges them into its ``/i18n`` answer,
``app/custom_node_manager.py`` ``build_translations``). The keys are those the
frontend looks up (frontend 1.27.x):

* ``nodeDefs.<node id>.display_name`` and ``.description``;
* ``nodeDefs.<node id>.inputs.<input name>.name`` and ``.tooltip``;
* ``nodeDefs.<node id>.outputs.<output index>.name`` and ``.tooltip``;
* ``nodeCategories.<category path part>`` (in main.json).

The frontend passes every text through vue-i18n's message compiler, where
``{ } @ |`` (and ``%{``) are syntax; :func:`i18n_text` writes them as literals.

``locales/en`` is the schemas' own text, so it is generated, never edited.
After changing a node's schema, from the repository root::

    python tests/record_locales.py

``tests/test_locales.py`` fails until the English files match the schemas
again, and lists what ``locales/zh`` lacks or has too much.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
LOCALES = PACK_DIR / "locales"

#: vue-i18n message syntax characters, written as literal placeholders.
_SPECIAL = "{}@|"


def i18n_text(text: str) -> str:
    """``text`` as a vue-i18n message that renders as ``text``."""
    out = []
    for i, ch in enumerate(text):
        if ch in _SPECIAL or (ch == "%" and text[i + 1:i + 2] == "{"):
            out.append("{'" + ch + "'}")
        else:
            out.append(ch)
    return "".join(out)


def visible_inputs(cls) -> dict[str, dict]:
    """Input name -> options, in /object_info order (required, then optional; no hidden)."""
    info = cls.GET_SCHEMA().get_v1_info(cls).input
    out = {}
    for section in ("required", "optional"):
        for name, spec in (info.get(section) or {}).items():
            out[name] = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return out


def outputs(cls) -> list[tuple[str, str | None]]:
    """(name, tooltip) per output, as /object_info gives them."""
    info = cls.GET_SCHEMA().get_v1_info(cls)
    return list(zip(info.output_name or [], info.output_tooltips or [None] * len(info.output or [])))


def node_def(cls) -> dict:
    """The English nodeDefs.json entry of one node."""
    info = cls.GET_SCHEMA().get_v1_info(cls)
    entry: dict = {"display_name": i18n_text(info.display_name or info.name)}
    if info.description:
        entry["description"] = i18n_text(info.description)
    inputs = {}
    for name, options in visible_inputs(cls).items():
        item = {"name": i18n_text(name)}
        if options.get("tooltip"):
            item["tooltip"] = i18n_text(options["tooltip"])
        inputs[name] = item
    if inputs:
        entry["inputs"] = inputs
    outs = {}
    for index, (name, tooltip) in enumerate(outputs(cls)):
        item = {"name": i18n_text(name)}
        if tooltip:
            item["tooltip"] = i18n_text(tooltip)
        outs[str(index)] = item
    if outs:
        entry["outputs"] = outs
    return entry


def categories(nodes: dict[str, type]) -> list[str]:
    """Every part of every node's category path ("a/b" -> "a", "b"), in first-seen order."""
    seen: dict[str, None] = {}
    for cls in nodes.values():
        for part in (cls.GET_SCHEMA().category or "").split("/"):
            if part:
                seen[part] = None
    return list(seen)


def english(nodes: dict[str, type]) -> dict[str, dict]:
    """File name -> content of ``locales/en``."""
    return {
        "nodeDefs.json": {node_id: node_def(cls) for node_id, cls in nodes.items()},
        "main.json": {"nodeCategories": {c: i18n_text(c) for c in categories(nodes)}},
    }


def dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from helpers_comfy import load_pack

    files = english(load_pack())
    folder = LOCALES / "en"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / name
        text = dumps(data)
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            path.write_text(text, encoding="utf-8", newline="\n")
            print(f"wrote {path.relative_to(PACK_DIR)}")
        else:
            print(f"unchanged {path.relative_to(PACK_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
