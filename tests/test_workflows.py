"""Every shipped workflow references only existing node IDs, inputs, outputs and widget orders.

Checked against the node schemas as ComfyUI's /object_info describes them
(our nodes: their V3 schemas; core and VideoHelperSuite nodes: their recorded
inputs, ``helpers_comfy.CORE_NODES``). UI workflows must be loadable by the
frontend's positional ``widgets_values`` rule; API twins must carry the same
settings as their UI workflow.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import helpers_comfy as hc

WORKFLOWS = sorted((hc.PACK_DIR / "workflows").glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
FRONTEND_ONLY = {"Note"}      # the frontend's own nodes: never sent to the server


@pytest.fixture(scope="module")
def pack():
    return hc.load_pack()


def _is_ui(workflow: dict) -> bool:
    return "nodes" in workflow and "links" in workflow


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_expected_workflows_are_shipped():
    names = {p.name for p in WORKFLOWS}
    assert {"JoyVASA_talking_portrait.json", "JoyVASA_talking_portrait_api.json",
            "JoyVASA_talking_portrait_vhs.json", "JoyVASA_expression_control.json",
            "JoyVASA_expression_control_api.json", "JoyVASA_video_dubbing.json",
            "JoyVASA_video_dubbing_api.json", "JoyVASA_restore_between.json",
            "JoyVASA_restore_between_api.json", "JoyVASA_conversation.json",
            "JoyVASA_conversation_api.json"} <= names


def _known(pack, class_type: str):
    if class_type in pack:
        cls = pack[class_type]
        inputs = {n: (t, o, opt) for n, (t, o, opt) in hc.node_inputs(cls).items()}
        return inputs, hc.node_outputs(cls)
    core = hc.CORE_NODES.get(class_type)
    assert core is not None, f"unknown node type {class_type!r}"
    optional = set(core.get("optional", ()))
    return ({n: (t, None, n in optional) for n, t in core["inputs"].items()}, core["outputs"])


def _check_value(name: str, kind: str, options: dict | None, value) -> None:
    if options is None:
        return
    if kind == "COMBO":
        assert value in options["options"], f"{name}={value!r} not in {options['options']}"
    elif kind in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, value)
        if kind == "INT":
            assert float(value).is_integer(), (name, value)
        assert options.get("min", value) <= value <= options.get("max", value), (name, value)
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), (name, value)
    elif kind == "STRING":
        assert isinstance(value, str), (name, value)


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if not _is_ui(_load(p))], ids=lambda p: p.name)
def test_api_workflow_matches_node_schemas(pack, path):
    workflow = _load(path)
    assert workflow, "empty workflow"
    for node_id, node in workflow.items():
        inputs, _ = _known(pack, node["class_type"])
        unknown = set(node["inputs"]) - set(inputs) - {"audioUI"}
        assert not unknown, f"node {node_id} {node['class_type']}: unknown inputs {unknown}"
        for name, (kind, options, optional) in inputs.items():
            if name not in node["inputs"]:
                assert optional, f"node {node_id} {node['class_type']}: required input {name} missing"
                continue
            value = node["inputs"][name]
            if isinstance(value, list):  # a link [source id, output slot]
                source = workflow[value[0]]
                _, outputs = _known(pack, source["class_type"])
                out_type = outputs[value[1]]
                assert out_type == kind, \
                    f"node {node_id}.{name} ({kind}) fed by {source['class_type']}[{value[1]}] ({out_type})"
            else:
                assert kind in WIDGET_TYPES, f"node {node_id}.{name}: {kind} needs a link"
                _check_value(f"{node['class_type']}.{name}", kind, options, value)


def _expected_widgets(inputs: dict) -> list[tuple[str, str, dict | None]]:
    """(name, kind, options) of the frontend's widgets in order, incl. control_after_generate."""
    out = []
    for name, (kind, options, _) in inputs.items():
        if kind not in WIDGET_TYPES or (options or {}).get("forceInput"):
            continue
        out.append((name, kind, options))
        if (options or {}).get("control_after_generate"):
            out.append(("control_after_generate", "CONTROL", None))
    return out


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if _is_ui(_load(p))], ids=lambda p: p.name)
def test_ui_workflow_matches_node_schemas(pack, path):
    workflow = _load(path)
    assert workflow.get("version") == 0.4
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            assert not node["inputs"] and not node["outputs"], node["type"]
            continue
        inputs, outputs = _known(pack, node["type"])
        for slot, out in enumerate(node.get("outputs", [])):
            assert out["type"] == outputs[slot], (node["type"], slot, out["type"])
        for socket in node.get("inputs", []):
            assert socket["name"] in inputs, (node["type"], socket["name"])
        if node["type"] not in pack:
            continue
        expected = _expected_widgets(inputs)
        values = node.get("widgets_values", [])   # a node without widgets has none
        assert len(values) == len(expected), (node["type"], values, [e[0] for e in expected])
        for (name, kind, options), value in zip(expected, values):
            if kind == "CONTROL":
                assert value in CONTROL_VALUES, (node["type"], value)
            else:
                _check_value(f"{node['type']}.{name}", kind, options, value)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        _, outputs = _known(pack, nodes[src]["type"])
        assert outputs[src_slot] == kind, f"link {link_id}: {nodes[src]['type']}[{src_slot}] is {outputs[src_slot]}"
        socket = nodes[dst]["inputs"][dst_slot]
        dst_inputs, _ = _known(pack, nodes[dst]["type"])
        assert dst_inputs[socket["name"]][0] == kind, f"link {link_id} into {socket['name']}"
        assert socket["link"] == link_id


def _ui_values(pack, node: dict) -> dict:
    inputs, _ = _known(pack, node["type"])
    names = [n for n, _, _ in _expected_widgets(inputs)]
    return {n: v for n, v in zip(names, node.get("widgets_values", [])) if n != "control_after_generate"}


@pytest.mark.parametrize("stem", ["JoyVASA_talking_portrait", "JoyVASA_expression_control",
                                  "JoyVASA_restore_between", "JoyVASA_conversation"])
def test_api_twin_carries_the_ui_settings(pack, stem):
    ui = _load(hc.PACK_DIR / "workflows" / f"{stem}.json")
    api = _load(hc.PACK_DIR / "workflows" / f"{stem}_api.json")
    ui_nodes = [n for n in ui["nodes"] if n["type"] not in FRONTEND_ONLY]
    assert Counter(n["type"] for n in ui_nodes) == Counter(n["class_type"] for n in api.values())
    by_type = {n["class_type"]: n for n in api.values()}
    for node in ui["nodes"]:
        if node["type"] in pack:
            twin = api.get(str(node["id"]))       # an exported twin keeps the node ids
            if twin is None or twin["class_type"] != node["type"]:
                twin = by_type[node["type"]]
            api_inputs = twin["inputs"]
            for name, value in _ui_values(pack, node).items():
                assert api_inputs[name] == value, (node["type"], name)
