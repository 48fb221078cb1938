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
4. each window's frames (the last window's without its padded frames) are
   decoded with the motion template and the head pose EMA-smoothed causally,
   and yielded at once (:func:`iter_motion`); :func:`generate_motion` joins them.

:class:`WindowSampler` holds what links one window to the next; live mode
(:mod:`joyvasa_core.live`) drives it with windows cut from pushed audio.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .audio import WindowPlan, plan_windows, prepare_waveform, window_batches
from .dit.audio_encoder import encode_audio
from .dit.model import MotionGenerator
from .dit.samplers import Threshold, sample_window
from .motion import MotionSequence, MotionStream, MotionTemplate, PoseEMA, decode_motion
from .settings import MotionSettings

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


class WindowSampler:
    """Samples consecutive motion windows of one stream and decodes what each one commits.

    It carries what links a window to the next: the starting noise ``x_T``
    (shared by every window, as the official code does), the random generator
    or pre-drawn noise, the context (the last ``n_prev_motions`` committed
    frames' coefficients and audio features) and the pose EMA state. Offline
    every window commits all its frames (the last one its unpadded frames);
    live low-latency mode commits only the first ``keep`` frames of each window.

    Args: as :func:`generate_motion`; the noise is drawn on the model's device.
    """

    def __init__(self, model: MotionGenerator, template: MotionTemplate,
                 settings: MotionSettings = MotionSettings(), *, cfg_mode: str | None = None,
                 noise: torch.Tensor | Sequence[torch.Tensor] | None = None,
                 threshold: Threshold | None = None,
                 on_step: Callable[[int, int, torch.Tensor], None] | None = None):
        args = model.args
        self.model, self.template, self.fps = model, template, args.fps
        self.n_prev = args.n_prev_motions
        device = next(model.parameters()).device
        shape = (1, args.n_motions, args.motion_feat_dim)
        self.generator, self.draw = None, None
        if noise is None:
            self.generator = torch.Generator(device=device).manual_seed(settings.seed)
            self.x_T = torch.randn(shape, generator=self.generator, device=device)
        else:
            x_T, self.draw = _injected_noise(noise)
            self.x_T = x_T.reshape(shape).to(device)
        self.options = dict(cfg_scale=settings.cfg_scale, cfg_mode=cfg_mode or args.cfg_mode,
                            sampler=settings.sampler, steps=settings.steps,
                            pe_variant=settings.pe_variant, threshold=threshold,
                            cuda_graphs=settings.cuda_graphs, callback=on_step)
        self.steps_per_window = settings.steps or model.diffusion_sched.schedule().num_steps
        self.prev_motion: torch.Tensor | None = None   # [1, <= n_prev, D]
        self.prev_audio: torch.Tensor | None = None    # [1, <= n_prev, F]
        self.ema = PoseEMA(strength=settings.smoothing)
        self.pose_scale, self.expression_scale = settings.pose_scale, settings.expression_scale
        self.reference: MotionSequence | None = None   # frame 0 of the stream, unscaled

    @torch.no_grad()
    def __call__(self, feat: torch.Tensor, keep: int) -> MotionSequence:
        """Sample the window with audio features ``feat`` ``[1, n_motions, F]`` and commit its first
        ``keep`` frames: they are returned decoded, smoothed and rescaled (``pose_scale``,
        ``expression_scale`` against frame 0 of the stream), and they end the next window's context."""
        motion = sample_window(self.model, feat, self.prev_motion, self.prev_audio, self.x_T,
                               noise=self.draw, generator=self.generator, **self.options)
        committed, audio = motion[:, :keep], feat[:, :keep]
        if keep < self.n_prev:   # the context reaches back past this window
            prev_motion, prev_audio = self.model.start_context(1) if self.prev_motion is None \
                else (self.prev_motion, self.prev_audio)
            committed = torch.cat([prev_motion.to(committed.dtype), committed], 1)
            audio = torch.cat([prev_audio.to(audio.dtype), audio], 1)
        self.prev_motion, self.prev_audio = committed[:, -self.n_prev:], audio[:, -self.n_prev:]
        chunk = self.ema(decode_motion(motion[0, :keep].float(), self.template, fps=self.fps))
        if self.reference is None:
            self.reference = chunk[:1]
        return chunk.rescaled(pose=self.pose_scale, expression=self.expression_scale,
                              reference=self.reference)


