"""Latency: offline time to the first frame, live lag, and how far low-latency lands from exact.

* offline: speech -> motion stream -> frames, timed from the call to the first
  frame, for 5 s and 60 s of speech in one run (median of ``--repeats``); the
  stream makes it independent of the length: the last line is
  ``first frame 60 s / 5 s = <ratio>`` (target <= 1.2).
* live: speech pushed into a :class:`~joyvasa_core.live.LiveSession` in 20 ms
  chunks at real-time pace; the lag of frame f is the time from the arrival of
  the last audio sample it covers to the moment the frame is out (p50, p95).
* consistency: each low-latency (chunk, lookahead) setting against exact mode
  on the same speech: mean |difference| of the expression (keypoint units) and
  of the head angles (degrees) of the committed motion.
* agent: an avatar's reply interrupted mid-way (``LiveSession.interrupt`` after
  the first frames of a push, at real-time pace): the time from the interrupt
  to the first idle frame out (p50 over ``--repeats``); idle frames per second
  (``LiveSession.idle``; 25 keeps up with real time); and the offset between
  each batch's first frame and the first sample of the sound it carries (ms).
  Its last line: ``agent: interrupt -> idle X ms, idle Y fps, A/V offset Z ms``.

Tiny networks on the CPU by default (``tests/helpers_pipeline.fast_models``);
``--full-size --device cuda`` runs the released architectures (synthetic weights:
speed does not depend on the values, consistency does, so measure that with the
real checkpoint: ``--models-dir``).

    python benchmarks/latency.py [--full-size] [--device cpu|cuda] [--models-dir DIR]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from common import describe_device, print_table, synchronize

import helpers_checkpoints as hcp   # noqa: E402  (tests/ is on sys.path via common)
import helpers_pipeline as hp       # noqa: E402
from joyvasa_core import config, pipeline
from joyvasa_core.live import LiveSession, LiveSettings
from joyvasa_core.motion import MotionSequence, MotionTemplate
from joyvasa_core.settings import MotionSettings

PUSH_SECONDS = 0.02


def build_models(args) -> pipeline.JoyVASAModels:
    device = pipeline.resolve_device(args.device)
    if args.models_dir:
        return pipeline.load_models(args.models_dir, device=device, precision=args.precision)
    if not args.full_size:
        return hp.fast_models(device)
    from sampler import full_size_generator

    dtype = pipeline.resolve_dtype(args.precision, device)
    lp = hcp.filled_liveportrait().to(device, dtype).requires_grad_(False)
    return pipeline.JoyVASAModels(lp, full_size_generator(device),
                                  MotionTemplate.from_dict(hcp.make_motion_template()), device, dtype)


def first_frame_seconds(models, face, speech: np.ndarray, args) -> float:
    """Wall time from the speech to the first rendered frame (offline path, motion streamed)."""
    synchronize(models.device)
    start = time.perf_counter()
    stream = pipeline.audio_motion_stream(models, speech, config.AUDIO_SAMPLE_RATE,
                                          MotionSettings(sampler=args.sampler, steps=args.steps))
    frames = pipeline.iter_frames(models, face, stream, batch_size=args.batch_size)
    next(frames)
    synchronize(models.device)
    elapsed = time.perf_counter() - start
    frames.close()
    return elapsed


def live_lags(models, face, speech: np.ndarray, settings: LiveSettings) -> list[float]:
    """Push ``speech`` at real-time pace; the lag (s) of every frame."""
    rate = config.AUDIO_SAMPLE_RATE
    step = round(PUSH_SECONDS * rate)
    session = LiveSession(models, face, settings)
    arrivals: list[tuple[int, float]] = []      # (speech samples pushed so far, time)
    lags: list[float] = []

    def collect(batches, end_time: float | None = None) -> None:
        for batch in batches:
            synchronize(models.device)
            now = time.perf_counter()
            for f in batch.indices:
                # the last speech sample frame f covers (padded samples [640 f, 640 (f + 1)))
                need = min((f + 1) * session.spf - config.AUDIO_PAD_BEFORE, len(speech))
                arrived = next((t for n, t in arrivals if n >= need), end_time)
                lags.append(now - (arrived if arrived is not None else now))

    start = time.perf_counter()
    for i, lo in enumerate(range(0, len(speech), step)):
        due = start + i * PUSH_SECONDS
        while (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        chunk = speech[lo:lo + step]
        frames = session.push(chunk, rate)
        arrivals.append((lo + len(chunk), time.perf_counter()))
        collect(frames)
    collect(session.finish(), end_time=time.perf_counter())
    return lags


def consistency(models, face, speech: np.ndarray, settings: LiveSettings,
                variants: list[tuple[int, int]]) -> list[list]:
    """Mean |low-latency - exact| of the motion for each (chunk, lookahead)."""
    from dataclasses import replace

    def motion(s: LiveSettings) -> MotionSequence:
        chunks: list[MotionSequence] = []
        session = LiveSession(models, face, s, on_motion=chunks.append, render=False)
        for _ in session.push(speech, config.AUDIO_SAMPLE_RATE):
            pass
        for _ in session.finish():
            pass
        return MotionSequence.cat(chunks)

    exact = motion(replace(settings, mode="exact"))
    rows = []
    for chunk, lookahead in variants:
        if chunk + lookahead > models.motion_generator.args.n_motions:
            continue
        low = motion(replace(settings, mode="low-latency", chunk=chunk, lookahead=lookahead))
        angles = torch.stack([low.pitch - exact.pitch, low.yaw - exact.yaw, low.roll - exact.roll])
        rows.append([f"chunk {chunk}, lookahead {lookahead}", (chunk + lookahead) / exact.fps,
                     float((low.exp - exact.exp).abs().mean()), float(angles.abs().mean())])
    return rows


def agent_figures(models, face, settings: LiveSettings, repeats: int) -> tuple[float, float, float]:
    """(interrupt -> first idle frame, s; idle frames per second; largest A/V offset, s)."""
    rate, step = 48000, round(PUSH_SECONDS * 48000)
    delays, offsets = [], []
    speech = hp.speech_like(4.0, rate=rate, seed=4)

    def offset(batch) -> float:      # first frame's time vs the first sample it carries
        first_sample = round(batch.start * batch.sample_rate / batch.fps)
        return abs(first_sample / batch.sample_rate - batch.start / batch.fps)

    for _ in range(repeats):
        session = LiveSession(models, face, settings, sample_rate=rate)
        start = time.perf_counter()
        for i, lo in enumerate(range(0, len(speech), step)):
            while (wait := start + i * PUSH_SECONDS - time.perf_counter()) > 0:
                time.sleep(wait)
            frames = session.push(speech[lo:lo + step], rate)
            batch = next(frames, None)
            if batch is not None and time.perf_counter() - start > 1.0:
                session.interrupt()
                asked = time.perf_counter()
                offsets += [offset(b) for b in (batch, *frames)]
                idle = next(session.idle(settings.chunk))
                synchronize(models.device)
                delays.append(time.perf_counter() - asked)
                offsets.append(offset(idle))
                break
            offsets += [offset(b) for b in frames] if batch is None else \
                [offset(b) for b in (batch, *frames)]
    session = LiveSession(models, face, settings)
    list(session.idle(settings.chunk))                         # warm
    synchronize(models.device)
    start = time.perf_counter()
    count = sum(len(b) for b in session.idle(4 * settings.chunk * max(1, repeats)))
    synchronize(models.device)
    return statistics.median(delays), count / (time.perf_counter() - start), max(offsets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--full-size", action="store_true", help="the released architectures")
    parser.add_argument("--models-dir", help="real checkpoints (pretrained_weights) instead")
    parser.add_argument("--sampler", default="ddim", choices=("ddim", "ddpm"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4, help="frames per render chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live-seconds", type=float, default=8.0)
    parser.add_argument("--chunk", type=int, default=LiveSettings.chunk)
    parser.add_argument("--lookahead", type=int, default=LiveSettings.lookahead)
    parser.add_argument("--skip-consistency", action="store_true")
    args = parser.parse_args()

    models = build_models(args)
    args.steps = min(args.steps, models.motion_generator.diffusion_sched.schedule().num_steps)
    import skimage.data

    photo = skimage.data.astronaut()
    if not (args.full_size or args.models_dir):   # tiny networks: a small photo, so the paste is small too
        photo = photo[::4, ::4].copy()
    face = pipeline.extract_face(models, photo, face_backend="none" if not args.models_dir else "auto")
    print(f"device: {describe_device(models.device)}, {str(models.dtype).removeprefix('torch.')}; "
          f"{'full-size' if args.full_size or args.models_dir else 'tiny'} networks, "
          f"photo {photo.shape[1]}x{photo.shape[0]}; "
          f"sampler {args.sampler} {args.steps} steps; render chunk {args.batch_size}")

    settings = LiveSettings(motion=MotionSettings(sampler=args.sampler, steps=args.steps),
                            chunk=args.chunk, lookahead=args.lookahead, batch_size=args.batch_size)
    first_frame_seconds(models, face, hp.speech_like(1.0), args)     # warm-up (lazy init, caches)
    live_lags(models, face, hp.speech_like(1.0), settings)
    lags = sorted(live_lags(models, face, hp.speech_like(args.live_seconds, seed=1), settings))
    p50, p95 = lags[len(lags) // 2], lags[min(len(lags) - 1, int(0.95 * len(lags)))]
    print(f"\nlive, low-latency chunk {args.chunk} lookahead {args.lookahead}, "
          f"{args.live_seconds:g} s pushed in {PUSH_SECONDS * 1000:.0f} ms chunks at real-time pace:")
    print_table(["frames", "lag p50 (s)", "lag p95 (s)", "lag max (s)"],
                [[len(lags), p50, p95, lags[-1]]])

    if not args.skip_consistency:
        speech = hp.speech_like(min(args.live_seconds, 6.0), seed=2)
        print("\nlow-latency vs exact (mean |difference| of the committed motion):")
        print_table(["setting", "audio wait (s)", "exp", "angles (deg)"],
                    consistency(models, face, speech, settings, [(2, 1), (4, 0), (4, 2), (8, 2), (5, 5), (25, 5)]))

    interrupt, idle_fps, av = agent_figures(models, face, settings, args.repeats)
    print("\nagent (a 48 kHz reply pushed at real-time pace, interrupted after 1 s):")
    print_table(["interrupt -> first idle frame (ms)", "idle frames/s", "A/V offset max (ms)"],
                [[interrupt * 1000, idle_fps, av * 1000]])

    timings = {}
    for seconds in (5, 60):
        speech = hp.speech_like(seconds, seed=3)
        timings[seconds] = statistics.median(first_frame_seconds(models, face, speech, args)
                                             for _ in range(args.repeats))
    print("\noffline, speech -> first frame (median of", args.repeats, "runs):")
    print_table(["speech (s)", "first frame (s)"], [[s, t] for s, t in timings.items()])
    print(f"first frame 60 s / 5 s = {timings[60] / timings[5]:.2f}")
    print(f"agent: interrupt -> idle {interrupt * 1000:.0f} ms, idle {idle_fps:.1f} fps, "
          f"A/V offset {av * 1000:.3f} ms")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
