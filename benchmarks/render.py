"""Rendering speed of the full-size LivePortrait networks (synthetic weights).

Prints the one-time work per source photo (face crop, F, M) and the render
throughput (frames per second, pasted back into the photo) by chunk size and
precision, against a baseline run in the same process at the same precision:
the official-style loop, one frame at a time with a CPU ``cv2.warpAffine``
paste-back per frame (what LivePortrait's ``execute`` does; officially in
float32, or float16 with its ``flag_use_half_precision``). ``--photo-size``
scales the photo (skimage's astronaut, 512x512) onto a larger canvas, since the
baseline's per-frame paste costs grow with the photo; ``--cuda-graphs`` adds
rows with ``RenderOptions(cuda_graphs=True)``.

    python benchmarks/render.py [--device auto] [--batch-sizes 1 4 8 16] [--frames 32]
                                [--dtypes fp32 fp16] [--photo-size 1920x1080] [--cuda-graphs]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from common import (ROOT, describe_device, peak_rss_mib, peak_vram_mib, print_table,
                    reset_peak_vram, synchronize, timed)

import helpers_checkpoints as hcp   # noqa: E402  (tests/ is on sys.path via common)
from joyvasa_core import pipeline
from joyvasa_core.devices import cpu_compiler_found, cpu_has_amx, resolve_device
from joyvasa_core.driving import DrivingSettings, compose_photo_keypoints
from joyvasa_core.face.paste import feathered_mask, mask_to_original
from joyvasa_core.loaders import place
from joyvasa_core.motion import MotionSequence
from joyvasa_core.render import RenderOptions, frames_per_chunk


def synthetic_motion(frames: int, seed: int = 0) -> MotionSequence:
    """Plausible talking motion: small expression and head changes around a neutral pose."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.linspace(0, 6.28, frames)
    return MotionSequence(exp=0.02 * torch.randn(frames, 21, 3, generator=g),
                          scale=torch.full((frames, 1), 1.5), t=0.01 * torch.randn(frames, 3, generator=g),
                          pitch=3 * phase.sin(), yaw=5 * phase.cos(), roll=2 * phase.sin())


