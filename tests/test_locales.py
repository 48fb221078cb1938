"""The locale files the ComfyUI frontend reads for the pack's nodes (``locales/``).

``locales/<lang>/nodeDefs.json`` names and describes every node, input and output;
``locales/<lang>/main.json`` holds ``nodeCategories``. English is generated from the
live schemas by ``tests/record_locales.py``; Chinese is written by hand and must
have exactly the keys English has. See that script for the key format.
"""
from __future__ import annotations

import codecs
import json
import re

import pytest

import helpers_comfy as hc
import record_locales as rl

LOCALES = hc.PACK_DIR / "locales"
LANGS = ("en", "zh")
FILES = ("nodeDefs.json", "main.json")
REGENERATE = ("the English locale no longer matches the node schemas: run "
              "`python tests/record_locales.py` from the repository root, commit locales/en, "
              "and update locales/zh to match")

CJK = re.compile(r"[\u4e00-\u9fff]")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
LITERAL = re.compile(r"\{'[^'\\]'\}")  # a vue-i18n literal placeholder of one character


@pytest.fixture(scope="module")
def pack():
    return hc.load_pack()


@pytest.fixture(scope="module")
def expected(pack):
    """File name -> the English content the schemas call for."""
    return rl.english(pack)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    assert not dupes, f"duplicate keys {dupes}"
    return dict(pairs)


def load(lang: str, name: str) -> dict:
    raw = (LOCALES / lang / name).read_bytes()
    assert not raw.startswith(codecs.BOM_UTF8), f"locales/{lang}/{name} starts with a BOM"
    return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)


