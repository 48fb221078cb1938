"""Paste-back speed: batched torch (this project) vs a per-frame cv2 loop (official style).

100 rendered 512x512 frames are pasted into a 1920x1080 photo. The official
pipeline does, per frame, ``cv2.warpAffine`` of the uint8 frame to full size
and a float32 blend with the mask over the whole image. Here
:class:`joyvasa_core.face.paste.PasteBack` precomputes mask, grid and
background once and pastes chunks of frames with one ``grid_sample`` over the
face region only, on any device. Both are timed in the same run, including
the conversion of the output to uint8.

    python benchmarks/paste_back.py [--device auto|cpu|cuda] [--frames 100] [--chunk 25]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from common import describe_device, peak_rss_mib, peak_vram_mib, synchronize

from joyvasa_core.devices import resolve_device
from joyvasa_core.face import crop as geometry
from joyvasa_core.face.paste import PasteBack, feathered_mask, mask_to_original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args()
    device = resolve_device(args.device)

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    # a face about 300 px wide (eye distance 130 px), slightly rolled, left of centre
    kps = np.array([[820, 430], [950, 440], [885, 510], [830, 570], [940, 578.]])
    _, m_c2o = geometry.crop_transform(geometry.outline_from_kps5(kps))
    frames_u8 = rng.integers(0, 256, (args.frames, 512, 512, 3), dtype=np.uint8)
    frames = torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float().div(255).to(device)
    mask = feathered_mask()

    # Official style: per frame warpAffine + full-image blend (mask prepared once).
    t0 = time.perf_counter()
    mask_ori = mask_to_original(np.repeat(mask[..., None], 3, 2), m_c2o, (args.width, args.height))
    for frame in frames_u8:
        warped = cv2.warpAffine(frame, m_c2o[:2], (args.width, args.height), flags=cv2.INTER_LINEAR)
        out = np.clip(mask_ori * warped + (1 - mask_ori) * photo, 0, 255).astype(np.uint8)
    cv2_s = time.perf_counter() - t0

    # This project: one PasteBack per source, chunks of frames.
    PasteBack(m_c2o, photo, mask, device=device)(frames[:1])          # warm-up
    synchronize(device)
    t0 = time.perf_counter()
    paster = PasteBack(m_c2o, photo, mask, device=device)
    for start in range(0, args.frames, args.chunk):
        out_t = paster(frames[start:start + args.chunk], as_uint8=True)
    synchronize(device)
    torch_s = time.perf_counter() - t0

    diff = np.abs(out_t[-1].cpu().numpy()[:args.height, :args.width].astype(int) - out.astype(int))
    print(f"paste-back of {args.frames} frames into {args.width}x{args.height} "
          f"(torch {torch.__version__}, device {describe_device(device)})")
    print(f"  per-frame cv2 loop : {args.frames / cv2_s:8.1f} fps")
    print(f"  batched torch      : {args.frames / torch_s:8.1f} fps  (chunks of {args.chunk})")
    print(f"  speed-up           : {cv2_s / torch_s:8.2f}x")
    print(f"  last frame max |torch - cv2| = {diff.max()} levels, mean {diff.mean():.4f}")
    print(f"  peak host RSS {peak_rss_mib():.0f} MiB; peak VRAM {peak_vram_mib(device) or 0:.0f} MiB")


if __name__ == "__main__":
    main()
