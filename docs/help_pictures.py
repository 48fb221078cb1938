"""Draws the pictures of the nodes' help pages into web/docs/assets/.

    python docs/help_pictures.py         # needs Pillow, numpy, scikit-image, mtcnn (no download)

Every number in the pictures comes from the pack's own code: the face box and
the crop from ``joyvasa_core.face.detect_and_crop`` (``mtcnn`` backend) on
scikit-image's astronaut (public domain, NASA); the blink and keyframe curves
from ``joyvasa_core.edits``, called as the Blink and ExpressionEdit nodes call
it. There are no model weights here, so no picture shows a rendered frame.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage import data

from drawing import GREY, INK, arrow, box, font

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from joyvasa_core.edits import SLIDER_NAMES, build_edits, parse_timeline  # noqa: E402
from joyvasa_core.edits.blink import DEFAULT_RATE  # noqa: E402
from joyvasa_core.edits.timeline import EASINGS  # noqa: E402
from joyvasa_core.face import detect_and_crop  # noqa: E402
from joyvasa_core.face.crop import transform_points  # noqa: E402

OUT = ROOT / "web" / "docs" / "assets"
CREDIT = "drawn by docs/help_pictures.py from the pack's own code; no model output"
GRID = (225, 225, 225)
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
#: The keyframes of workflows/JoyVASA_expression_control.json's ExpressionEdit.
WORKFLOW_KEYFRAMES = "smile: 0s=0, 1.5s=0.8 ease-in-out\npupil_x: 0s=0, 1s=6 ease-in-out, 2s=6, 2.5s=0"
BLINK_TIMES = "1.2, 3.5s, 4000ms"


def canvas(width: int, height: int, title: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    d.text((16, 12), title, font=font(18, True), fill=INK)
    d.text((16, height - 22), CREDIT, font=font(12), fill=GREY)
    return img, d


def save(img: Image.Image, name: str, colours: int = 64) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    img.quantize(colours, method=Image.Quantize.MEDIANCUT).save(OUT / name, optimize=True)
    print(f"{OUT / name}: {(OUT / name).stat().st_size / 1000:.0f} kB")


def plot(d: ImageDraw.ImageDraw, box: tuple[int, int, int, int], t: np.ndarray,
         curves: dict[str, np.ndarray], ticks: list[float], title: str) -> None:
    """Curves over time ``t`` (seconds) in ``box`` (x0, y0, x1, y1): value ``ticks``
    (lowest to highest) on a grid, the title above, a legend when there are several."""
    x0, y0, x1, y1 = box
    pad = 0.06 * (ticks[-1] - ticks[0])
    lo, hi = ticks[0] - pad, ticks[-1] + pad

    def xy(ts, vs):
        return list(zip(x0 + (ts - t[0]) / (t[-1] - t[0]) * (x1 - x0),
                        y1 - (vs - lo) / (hi - lo) * (y1 - y0)))
    for v in ticks:
        (_, y), = xy(np.array([t[0]]), np.array([v]))
        d.line([(x0, y), (x1, y)], fill=GRID)
        d.text((x0 - 6, y), f"{v:g}", font=font(12), fill=GREY, anchor="rm")
    step = 0.5 if t[-1] - t[0] <= 1 else 1.0
    for s in np.arange(t[0], t[-1] + 1e-9, step):
        (x, _), = xy(np.array([s]), np.array([lo]))
        d.text((x, y1 + 6), f"{s:g} s", font=font(12), fill=GREY, anchor="mt")
    d.rectangle(box, outline=GREY)
    d.line([(x0, y0), (x0, y1)], fill=GREY)
    d.text((x0, y0 - 8), title, font=font(14, True), fill=INK, anchor="ld")
    for i, (name, values) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        d.line(xy(t, values), fill=colour, width=2)
        if len(curves) > 1:  # legend under the time axis
            lx, ly = x0 + 120 * i, y1 + 32
            d.line([(lx, ly), (lx + 20, ly)], fill=colour, width=3)
            d.text((lx + 25, ly), name, font=font(12), fill=INK, anchor="lm")


def face_preview() -> None:
    """The astronaut with the mtcnn box and the official crop square; the 512 crop."""
    photo = data.astronaut()
    face = detect_and_crop(photo, backend="mtcnn")
    side = 330
    img, d = canvas(2 * side + 60, side + 110, "ExtractFaceRepresentation: face and crop")
    scale = side / photo.shape[1]
    img.paste(Image.fromarray(photo).resize((side, side), Image.LANCZOS), (20, 50))
    corners = np.array([[-0.5, -0.5], [511.5, -0.5], [511.5, 511.5], [-0.5, 511.5]])
    square = [(20 + x * scale, 50 + y * scale) for x, y in transform_points(corners, face.M_c2o)]
    d.polygon(square, outline=(255, 200, 0), width=3)
    x_a, y_a, x_b, y_b = face.box * scale
    d.rectangle((20 + x_a, 50 + y_a, 20 + x_b, 50 + y_b), outline=(0, 220, 255), width=2)
    d.text((20, 60 + side), "photo: mtcnn face box (cyan), crop square (yellow)",
           font=font(13), fill=INK)
    img.paste(Image.fromarray(face.crop_512).resize((side, side), Image.LANCZOS), (40 + side, 50))
    d.text((40 + side, 60 + side), "the 'crop' output: 512x512 (shown smaller)",
           font=font(13), fill=INK)
    save(img, "face_preview.png", colours=128)


def blink_curves() -> None:
    """The blink slider of Blink (auto, the defaults) and of Blink (times) over 10 s."""
    duration, fps = 10.0, 25
    t = np.arange(int(duration * fps)) / fps
    times = torch.from_numpy(t)
    column = SLIDER_NAMES.index("blink")
    auto = build_edits(None, "auto", blink_rate=DEFAULT_RATE, blink_strength=1.0, seed=0)
    given = build_edits(None, BLINK_TIMES, blink_strength=1.0)
    img, d = canvas(760, 440, "Blink: the blink slider per frame of a 10 s clip at 25 fps")
    d.text((16, 38), "strength 1: -12 = lids closed, 0 = open (sampled at the frames, so "
           "short blinks may not reach -12)", font=font(12), fill=GREY)
    for row, (edits, label) in enumerate(((auto, f"mode auto, rate {DEFAULT_RATE:g}, seed 0"),
                                          (given, f"mode times, '{BLINK_TIMES}'"))):
        values = edits.until(duration).sliders(times)[:, column].numpy()
        plot(d, (60, 90 + 165 * row, 740, 200 + 165 * row), t, {"blink": values},
             [-12.0, -8.0, -4.0, 0.0], label)
    save(img, "blink_curves.png")


def keyframe_curves() -> None:
    """ExpressionEdit: the workflow's keyframes, and the five easings of one segment."""
    fps = 25
    t = np.arange(3 * fps + 1) / fps
    timeline = parse_timeline(WORKFLOW_KEYFRAMES)
    sliders = timeline.sliders(torch.from_numpy(t)).numpy()
    img, d = canvas(760, 575, "ExpressionEdit: slider values over time (25 fps)")
    d.text((16, 38), "keyframes of workflows/JoyVASA_expression_control.json:\n"
           + WORKFLOW_KEYFRAMES, font=font(12), fill=GREY)
    plot(d, (60, 115, 740, 190), t, {"smile": sliders[:, SLIDER_NAMES.index("smile")]},
         [0.0, 0.4, 0.8], "smile")
    plot(d, (60, 240, 740, 315), t, {"pupil_x": sliders[:, SLIDER_NAMES.index("pupil_x")]},
         [0.0, 3.0, 6.0], "pupil_x")
    u = np.arange(fps + 1) / fps
    eased = {e: parse_timeline(f"smile: 0s=0, 1s=1 {e}").sliders(torch.from_numpy(u)).numpy()
             [:, SLIDER_NAMES.index("smile")] for e in EASINGS}
    plot(d, (60, 365, 740, 495), u, eased, [0.0, 0.5, 1.0], "easings: 'smile: 0s=0, 1s=1 EASING'")
    save(img, "keyframe_curves.png")


