"""Draws the pack's icon for the Comfy Registry: ``python docs/icon.py`` -> web/icon.png.

A head in profile (the portrait) speaking a sound wave (the speech), 400x400.
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 400
OUT = Path(__file__).resolve().parents[1] / "web" / "icon.png"


def main() -> None:
    y, x = np.mgrid[:SIZE, :SIZE] / SIZE
    top, bottom = np.array([34, 40, 74]), np.array([196, 40, 56])       # indigo to JD red
    t = np.clip(0.65 * y + 0.35 * x, 0, 1)[..., None]
    image = Image.fromarray(((1 - t) * top + t * bottom).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    white = (250, 246, 240)
    # head in profile, facing right: skull, face line, nose, lips, chin, neck
    draw.ellipse((70, 70, 250, 260), fill=white)
    draw.polygon([(230, 150), (262, 205), (238, 212), (246, 232), (236, 246), (242, 262),
                  (214, 300), (170, 300), (170, 345), (110, 345), (110, 250)], fill=white)
    # the speech: bars of a waveform leaving the mouth
    for i, height in enumerate((24, 58, 96, 62, 120, 70, 34)):
        cx = 284 + 16 * i
        draw.rounded_rectangle((cx - 5, 238 - height / 2, cx + 5, 238 + height / 2),
                               radius=5, fill=white)
    image.save(OUT, optimize=True)


if __name__ == "__main__":
    main()
