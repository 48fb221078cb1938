"""End-to-end real-time factor: photo + speech -> MP4 with the full-size networks.

Full-size LivePortrait and motion generator with synthetic weights (speed does
not depend on the values), the real crop/paste/encode path. Prints seconds per
stage and the real-time factor (wall seconds / seconds of audio; < 1 is faster
than real time).

    python benchmarks/end_to_end.py [--device auto] [--seconds 8] [--sampler ddim --steps 25]
                                    [--cuda-graphs]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import describe_device, peak_rss_mib, peak_vram_mib, print_table, synchronize

import helpers_checkpoints as hcp   # noqa: E402  (tests/ is on sys.path via common)
import helpers_pipeline as hp       # noqa: E402
from joyvasa_core import config, pipeline
from joyvasa_core.dit.samplers import SAMPLERS
from joyvasa_core.driving import DrivingSettings
from joyvasa_core.motion import MotionTemplate
from joyvasa_core.render import RenderOptions
from joyvasa_core.settings import MotionSettings
from sampler import full_size_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the speech")
    parser.add_argument("--sampler", default="ddim", choices=SAMPLERS)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="replay denoising steps and render chunks from CUDA graphs")
    args = parser.parse_args()

    device = pipeline.resolve_device(args.device)
    dtype = pipeline.resolve_dtype(args.precision, device)
    lp = hcp.filled_liveportrait().to(device, dtype).requires_grad_(False)
    models = pipeline.JoyVASAModels(lp, full_size_generator(device),
                                    MotionTemplate.from_dict(hcp.make_motion_template()),
                                    device, dtype)
    import skimage.data

    photo = skimage.data.astronaut()
    speech = hp.speech_like(args.seconds)
    steps = None if args.sampler == "ddpm" else args.steps
    timings = {}

    def stage(name, fn):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        timings[name] = time.perf_counter() - start
        return result

    face = stage("face (crop, F, M)", lambda: pipeline.extract_face(models, photo))
    settings = MotionSettings(sampler=args.sampler, steps=steps, cuda_graphs=args.cuda_graphs)
    motion = stage("motion", lambda: pipeline.audio_to_motion(
        models, speech, config.AUDIO_SAMPLE_RATE, settings))
    with tempfile.TemporaryDirectory() as tmp:
        stage("render + encode", lambda: pipeline.render_to_file(
            models, face, motion, speech, config.AUDIO_SAMPLE_RATE, Path(tmp) / "out.mp4", DrivingSettings(),
            batch_size=args.batch_size, render_options=RenderOptions(cuda_graphs=args.cuda_graphs)))
    total = sum(timings.values())
    print(f"device: {describe_device(device)}, {str(dtype).removeprefix('torch.')}; "
          f"{args.seconds:g} s of speech = {len(motion)} frames; sampler {args.sampler}"
          + ("" if steps is None else f" {steps} steps")
          + (", CUDA graphs" if args.cuda_graphs else ""))
    rows = [[name, s, s / args.seconds] for name, s in timings.items()]
    rows.append(["total", total, total / args.seconds])
    print_table(["stage", "seconds", "real-time factor"], rows)
    print(f"render: {len(motion) / timings['render + encode']:.2f} frames/s; peak RSS "
          f"{peak_rss_mib():.0f} MiB; peak VRAM {peak_vram_mib(device) or 0:.0f} MiB")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