def leaves(data: dict, prefix: str = ""):
    """(dotted key path, value) of every non-dict value."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def key_problems(locale: dict, reference: dict) -> list[str]:
    """Key paths ``locale`` lacks or has beyond ``reference`` (the schema-made English)."""
    have = {path for path, _ in leaves(locale)}
    want = {path for path, _ in leaves(reference)}
    return ([f"missing {p}" for p in sorted(want - have)]
            + [f"not in the schemas: {p}" for p in sorted(have - want)])


def syntax_problems(text: str) -> list[str]:
    """vue-i18n syntax characters left unescaped (the frontend would mangle or drop the text)."""
    bare = LITERAL.sub("", text)
    found = sorted({ch for ch in "{}@|" if ch in bare})
    if "%{" in bare:
        found.append("%{")
    return found


def unescape(text: str) -> str:
    return re.sub(r"\{'([^'\\])'\}", r"\1", text)


# ------------------------------------------------------------------------ files

@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", FILES)
def test_locale_files_are_utf8_json_objects_of_strings(lang, name):
    data = load(lang, name)
    assert isinstance(data, dict) and data
    for path, value in leaves(data):
        assert isinstance(value, str) and value.strip(), f"locales/{lang}/{name}: {path} = {value!r}"


@pytest.mark.parametrize("name", FILES)
def test_english_is_the_schemas_text(expected, name):
    text = (LOCALES / "en" / name).read_text(encoding="utf-8")
    want = rl.dumps(expected[name])
    if text != want:
        have = json.loads(text)
        differing = sorted(k for k in set(have) | set(expected[name])
                           if have.get(k) != expected[name].get(k))
        pytest.fail(f"locales/en/{name}: {REGENERATE} (differs at {differing or 'formatting'})")


@pytest.mark.parametrize("lang", LANGS)
def test_locale_names_every_node_input_output_and_category_and_nothing_else(pack, expected, lang):
    node_defs = load(lang, "nodeDefs.json")
    assert set(node_defs) == set(pack), sorted(set(node_defs) ^ set(pack))
    for name in FILES:
        problems = key_problems(load(lang, name), expected[name])
        assert not problems, f"locales/{lang}/{name}: " + "; ".join(problems) + f" ({REGENERATE})"


def test_key_check_catches_a_missing_input_an_extra_node_and_an_extra_tooltip(expected):
    doctored = json.loads(json.dumps(expected["nodeDefs.json"]))
    del doctored["JoyVASAPasteBack"]["inputs"]["background"]
    doctored["JoyVASAGhost"] = {"display_name": "Ghost"}
    doctored["JoyVASADubVideo"]["outputs"]["0"]["tooltip"] = "frames"
    problems = key_problems(doctored, expected["nodeDefs.json"])
    assert problems == ["missing JoyVASAPasteBack.inputs.background.name",
                        "missing JoyVASAPasteBack.inputs.background.tooltip",
                        "not in the schemas: JoyVASADubVideo.outputs.0.tooltip",
                        "not in the schemas: JoyVASAGhost.display_name"]
    assert key_problems(expected["nodeDefs.json"], expected["nodeDefs.json"]) == []


def test_schema_keys_the_frontend_looks_up(pack, expected):
    """Spot checks of the generated format against what the frontend reads."""
    node_defs = expected["nodeDefs.json"]
    render = node_defs["JoyVASARenderPortrait"]
    assert render["display_name"] == "RenderPortrait"
    assert list(render["outputs"]) == ["0", "1", "2", "3"]  # output index, as a string
    assert render["outputs"]["3"] == {"name": "paste",
                                      "tooltip": "where the crops go back: connect to PasteBack"}
    assert "tooltip" not in render["inputs"]["models"]
    assert "paste_back" in node_defs["JoyVASADubVideo"]["inputs"]  # optional inputs too
    assert "prompt" not in node_defs["JoyVASASaveMotion"]["inputs"]  # hidden inputs are not shown
    assert "outputs" not in node_defs["JoyVASASaveMotion"]
    assert expected["main.json"] == {"nodeCategories": {"JoyVASA": "JoyVASA"}}


# ------------------------------------------------------------------------ Chinese

def test_chinese_display_names_descriptions_and_tooltips_are_chinese():
    zh = load("zh", "nodeDefs.json")
    for path, value in leaves(zh):
        if path.endswith((".display_name", ".description", ".tooltip")):
            assert CJK.search(value), f"locales/zh/nodeDefs.json {path} is not Chinese: {value!r}"
    names = [entry["display_name"] for entry in zh.values()]
    assert len(set(names)) == len(names), "two nodes share a Chinese display name"


def test_chinese_keeps_the_numbers_and_node_names_of_the_english(pack, expected):
    """A schema text whose numbers or node references change needs its translation redone."""
    en = dict(leaves(expected["nodeDefs.json"]))
    zh = dict(leaves(load("zh", "nodeDefs.json")))
    node_names = [cls.GET_SCHEMA().display_name for cls in pack.values()]
    problems = []
    for path, english in en.items():
        if not path.endswith((".description", ".tooltip")) or path not in zh:
            continue
        for number in sorted(set(NUMBER.findall(english)) - set(NUMBER.findall(zh[path]))):
            problems.append(f"{path}: {number}")
        for name in node_names:
            if re.search(rf"\b{name}\b", english) and not re.search(rf"\b{name}\b", zh[path]):
                problems.append(f"{path}: {name}")
    assert not problems, "locales/zh lacks what the English says: " + "; ".join(problems)


# ------------------------------------------------------------------------ vue-i18n syntax

@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", FILES)
def test_texts_are_plain_vue_i18n_messages(lang, name):
    bad = {path: found for path, value in leaves(load(lang, name))
           if (found := syntax_problems(value))}
    assert not bad, (f"locales/{lang}/{name}: vue-i18n syntax characters, write them as "
                     f"{{'|'}} etc. (record_locales.i18n_text): {bad}")


@pytest.mark.parametrize("text", ["a {b} c", "me@x.com, @:key", "x | y", "50%{a}", "%date% ok",
                                  "}{", "plain 'quoted' text"])
def test_i18n_text_escapes_the_syntax_and_keeps_the_text(text):
    escaped = rl.i18n_text(text)
    assert syntax_problems(escaped) == []
    assert unescape(escaped) == text
    if any(ch in text for ch in "{}@|"):
        assert syntax_problems(text), text
