"""Motion sampling speed: seconds of compute per second of audio.

Compares the official DDPM sampler (every step of the checkpoint's schedule,
500 for the released model) with the fast DDIM sampler at a few step counts,
on the full-size denoiser (synthetic weights; speed does not depend on the
values). The audio encoder runs once per window whatever the sampler; it is
timed on its own and included in the totals. On CUDA every sampler is also
timed with ``cuda_graphs=True`` (each denoising step replays a captured graph).

    python benchmarks/sampler.py [--device auto] [--ddim-steps 10 25 50] [--windows 1]
                                 [--precision fp32|fp16] [--no-graphs]

Every row comes from the same process, one after the other, so the speed-ups
are ratios measured side by side.
"""
from __future__ import annotations

import argparse

import torch

from common import best_time, describe_device, peak_rss_mib, peak_vram_mib, print_table, timed

from joyvasa_core.devices import resolve_device, resolve_dtype
from joyvasa_core.dit.args import MotionGeneratorArgs
from joyvasa_core.dit.audio_encoder import build_audio_encoder, encode_audio
from joyvasa_core.dit.model import build_motion_generator
from joyvasa_core.dit.samplers import sample_window
from joyvasa_core.fill import fill_module_


def full_size_generator(device: torch.device) -> torch.nn.Module:
    """The released architecture (hubert-base encoder, 8-layer denoiser, 500 steps), filled."""
    args = MotionGeneratorArgs()
    model = build_motion_generator(args, build_audio_encoder(args.audio_model))
    fill_module_(model)
    return model.to(device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--windows", type=int, default=1, help="windows timed per sampler")
    parser.add_argument("--skip-ddpm", action="store_true", help="skip the slow official sampler")
    parser.add_argument("--precision", default="fp32", help="the denoiser's dtype (the pipeline "
                        "loads it in fp32)")
    parser.add_argument("--no-graphs", action="store_true", help="on CUDA, skip the CUDA-graph rows")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = full_size_generator(device)
    model.denoising_net.to(resolve_dtype(args.precision, device))
    margs = model.args
    window_seconds = margs.n_motions / margs.fps
    audio = 0.1 * torch.randn(1, margs.audio_samples, device=device)

    with torch.inference_mode():
        encode_s = best_time(lambda: encode_audio(model, audio), device, repeats=2)
        audio_feat = encode_audio(model, audio).audio_feat
        generator = torch.Generator(device=device).manual_seed(0)

        def run(sampler: str, steps: int | None, graphs: bool) -> float:
            with timed(device) as t:
                for _ in range(args.windows):
                    sample_window(model, audio_feat, None, None, None, cfg_scale=2.8,
                                  sampler=sampler, steps=steps, generator=generator,
                                  cuda_graphs=graphs)
            return t["s"] / args.windows

        modes = [False] + ([True] if device.type == "cuda" and not args.no_graphs else [])
        for graphs in modes:
            run("ddim", 2, graphs)  # warm-up (and graph capture)
        rows = []
        configs = [] if args.skip_ddpm else [("ddpm (official)", "ddpm", None)]
        configs += [(f"ddim {n}", "ddim", n) for n in args.ddim_steps]
        ddpm_total = None
        for label, sampler, steps in configs:
            for graphs in modes:
                per_window = run(sampler, steps, graphs)
                total = (per_window + encode_s) / window_seconds
                if sampler == "ddpm" and not graphs:
                    ddpm_total = total
                n_steps = steps or margs.n_diff_steps
                rows.append([label + (" + CUDA graphs" if graphs else ""), n_steps,
                             per_window, per_window / n_steps, total, 1 / total,
                             None if ddpm_total is None else ddpm_total / total])

    print(f"device: {describe_device(device)}, denoiser {args.precision}; window = {margs.n_motions} "
          f"frames = {window_seconds:g} s of audio; audio encoder {encode_s:.3f} s per window")
    # s/step should be about equal across samplers (one denoiser call per step): a speed-up
    # far above the ratio of step counts means the rows were not measured alike.
    print_table(["sampler", "steps", "s/window (sampling)", "s/step", "s per s of audio",
                 "x real time", "speed-up vs ddpm"], rows)
    print(f"peak host RSS {peak_rss_mib():.0f} MiB; peak VRAM {peak_vram_mib(device) or 0:.0f} MiB")


if __name__ == "__main__":
    main()
