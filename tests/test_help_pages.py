"""The nodes' help pages (``web/docs``), as ComfyUI's frontend reads them.

The frontend fetches ``/extensions/<pack>/docs/<NodeID>/<locale>.md`` and falls back
to ``/extensions/<pack>/docs/<NodeID>.md``; relative links and images in any page
resolve against ``/extensions/<pack>/docs/``. ComfyUI serves ``/extensions/<pack>/``
from the pack's ``WEB_DIRECTORY``. Checked here:

1. every registered node ID has ``<NodeID>.md`` (English) and ``<NodeID>/zh.md``
   (Chinese), and no page or page folder is there for an unknown ID;
2. every input and output name of each schema appears in both pages, as code (`name`);
3. every relative link or image of a page is a file under ``web/docs/`` (resolved from
   ``docs/``, not from the page's folder), pictures name the script that draws them, and
   every picture is a small PNG that some page shows;
4. the zh pages are written in Chinese;
5. the root ``__init__.py`` sets ``WEB_DIRECTORY`` at module level to the folder holding
   ``docs/``.

The checkers are run on small hand-made inputs at the end, so a passing check means
something.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import helpers_structure as hs
from helpers_comfy import PACK_DIR, load_pack, node_inputs

DOCS = PACK_DIR / "web" / "docs"
ASSETS = DOCS / "assets"
PICTURE_SCRIPT = "docs/help_pictures.py"
MAX_PICTURE_BYTES = 120_000
MIN_CJK = 60          # Chinese characters a zh page has at least
LOCALES = ("zh",)

_CJK = re.compile(r"[\u4e00-\u9fff]")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"([^\"]*)\")?\s*\)")
_HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)


@pytest.fixture(scope="module")
def nodes() -> dict[str, type]:
    return load_pack()


def schema_names(cls) -> list[str]:
    """Input names (required and optional) and output names of a node."""
    return [*node_inputs(cls), *(o.display_name for o in cls.GET_SCHEMA().outputs)]


def pages_of(node_id: str) -> dict[str, Path]:
    return {"en": DOCS / f"{node_id}.md", **{loc: DOCS / node_id / f"{loc}.md" for loc in LOCALES}}


def all_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("*/*.md"))


# --- checkers (tested on hand-made inputs below) -----------------------------------------------

def missing_names(text: str, names: list[str]) -> list[str]:
    """The names that do not appear in ``text`` as inline code (`name`)."""
    return [n for n in names if f"`{n}`" not in text]


def page_links(text: str) -> list[str]:
    """Markdown links, images and HTML src/href targets of a page."""
    return hs.markdown_links(text) + _HTML_SRC.findall(text)


def broken_links(text: str, docs: Path) -> list[str]:
    """Relative links of a page that are no file under ``docs`` (resolved from ``docs``,
    as the frontend resolves them for every page, the zh ones included)."""
    broken = []
    for link in page_links(text):
        path = hs.relative_link_path(link)
        if path is None:
            continue
        resolved = (docs / path).resolve()
        if not resolved.is_file() or not resolved.is_relative_to(docs.resolve()):
            broken.append(link)
    return broken


def uncredited_images(text: str) -> list[str]:
    """Images whose alt text and title do not name the script that draws them."""
    return [target for alt, target, title in _IMAGE.findall(text)
            if PICTURE_SCRIPT not in alt and PICTURE_SCRIPT not in title]


def cjk_count(text: str) -> int:
    return len(_CJK.findall(text))


def web_directory(init_source: str) -> str | None:
    """The string ``WEB_DIRECTORY`` is set to at module level (not inside an ``if``)."""
    for stmt in ast.parse(init_source).body:
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "WEB_DIRECTORY" for t in stmt.targets):
            if isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                return stmt.value.value
    return None


# --- 1. a page per node ID, in English and Chinese, and none for an unknown ID ----------------

def test_every_node_has_an_english_and_a_chinese_page(nodes):
    assert len(nodes) >= 17
    missing = [str(p.relative_to(PACK_DIR)) for nid in nodes for p in pages_of(nid).values()
               if not p.is_file()]
    assert not missing, "help pages missing:\n  " + "\n  ".join(missing)


def test_no_page_for_an_unknown_node_id(nodes):
    stray = [p.name for p in DOCS.glob("*.md") if p.stem not in nodes]
    stray += [p.name + "/" for p in DOCS.iterdir() if p.is_dir() and p.name != "assets"
              and p.name not in nodes]
    stray += [str(p.relative_to(DOCS)) for p in DOCS.glob("*/*.md")
              if p.parent.name != "assets" and p.stem not in LOCALES]
    assert not stray, f"pages for no registered node ID (or an unknown locale): {stray}"


# --- 2. every input and output named -----------------------------------------------------------

def test_pages_name_every_input_and_output(nodes):
    problems = []
    for nid, cls in nodes.items():
        for locale, page in pages_of(nid).items():
            if page.is_file():
                gone = missing_names(page.read_text(encoding="utf-8"), schema_names(cls))
                if gone:
                    problems.append(f"{page.relative_to(DOCS)}: {gone}")
    assert not problems, "pages that do not name (as `code`) these inputs/outputs:\n  " + \
        "\n  ".join(problems)


# --- 3. links and pictures ---------------------------------------------------------------------

def test_links_and_images_resolve_under_web_docs():
    broken = {str(p.relative_to(DOCS)): b for p in all_pages()
              if (b := broken_links(p.read_text(encoding="utf-8"), DOCS))}
    assert not broken, f"links that are no file under web/docs (resolved from docs/): {broken}"


def test_pictures_name_their_script_and_are_small_pngs_that_a_page_shows():
    shown, uncredited = set(), {}
    for page in all_pages():
        text = page.read_text(encoding="utf-8")
        shown |= {(DOCS / t).resolve() for _, t, _ in _IMAGE.findall(text)}
        if bad := uncredited_images(text):
            uncredited[str(page.relative_to(DOCS))] = bad
    assert not uncredited, f"images whose alt text does not name {PICTURE_SCRIPT}: {uncredited}"
    pictures = sorted(ASSETS.iterdir())
    assert pictures, "no pictures in web/docs/assets"
    for picture in pictures:
        assert picture.suffix == ".png" and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
        assert picture.stat().st_size < MAX_PICTURE_BYTES, f"{picture.name} is too large"
        assert picture.resolve() in shown, f"{picture.name} is shown by no page"
    assert (PACK_DIR / PICTURE_SCRIPT).is_file()


# --- 4. Chinese pages --------------------------------------------------------------------------

def test_zh_pages_are_chinese_and_en_pages_are_not(nodes):
    for nid in nodes:
        pages = pages_of(nid)
        assert pages["zh"].is_file() and pages["en"].is_file(), f"{nid}: a page is missing"
        zh, en = (pages[k].read_text(encoding="utf-8") for k in ("zh", "en"))
        assert cjk_count(zh) >= MIN_CJK, f"{nid}/zh.md has {cjk_count(zh)} Chinese characters"
        assert cjk_count(en) == 0, f"{nid}.md (English) has Chinese in it"


# --- 5. WEB_DIRECTORY --------------------------------------------------------------------------

def test_root_init_declares_web_directory_holding_docs(nodes):
    declared = web_directory((PACK_DIR / "__init__.py").read_text(encoding="utf-8"))
    assert declared is not None, "the root __init__.py sets no module-level WEB_DIRECTORY"
    assert (PACK_DIR / declared / "docs").resolve() == DOCS.resolve()
    pack = next(m for m in __import__("sys").modules.values()
                if getattr(m, "__file__", None) == str(PACK_DIR / "__init__.py"))
    assert pack.WEB_DIRECTORY == declared    # what ComfyUI reads from the imported pack


# --- the checkers on hand-made inputs ----------------------------------------------------------

def test_missing_names_wants_code_spans():
    text = "| `images` | IMAGE | the crops |\nthe paste output"
    assert missing_names(text, ["images", "paste"]) == ["paste"]


def test_broken_links_resolve_from_docs_not_the_page_folder(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "a.png").write_bytes(b"")
    (tmp_path.parent / "outside.png").write_bytes(b"")
    text = ("![x](assets/a.png) ![y](assets/b.png) [z](../outside.png) "
            "[w](https://e.org/q.png) [v](#inputs) <img src=\"assets/c.png\">\n"
            "```\n![fenced](assets/none.png)\n```")
    assert broken_links(text, tmp_path) == ["assets/b.png", "../outside.png", "assets/c.png"]


def test_uncredited_images_and_cjk_count():
    text = (f"![curves, drawn by {PICTURE_SCRIPT}](assets/a.png) ![plain](assets/b.png) "
            f'![t](assets/c.png "{PICTURE_SCRIPT}")')
    assert uncredited_images(text) == ["assets/b.png"]
    assert cjk_count("Blink 节点：眨眼") == 4 and cjk_count("no Chinese here") == 0


def test_web_directory_must_be_at_module_level():
    assert web_directory('WEB_DIRECTORY = "./web"\n') == "./web"
    assert web_directory('if x:\n    WEB_DIRECTORY = "./web"\n') is None
    assert web_directory("WEB = './web'\n") is None
