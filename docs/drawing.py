"""What the figure scripts in docs/ share: fonts, labelled boxes and arrows (Pillow)."""
from __future__ import annotations

import numpy as np
from PIL import ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
INK, GREY = (34, 34, 34), (110, 110, 110)


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` px (Pillow's own font where DejaVu is missing)."""
    try:
        return ImageFont.truetype(BOLD if bold else FONT, size)
    except OSError:
        return ImageFont.load_default(size=size)


def box(d: ImageDraw.ImageDraw, xy, title: str, lines: list[str], fill,
        title_px: int = 19, line_px: int = 15) -> None:
    """A rounded box ``xy`` (x0, y0, x1, y1, pixels): a bold title, then centred grey lines."""
    d.rounded_rectangle(xy, radius=round(0.65 * title_px), fill=fill, outline=(150, 150, 150),
                        width=2)
    x0, y0, x1, _ = xy
    d.text(((x0 + x1) / 2, y0 + round(0.72 * title_px)), title, font=font(title_px, True),
           fill=INK, anchor="mt")
    for i, line in enumerate(lines):
        d.text(((x0 + x1) / 2, y0 + round(2.42 * title_px) + round(1.52 * line_px) * i), line,
               font=font(line_px), fill=GREY, anchor="mt")


def arrow(d: ImageDraw.ImageDraw, a, b, colour=INK, head_px: int = 14) -> None:
    """A line from ``a`` to ``b`` (pixels) with a filled head at ``b``."""
    d.line([a, b], fill=colour, width=3)
    v = np.subtract(b, a).astype(float)
    v /= np.linalg.norm(v)
    n = np.array([-v[1], v[0]])
    tip = np.array(b, dtype=float)
    d.polygon([tuple(tip), tuple(tip - head_px * v + head_px / 2 * n),
               tuple(tip - head_px * v - head_px / 2 * n)], fill=colour)