def paste_back_diagram() -> None:
    """Where a face restorer or an upscaler sits: render crops -> restorer -> PasteBack."""
    img, d = canvas(900, 300, "PasteBack: restore or upscale the face crops, then paste them back")
    blue, green, yellow = (225, 236, 250), (226, 244, 230), (252, 243, 214)
    small = dict(title_px=14, line_px=12)
    box(d, (16, 60, 196, 170), "RenderPortrait", ["or DubVideo", "paste_back: off"], blue,
        **small)
    box(d, (246, 60, 456, 170), "restorer / upscaler",
        ["ImageScaleBy + ImageSharpen,", "GFPGAN / CodeFormer node,", "ImageUpscaleWithModel"],
        yellow, **small)
    box(d, (506, 60, 666, 170), "PasteBack", ["images + paste", "(+ background)"], blue, **small)
    box(d, (716, 60, 884, 170), "CreateVideo", ["-> SaveVideo"], green, **small)
    arrow(d, (196, 100), (246, 100), head_px=12)
    d.text((221, 94), "images", font=font(11), fill=INK, anchor="mb")
    arrow(d, (456, 100), (506, 100), head_px=12)
    d.text((481, 94), "images", font=font(11), fill=INK, anchor="mb")
    arrow(d, (666, 115), (716, 115), head_px=12)
    d.text((691, 109), "images", font=font(11), fill=INK, anchor="mb")
    d.line([(150, 170), (150, 215), (586, 215)], fill=(31, 119, 180), width=3)
    arrow(d, (586, 215), (586, 170), colour=(31, 119, 180), head_px=12)
    d.text((368, 221), "paste (where each crop goes back)", font=font(12),
           fill=(31, 119, 180), anchor="mt")
    d.text((16, 248), "crops stay square, in order, same count; any square size "
           "(512, 1024, 2048) pastes back at full sharpness", font=font(13), fill=INK)
    save(img, "paste_back_diagram.png", colours=32)


def main() -> None:
    face_preview()
    blink_curves()
    keyframe_curves()
    paste_back_diagram()


if __name__ == "__main__":
    main()
