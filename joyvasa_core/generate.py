"""Speech -> head motion: the official multi-window loop of ``gen_motion_sequence``.

For a clip of any length (see :func:`joyvasa_core.audio.plan_windows`):

1. the waveform becomes mono 16 kHz, is padded (1280 before, 640 after) and cut
   into non-overlapping windows of ``n_motions`` frames, the last one padded;
2. windows are cut and their audio features computed in batches, each batch
   just before its windows are sampled (memory stays bounded for hour-long
   speech: no padded copy of the whole clip is made);
3. windows are sampled in order: window 0 starts from the model's start
   context, window w > 0 from the last ``n_prev_motions`` frames of window
   w - 1's motion and audio features; **every window starts from window 0's
   noise** ``x_T`` (as the official code does);
4. the last window's padded frames are dropped, the coefficients decoded
   with the motion template and the head pose EMA-smoothed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .audio import WindowPlan, plan_windows, prepare_waveform, window_batches
from .config import DEFAULT_CFG_SCALE
from .dit.audio_encoder import encode_audio
from .dit.model import MotionGenerator
from .dit.samplers import Threshold, sample_window
from .motion import MotionSequence, MotionTemplate, decode_motion, smooth_pose

#: Windows encoded together by the audio encoder.
ENCODE_BATCH = 8
Progress = Callable[[int, int], None]


def iter_window_features(model: MotionGenerator,
                         batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Batches of audio windows ``[b, S]`` (16 kHz) -> features ``[1, n_motions, feature_dim]``
    per window.

    Each batch goes through the audio encoder at once, lazily, so only one batch
    of windows, features and encoder activations is alive at a time.
    """
    for chunk in batches:
        yield from encode_audio(model, chunk, frame_num=model.n_motions).audio_feat.split(1)


def _injected_noise(noise: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, Callable]:
    """Split pre-drawn noise (call order: x_T, then every z) into x_T and a z supplier."""
    if len(noise) < 1:
        raise ValueError("noise must hold at least x_T (noise[0])")
    supply: Iterator[torch.Tensor] = iter(noise[1:])

    def draw(_step: int, shape: tuple[int, ...]) -> torch.Tensor:
        try:
            z = next(supply)
        except StopIteration:
            raise ValueError(f"pre-drawn noise exhausted after {len(noise)} tensors; the sampler "
                             "needs x_T plus one tensor per noisy step of every window") from None
        return z.reshape(shape)

    return noise[0], draw


@torch.no_grad()
def generate_motion(model: MotionGenerator, template: MotionTemplate,
                    waveform: torch.Tensor | np.ndarray, sample_rate: int, *,
                    seed: int = 0, cfg_scale: float | None = DEFAULT_CFG_SCALE, cfg_mode: str | None = None,
                    sampler: str = "ddpm", steps: int | None = None, smoothing: float = 1.0,
                    noise: torch.Tensor | Sequence[torch.Tensor] | None = None,
                    progress: Progress | None = None, pe_variant: str = "head",
                    threshold: Threshold | None = None, cuda_graphs: bool = False,
                    allow_silence: bool = False) -> MotionSequence:
    """Generate a :class:`MotionSequence` (one frame per ``1/fps`` s of audio) from speech.

    Args:
        model: motion generator with its audio encoder, in eval mode, on its device.
        template: de-normalisation statistics (``MotionTemplate.from_file``).
        waveform, sample_rate: any waveform :func:`joyvasa_core.audio.prepare_waveform` accepts.
        seed: seeds the noise (on the model's device) unless ``noise`` is given.
        cfg_scale, cfg_mode: classifier-free guidance (mode default: the model's, 'incremental');
            scale None = no guidance.
        sampler, steps: ``"ddpm"`` (official, all steps) or ``"ddim"`` with ``steps`` jumps.
        smoothing: EMA strength for the head pose (0 off, 1 official alpha 0.01).
        noise: pre-drawn noise in call order (``noise[0]`` = x_T ``[1, n_motions, D]``
            shared by all windows, then the z of window 0's steps, then window 1's, ...),
            for parity with a recorded run.
        progress: ``progress(done, total)`` after every denoising step.
        pe_variant: ``"head"`` (official HEAD) or ``"legacy"`` positional encoding.
        threshold: dynamic thresholding ``(ratio, min, max)`` of the network output; None
            = off, as the official gen_motion_sequence runs it.
        cuda_graphs: replay the denoiser from CUDA graphs (CUDA only; same numbers).
        allow_silence: accept an all-silent clip instead of raising ``AudioError``.
    """
    args = model.args
    param = next(model.parameters())
    device = param.device
    audio = prepare_waveform(waveform, sample_rate, allow_silence=allow_silence).to(device)
    plan: WindowPlan = plan_windows(audio.shape[0], fps=args.fps, n_motions=args.n_motions)

    shape = (1, args.n_motions, args.motion_feat_dim)
    generator = None
    if noise is None:
        generator = torch.Generator(device=device).manual_seed(seed)
        x_T, draw = torch.randn(shape, generator=generator, device=device), None
    else:
        x_T, draw = _injected_noise(noise)
        x_T = x_T.reshape(shape).to(device)

    steps_per_window = steps or model.diffusion_sched.schedule().num_steps
    total, done = plan.n_windows * steps_per_window, 0

    def on_step(_k: int, _t: int, _x: torch.Tensor) -> None:
        nonlocal done
        done += 1
        progress(done, total)

    coefs, prev_motion, prev_audio = [], None, None
    features = iter_window_features(model, window_batches(audio, plan, args.pad_mode, ENCODE_BATCH))
    for keep, feat in zip(plan.frames_per_window, features):
        motion = sample_window(model, feat, prev_motion, prev_audio, x_T, cfg_scale=cfg_scale,
                               cfg_mode=cfg_mode or args.cfg_mode, sampler=sampler, steps=steps,
                               noise=draw, generator=generator, pe_variant=pe_variant, threshold=threshold,
                               cuda_graphs=cuda_graphs,
                               callback=on_step if progress else None)
        prev_motion = motion[:, -args.n_prev_motions:]
        prev_audio = feat[:, -args.n_prev_motions:]
        coefs.append(motion[0, :keep])
    seq = decode_motion(torch.cat(coefs).float(), template, fps=args.fps)
    return smooth_pose(seq, strength=smoothing)
