"""Rendering speed of the full-size LivePortrait networks (synthetic weights).

Prints the one-time work per source photo (face crop, F, M) and the render
throughput (frames per second, pasted back into the photo) by chunk size and
precision, against a baseline run in the same process: the official-style loop,
one frame at a time in float32 with a CPU ``cv2.warpAffine`` paste-back per
frame (what LivePortrait's ``execute`` does).

    python benchmarks/render.py [--device auto] [--batch-sizes 1 4 8 16] [--frames 32]
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
from joyvasa_core.devices import resolve_device
from joyvasa_core.driving import DrivingSettings, compose_driving_keypoints
from joyvasa_core.face.paste import feathered_mask, mask_to_original
from joyvasa_core.motion import MotionSequence


def synthetic_motion(frames: int, seed: int = 0) -> MotionSequence:
    """Plausible talking motion: small expression and head changes around a neutral pose."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.linspace(0, 6.28, frames)
    return MotionSequence(exp=0.02 * torch.randn(frames, 21, 3, generator=g),
                          scale=torch.full((frames, 1), 1.5), t=0.01 * torch.randn(frames, 3, generator=g),
                          pitch=3 * phase.sin(), yaw=5 * phase.cos(), roll=2 * phase.sin())


def baseline_fps(models, face, motion, driving) -> float:
    """Official-style: per frame, fp32 W+G, to the CPU, cv2 paste-back."""
    lp = models.liveportrait
    photo = (face.image.numpy() * 255).round().astype(np.uint8)
    height, width = photo.shape[:2]
    mask = mask_to_original(feathered_mask(), face.crop.M_c2o, (width, height))[..., None]
    retarget = {"stitching": lp.stitching, "lip": lp.lip}
    x_d = compose_driving_keypoints(face.source, face.x_s, motion.to(models.device), driving,
                                    retarget)
    synchronize(models.device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(len(motion)):
            warped = lp.warping_module(face.feature_3d, kp_driving=x_d[i:i + 1],
                                       kp_source=face.x_s)["out"]
            crop = lp.spade_generator(warped)[0].permute(1, 2, 0).float().cpu().numpy()
            crop = (np.clip(crop, 0, 1) * 255).astype(np.uint8)
            back = cv2.warpAffine(crop, face.crop.M_c2o[:2], (width, height),
                                  flags=cv2.INTER_LINEAR)
            _ = (mask * back + (1 - mask) * photo).astype(np.uint8)
    return len(motion) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--frames", type=int, default=32, help="frames per measurement")
    parser.add_argument("--dtypes", nargs="+", help="fp32 fp16 bf16 (default: fp32, plus "
                        "fp16 and bf16 on CUDA)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dtypes = args.dtypes or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    import skimage.data

    photo = skimage.data.astronaut()
    motion = synthetic_motion(args.frames)
    driving = DrivingSettings()
    print(f"device: {describe_device(device)}; photo {photo.shape[1]}x{photo.shape[0]}; "
          f"{args.frames} frames per measurement")

    rows, baseline = [], None
    for name in dtypes:
        dtype = pipeline.resolve_dtype(name, device)
        lp = hcp.filled_liveportrait().to(device, dtype).requires_grad_(False)
        models = pipeline.JoyVASAModels(lp, None, None, device, dtype)
        with timed(device) as t:
            face = pipeline.extract_face(models, photo, face_backend="auto")
        if baseline is None:   # first dtype is fp32: same process, same warm machine
            print(f"one-time work per photo (crop + F + M): {t['s']:.3f} s")
            baseline = baseline_fps(models, face, motion[: max(2, args.frames // 4)], driving)
            rows.append(["official-style loop + CPU paste", 1, name, baseline, 1.0, None])
        for batch in args.batch_sizes:
            reset_peak_vram(device)
            list(pipeline.iter_frames(models, face, motion[:batch], driving, batch_size=batch))
            synchronize(device)
            start = time.perf_counter()
            for _ in pipeline.iter_frames(models, face, motion, driving, batch_size=batch):
                pass
            synchronize(device)
            fps = len(motion) / (time.perf_counter() - start)
            rows.append(["iter_frames (paste on device)", batch, name, fps, fps / baseline,
                         peak_vram_mib(device)])
        del models, lp, face
    print_table(["path", "batch", "dtype", "frames/s", "x baseline", "peak VRAM MiB"], rows)
    print(f"peak host RSS {peak_rss_mib():.0f} MiB (root {ROOT})")


if __name__ == "__main__":
    main()