def baseline_fps(models, face, motion, driving) -> float:
    """Official-style: per frame, W+G at the models' precision, to the CPU, cv2 paste-back."""
    lp = models.liveportrait
    photo = (face.image.numpy() * 255).round().astype(np.uint8)
    height, width = photo.shape[:2]
    mask = mask_to_original(feathered_mask(), face.crop.M_c2o, (width, height))[..., None]
    x_d = compose_photo_keypoints(face.source, face.x_s, motion.to(models.device), driving,
                                  pipeline.retargeting_mlps(models))
    synchronize(models.device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(len(motion)):
            warped = lp.warping_module(face.feature_3d, kp_driving=x_d[i:i + 1],
                                       kp_source=face.x_s)["out"]
            spade = lp.spade_generator
            crop = spade(warped.to(spade.fc.weight.dtype))[0].permute(1, 2, 0).float().cpu().numpy()
            crop = (np.clip(crop, 0, 1) * 255).astype(np.uint8)
            back = cv2.warpAffine(crop, face.crop.M_c2o[:2], (width, height),
                                  flags=cv2.INTER_LINEAR)
            _ = (mask * back + (1 - mask) * photo).astype(np.uint8)
    return len(motion) / (time.perf_counter() - start)


def photo_on_canvas(size: str | None) -> np.ndarray:
    """The astronaut photo, scaled to the canvas height and centred on a ``WxH`` canvas."""
    import skimage.data

    photo = skimage.data.astronaut()
    if size is None:
        return photo
    width, height = (int(v) for v in size.lower().split("x"))
    side = min(width, height)
    scaled = cv2.resize(photo, (side, side), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((height, width, 3), 127, np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    canvas[top:top + side, left:left + side] = scaled
    return canvas


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))


def fast_path(device: torch.device, photo: np.ndarray, motion: MotionSequence) -> None:
    """float32 against bfloat16 on the CPU, whole frames, side by side (see the docstring)."""
    if device.type != "cpu":
        raise SystemExit("--fast-path measures the CPU fast path: use --device cpu")
    variants = {}
    for name in ("fp32", "bf16"):
        # as the loader places them: in bf16 only W and G change (F, M, the MLPs stay float32)
        dtype = pipeline.resolve_dtype(name, device)
        lp = place(hcp.filled_liveportrait(), device, dtype)
        models = pipeline.JoyVASAModels(lp, None, None, device, dtype)
        variants[name] = (models, pipeline.extract_face(models, photo, face_backend="auto"))
    first = {}
    for name, (models, face) in variants.items():     # the fast path compiles on its first frame
        start = time.perf_counter()
        list(pipeline.iter_frames(models, face, synthetic_motion(1)))
        first[name] = time.perf_counter() - start
    seconds = {name: float("inf") for name in variants}
    frames = {}
    for repeat in range(2):          # interleaved: both see the same machine load
        for name, (models, face) in variants.items():
            start = time.perf_counter()
            out = torch.cat([f.float() for f in pipeline.iter_frames(models, face, motion)])
            seconds[name] = min(seconds[name], time.perf_counter() - start)
            frames[name] = out
    x0, y0, x1, y1 = _crop_box(variants["fp32"][1], frames["fp32"].shape[1:3])
    whole = _psnr(frames["bf16"], frames["fp32"])
    face = _psnr(frames["bf16"][:, y0:y1, x0:x1], frames["fp32"][:, y0:y1, x0:x1])
    fps = {name: len(motion) / s for name, s in seconds.items()}
    ratio = fps["bf16"] / fps["fp32"]
    print(f"AMX: {'yes' if cpu_has_amx() else 'no'} (bf16 in NHWC only with AMX); "
          f"torch.compile: {'yes' if cpu_compiler_found() else 'no (no C++ compiler)'}; "
          f"{torch.get_num_threads()} threads; torch {torch.__version__}")
    print_table(["path", "frames/s", "x float32", "PSNR frames dB", "PSNR face box dB",
                 "first frame s"],
                [["float32", fps["fp32"], 1.0, None, None, first["fp32"]],
                 ["fast path (bf16)", fps["bf16"], ratio, whole, face, first["bf16"]]])
    print(f"cpu fast path: {ratio:.2f} x float32, PSNR {whole:.1f} dB")


def _crop_box(face, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of the face crop's corners in the photo, clipped to ``size``."""
    corners = np.array([[0, 0, 1], [511, 0, 1], [0, 511, 1], [511, 511, 1]], float)
    xy = corners @ np.asarray(face.crop.M_c2o, float)[:2].T
    height, width = size
    x0, y0 = np.clip(np.floor(xy.min(0)).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(xy.max(0)).astype(int), 0, [width, height])
    return int(x0), int(y0), int(x1), int(y1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--frames", type=int, default=32, help="frames per measurement")
    parser.add_argument("--dtypes", nargs="+", help="fp32 fp16 bf16 (default: fp32, plus "
                        "fp16 and bf16 on CUDA)")
    parser.add_argument("--photo-size", help="WxH canvas for the photo, e.g. 1920x1080 "
                        "(default: the 512x512 photo itself)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="also time RenderOptions(cuda_graphs=True) at the largest batch")
    parser.add_argument("--fast-path", action="store_true",
                        help="CPU: float32 against the bf16 fast path, whole frames, and "
                             "the fast path's PSNR against float32")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.fast_path:
        photo = photo_on_canvas(args.photo_size)
        print(f"device: {describe_device(device)}; photo {photo.shape[1]}x{photo.shape[0]}; "
              f"{args.frames} frames per measurement")
        fast_path(device, photo, synthetic_motion(args.frames))
        print(f"peak host RSS {peak_rss_mib():.0f} MiB (root {ROOT})")
        return
    dtypes = args.dtypes or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    photo = photo_on_canvas(args.photo_size)
    motion = synthetic_motion(args.frames)
    driving = DrivingSettings()
    print(f"device: {describe_device(device)}; photo {photo.shape[1]}x{photo.shape[0]}; "
          f"{args.frames} frames per measurement")

    rows = []
    for name in dtypes:
        dtype = pipeline.resolve_dtype(name, device)
        lp = hcp.filled_liveportrait().to(device, dtype).requires_grad_(False)
        models = pipeline.JoyVASAModels(lp, None, None, device, dtype)
        with timed(device) as t:
            face = pipeline.extract_face(models, photo, face_backend="auto")
        print(f"{name}: one-time work per photo (crop + F + M): {t['s']:.3f} s")
        # the official-style loop at this precision, in the same process on the same machine
        baseline = baseline_fps(models, face, motion[: max(2, args.frames // 4)], driving)
        rows.append(["official-style loop + CPU paste", 1, name, baseline, 1.0, None])
        # The render loop caps chunks on the CPU (render.frames_per_chunk): time each real size once.
        chunk_sizes = dict.fromkeys(frames_per_chunk(device, dtype, b) for b in args.batch_sizes)
        runs = [(batch, None) for batch in chunk_sizes]
        if args.cuda_graphs:
            runs.append((max(chunk_sizes), RenderOptions(cuda_graphs=True)))
        for batch, options in runs:
            reset_peak_vram(device)

            def frames(count: int):
                return pipeline.iter_frames(models, face, motion[:count], driving, batch_size=batch,
                                            render_options=options)
            for _ in frames(2 * batch):      # warm-up: allocator, cuDNN autotune, graph capture
                pass
            synchronize(device)
            start = time.perf_counter()
            for _ in frames(len(motion)):
                pass
            synchronize(device)
            fps = len(motion) / (time.perf_counter() - start)
            label = "iter_frames (paste on device)" + (" + CUDA graphs" if options else "")
            rows.append([label, batch, name, fps, fps / baseline, peak_vram_mib(device)])
        models = lp = face = None      # free this precision's networks before the next
    print_table(["path", "batch", "dtype", "frames/s", "x baseline (same dtype)", "peak VRAM MiB"], rows)
    print(f"peak host RSS {peak_rss_mib():.0f} MiB (root {ROOT})")


if __name__ == "__main__":
    main()
