"""Host memory of the streaming path does not grow with the length of the speech.

Runs ``audio_to_motion`` + ``render_to_file`` (the code path of the CLI and the
streaming node) on the CPU with a tiny configuration of the real networks
(``tests/helpers_pipeline.py``, with G rendering 64x64 crops so ten minutes of
video fit in a few minutes on 2 cores), once for 1 minute and once for 10
minutes of audio, each in a fresh subprocess, and prints the peak resident set
(``VmHWM``) of each run. The last line is ``peak RSS 10 min / 1 min = <ratio>``
(target <= 1.5: frames are rendered, pasted and encoded chunk by chunk; only the
audio and the motion, 70 floats per frame, scale with the length). The speech is
16 kHz mono, 3.7 MiB per minute in float32, held by the caller; a 44.1 kHz
stereo float32 waveform would be 20 MiB per minute.

    python benchmarks/streaming_memory.py [--minutes 1 10] [--threads 2] [--dubbing]

``--dubbing`` measures video dubbing instead (``joyvasa_core.dubbing``): a
synthetic source video as long as the speech (200x150, 25 fps, written
beforehand, chunk by chunk, outside the measured process) is tracked with a
fixed face box (no detector cost, same tracking code path), then decoded,
encoded with F and M, rendered, pasted and encoded chunk by chunk.

``--full-size --device cuda`` runs the same path with the full-size networks
(synthetic weights) on a GPU, the astronaut photo and the fast sampler, and
also reports peak VRAM.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, peak_rss_mib

PHOTO_SIZE = (200, 150)       # (height, width) of the synthetic photo, pixels
SAMPLE_RATE = 16000           # Hz, mono: the rate the motion generator consumes
#: Official window layout (100 frames + 10 of context) with a 2-layer, 16-wide denoiser.
GENERATOR_ARGS = dict(n_motions=100, n_prev_motions=10, n_layers=2)


def full_size_models(device_name: str):
    """Full-size LivePortrait and motion generator (synthetic weights) at the device's precision."""
    import helpers_checkpoints as hcp
    from joyvasa_core import pipeline
    from joyvasa_core.motion import MotionTemplate
    from sampler import full_size_generator

    device = pipeline.resolve_device(device_name)
    dtype = pipeline.resolve_dtype("auto", device)
    lp = hcp.filled_liveportrait().to(device, dtype).requires_grad_(False)
    return pipeline.JoyVASAModels(lp, full_size_generator(device),
                                  MotionTemplate.from_dict(hcp.make_motion_template()), device, dtype)


def write_source_video(path: Path, minutes: float) -> None:
    """A synthetic 25 fps source video of ``minutes``, written 250 frames at a time."""
    import numpy as np

    from joyvasa_core.video import VideoWriter

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (*PHOTO_SIZE, 3), dtype=np.uint8)
    frames = int(minutes * 60 * 25)
    with VideoWriter(path, 25, crf=28, preset="ultrafast") as writer:
        for start in range(0, frames, 250):
            count = min(250, frames - start)
            shift = (np.arange(start, start + count) % 20)[:, None, None, None]
            writer.write(np.clip(base[None].astype(np.int16) + shift, 0, 255).astype(np.uint8))


def dubbing_child(minutes: float, threads: int, batch_size: int | None, video: Path) -> dict:
    """Dub ``video`` with ``minutes`` of speech in this process (tiny networks, CPU)."""
    import torch

    import helpers_pipeline as hp
    from joyvasa_core import pipeline
    from joyvasa_core.dubbing import dub_to_file
    from joyvasa_core.settings import MotionSettings
    from joyvasa_core.sources import open_video

    torch.set_num_threads(threads)
    start = time.perf_counter()
    micro = {**hp.FAST_LIVEPORTRAIT, "appearance_feature_extractor": {
        **hp.FAST_LIVEPORTRAIT["appearance_feature_extractor"], "num_down_blocks": 5}}
    models = hp.fast_models(liveportrait_config=micro, generator_args=GENERATOR_ARGS)
    waveform = hp.speech_like(minutes * 60, SAMPLE_RATE)
    motion = pipeline.audio_to_motion(models, waveform, SAMPLE_RATE,
                                      MotionSettings(sampler="ddim", steps=2))
    motion_s = time.perf_counter() - start
    box = (40, 50, 110, 120)
    with open_video(models.liveportrait, video, minutes * 60, face_backend="none", box=box) as source, \
            tempfile.TemporaryDirectory() as tmp:
        out = dub_to_file(models, source, motion, waveform, SAMPLE_RATE, Path(tmp) / "dub.mp4",
                          batch_size=batch_size)
        size_mb, frames = out.stat().st_size / 2**20, len(source)
    return {"minutes": minutes, "frames": frames, "motion_s": motion_s,
            "total_s": time.perf_counter() - start, "mp4_mib": size_mb,
            "peak_rss_mib": peak_rss_mib(), "peak_vram_mib": None}


