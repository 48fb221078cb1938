"""Draws docs/pipeline.png, the front page's picture of what the pack does.

    python docs/pipeline_diagram.py          # needs Pillow, numpy, scikit-image

The photo is scikit-image's astronaut (public domain, NASA), the one the tests
and the live page use; the waveform is a drawn, speech-like curve. No frame in
the picture comes from the models: it shows the stages, not a result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

from drawing import GREY, INK, arrow, box, font

W, H = 1280, 430
BLUE, GREEN = (225, 236, 250), (226, 244, 230)


def main() -> None:
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((24, 18), "ComfyUI-JoyVASA: a photo and speech in, a talking head out",
           font=font(24, True), fill=INK)

    photo = Image.fromarray(data.astronaut()).resize((150, 150), Image.LANCZOS)
    img.paste(photo, (40, 70))
    d.text((115, 228), "photo (or video)", font=font(15), fill=GREY, anchor="mt")

    t = np.linspace(0, 1, 400)
    env = 0.25 + 0.75 * np.abs(np.sin(7 * np.pi * t)) ** 1.5
    wave = env * np.sin(2 * np.pi * 60 * t) * np.sin(2 * np.pi * 7 * t + 1)
    pts = [(40 + 150 * x, 320 - 38 * y) for x, y in zip(t, wave)]
    d.line(pts, fill=(60, 110, 200), width=2)
    d.text((115, 372), "speech", font=font(15), fill=GREY, anchor="mt")

    box(d, (250, 70, 530, 210), "face", ["crop (face detector)", "F: appearance volume",
                                         "M: keypoints"], BLUE)
    box(d, (250, 255, 530, 395), "motion stream", ["audio encoder + JoyVASA", "diffusion, window by",
                                                   "window (DDPM or DDIM)"], BLUE)
    box(d, (600, 160, 880, 310), "driving keypoints", ["relative motion, region,", "expression edits,",
                                                       "stitching (S)"], BLUE)
    box(d, (950, 70, 1250, 200), "frames", ["warp (W) + SPADE (G)", "pasted back into the photo,",
                                            "in chunks on the device"], GREEN)
    box(d, (950, 250, 1250, 395), "out", ["MP4: H.264 + AAC", "ComfyUI IMAGE / VIDEO",
                                          "live: WebSocket JPEGs", "batch: one MP4 per row"], GREEN)

    arrow(d, (195, 145), (248, 145))
    arrow(d, (195, 320), (248, 320))
    arrow(d, (530, 320), (598, 260))
    arrow(d, (530, 150), (598, 205))
    arrow(d, (880, 210), (948, 150))
    arrow(d, (530, 100), (948, 100))
    arrow(d, (1100, 200), (1100, 248))

    out = Path(__file__).with_name("pipeline.png")
    img.save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