def iter_motion(model: MotionGenerator, template: MotionTemplate,
                waveform: torch.Tensor | np.ndarray, sample_rate: int,
                settings: MotionSettings = MotionSettings(), *,
                progress: Progress | None = None, allow_silence: bool = False,
                **sampler_options) -> MotionStream:
    """The motion of speech as a stream: one decoded, smoothed chunk per window, yielded as
    soon as the window is sampled (the first after one window's work, whatever the length).

    The audio is checked and the window plan made at once (so ``n_frames`` and
    ``windows`` are known and bad audio raises here); sampling happens as the
    stream is read. Arguments as :func:`generate_motion` (``sampler_options``:
    its ``cfg_mode``, ``noise`` and ``threshold``); the chunks joined equal its
    result exactly.
    """
    args = model.args
    device = next(model.parameters()).device
    audio = prepare_waveform(waveform, sample_rate, allow_silence=allow_silence).to(device)
    plan: WindowPlan = plan_windows(audio.shape[0], fps=args.fps, n_motions=args.n_motions)
    done = 0

    def on_step(_k: int, _t: int, _x: torch.Tensor) -> None:
        nonlocal done
        done += 1
        progress(done, total)

    sampler = WindowSampler(model, template, settings, on_step=on_step if progress else None,
                            **sampler_options)
    total = plan.n_windows * sampler.steps_per_window

    @torch.no_grad()
    def chunks() -> Iterator[MotionSequence]:
        features = iter_window_features(model, window_batches(audio, plan, args.pad_mode, ENCODE_BATCH))
        for keep, feat in zip(plan.frames_per_window, features):
            yield sampler(feat, keep)

    return MotionStream(chunks(), fps=args.fps, n_frames=plan.n_frames, windows=plan.n_windows)


def generate_motion(model: MotionGenerator, template: MotionTemplate,
                    waveform: torch.Tensor | np.ndarray, sample_rate: int,
                    settings: MotionSettings = MotionSettings(), *, cfg_mode: str | None = None,
                    noise: torch.Tensor | Sequence[torch.Tensor] | None = None,
                    progress: Progress | None = None, threshold: Threshold | None = None,
                    allow_silence: bool = False) -> MotionSequence:
    """Generate a :class:`MotionSequence` (one frame per ``1/fps`` s of audio) from speech:
    all of :func:`iter_motion`'s chunks joined.

    Args:
        model: motion generator with its audio encoder, in eval mode, on its device.
        template: de-normalisation statistics (``MotionTemplate.from_file``).
        waveform, sample_rate: any waveform :func:`joyvasa_core.audio.prepare_waveform` accepts.
        settings: seed (unless ``noise`` is given), guidance scale (None = no guidance),
            sampler and steps, pose smoothing, pose/expression scale, positional
            encoding, CUDA graphs (:class:`~joyvasa_core.settings.MotionSettings`).
        cfg_mode: guidance mode (default: the model's, 'incremental').
        noise: pre-drawn noise in call order (``noise[0]`` = x_T ``[1, n_motions, D]``
            shared by all windows, then the z of window 0's steps, then window 1's, ...),
            for parity with a recorded run.
        progress: ``progress(done, total)`` after every denoising step.
        threshold: dynamic thresholding ``(ratio, min, max)`` of the network output; None
            = off, as the official gen_motion_sequence runs it.
        allow_silence: accept an all-silent clip instead of raising ``AudioError``.
    """
    return iter_motion(model, template, waveform, sample_rate, settings, cfg_mode=cfg_mode,
                       noise=noise, progress=progress, threshold=threshold,
                       allow_silence=allow_silence).collect()