def child(minutes: float, threads: int, batch_size: int | None, full_size: bool, device: str) -> dict:
    """One run in this process; returns timings, the peak RSS and (CUDA) the peak VRAM."""
    import numpy as np
    import torch

    import helpers_pipeline as hp
    from common import peak_vram_mib
    from joyvasa_core import pipeline
    from joyvasa_core.driving import DrivingSettings
    from joyvasa_core.render import RenderOptions
    from joyvasa_core.settings import MotionSettings

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if full_size:
        import skimage.data

        models, photo, backend, steps = full_size_models(device), skimage.data.astronaut(), "auto", 10
    else:
        micro = {**hp.FAST_LIVEPORTRAIT, "appearance_feature_extractor": {
            **hp.FAST_LIVEPORTRAIT["appearance_feature_extractor"], "num_down_blocks": 5}}
        models = hp.fast_models(liveportrait_config=micro, generator_args=GENERATOR_ARGS)
        photo = np.random.default_rng(0).integers(0, 256, (*PHOTO_SIZE, 3), dtype=np.uint8)
        backend, steps = "none", 2
    graphs = models.device.type == "cuda"
    face = pipeline.extract_face(models, photo, face_backend=backend)
    waveform = hp.speech_like(minutes * 60, SAMPLE_RATE)     # [N] float32
    motion = pipeline.audio_to_motion(models, waveform, SAMPLE_RATE,
                                      MotionSettings(sampler="ddim", steps=steps, cuda_graphs=graphs))
    motion_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = pipeline.render_to_file(models, face, motion, waveform, SAMPLE_RATE,
                                      Path(tmp) / "long.mp4", DrivingSettings(),
                                      batch_size=batch_size,
                                      render_options=RenderOptions(cuda_graphs=graphs))
        size_mb = out.stat().st_size / 2**20
    return {"minutes": minutes, "frames": len(motion), "motion_s": motion_s,
            "total_s": time.perf_counter() - start, "mp4_mib": size_mb,
            "peak_rss_mib": peak_rss_mib(), "peak_vram_mib": peak_vram_mib(models.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs=2, default=[1.0, 10.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help="frames per chunk (default: 16 tiny, "
                        "from free VRAM at full size)")
    parser.add_argument("--full-size", action="store_true",
                        help="full-size networks (for a GPU: about 1.2 TFLOP per frame)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dubbing", action="store_true",
                        help="measure video dubbing (tiny networks, CPU) instead of a photo")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch_size = args.batch_size or (None if args.full_size else 16)
    if args.child is not None:
        result = dubbing_child(args.child, args.threads, batch_size, args.video) if args.video \
            else child(args.child, args.threads, batch_size, args.full_size, args.device)
        print(json.dumps(result))
        return

    results = []
    tmp = tempfile.TemporaryDirectory()
    for minutes in args.minutes:
        cmd = [sys.executable, __file__, "--child", str(minutes), "--threads", str(args.threads),
               "--device", args.device] + (["--full-size"] if args.full_size else []) \
            + ([] if batch_size is None else ["--batch-size", str(batch_size)])
        if args.dubbing:
            video = Path(tmp.name) / f"source_{minutes:g}min.mp4"
            write_source_video(video, minutes)
            cmd += ["--video", str(video)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.exit(f"run for {minutes} min failed:\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"{minutes:g} min of audio: {result['frames']} frames, motion {result['motion_s']:.1f} s, "
              f"total {result['total_s']:.1f} s, mp4 {result['mp4_mib']:.1f} MiB, "
              f"peak RSS {result['peak_rss_mib']:.0f} MiB"
              + ("" if result["peak_vram_mib"] is None else f", peak VRAM {result['peak_vram_mib']:.0f} MiB"),
              flush=True)
    ratio = results[1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
    print(f"peak RSS {args.minutes[1]:g} min / {args.minutes[0]:g} min = {ratio:.2f}")


if __name__ == "__main__":
    main()
