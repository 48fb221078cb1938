"""Reverse diffusion for one motion window: the official DDPM sampler and a DDIM one.

Both steppers are small pure functions of the same *denoiser* callable
``denoise(x_t [B, n, D], t: int) -> prediction [B, n, D]`` (the guided network
output for the current frames: the clean motion for target ``'sample'``, the
noise for ``'noise'``) and of a :class:`~joyvasa_core.dit.schedule.DiffusionSchedule`.

* :func:`ddpm_step` is the official ancestral step t -> t - 1 (posterior mean
  plus ``sigma_t * z``).
* :func:`ddim_step` jumps t -> s on any sub-grid; deterministic with ``eta=0``,
  and with ``eta=1`` on the full grid it is the same DDPM posterior step.

:func:`sample_window` runs a window through a :class:`MotionGenerator` with
classifier-free guidance (batch order ``[uncond (null_audio_feat), cond]``)
and the official optional dynamic thresholding of the network output. With
``cuda_graphs`` the network call of every step replays a CUDA graph
(:mod:`joyvasa_core.cuda_graph`): eager, a step is ~300 small kernel launches.
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal, get_args

import torch
from torch import Tensor

from ..cuda_graph import GraphReplayer, modules_signature
from ..devices import at_least_float32
from .denoiser import DenoisingNetwork, PeVariant
from .model import MotionGenerator
from .schedule import DiffusionSchedule

Denoiser = Callable[[Tensor, int], Tensor]
Target = Literal["sample", "noise"]
CfgMode = Literal["incremental", "independent"]
Sampler = Literal["ddpm", "ddim"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
NoiseSource = Callable[[int, tuple[int, ...]], Tensor] | Sequence[Tensor] | Tensor | None
Callback = Callable[[int, int, Tensor], None]
#: ``(ratio, min, max)`` of the official ``dynamic_threshold`` argument.
Threshold = tuple[float, float, float]


def ddpm_step(denoise: Denoiser, x_t: Tensor, t: int, schedule: DiffusionSchedule, z: Tensor | None,
              *, target: Target = "sample", flexibility: float = 0.0) -> Tensor:
    """One official ancestral step ``x_t -> x_{t-1}``, t in 1..T.

    target ``'sample'``: ``c0 * x_t + c1 * x0 + sigma_t * z`` with
    ``c0 = (1 - ab_{t-1}) sqrt(a_t) / (1 - ab_t)``, ``c1 = (1 - a_t) sqrt(ab_{t-1}) / (1 - ab_t)``;
    target ``'noise'``: ``(x_t - (1 - a_t) / sqrt(1 - ab_t) * eps) / sqrt(a_t) + sigma_t * z``.
    ``sigma = schedule.sigmas(flexibility)``; ``z`` None means zero noise (the official t = 1).
    """
    pred = denoise(x_t, t)
    alpha, alpha_bar, alpha_bar_prev = schedule.alphas[t], schedule.alpha_bars[t], schedule.alpha_bars[t - 1]
    if target == "sample":
        c0 = (1 - alpha_bar_prev) * torch.sqrt(alpha) / (1 - alpha_bar)
        c1 = (1 - alpha) * torch.sqrt(alpha_bar_prev) / (1 - alpha_bar)
        x_prev = c0 * x_t + c1 * pred
    elif target == "noise":
        c0 = 1 / torch.sqrt(alpha)
        c1 = (1 - alpha) / torch.sqrt(1 - alpha_bar)
        x_prev = c0 * (x_t - c1 * pred)
    else:
        raise ValueError(f"target must be 'sample' or 'noise', got {target!r}")
    if z is None:
        return x_prev
    return x_prev + schedule.sigmas(flexibility)[t] * z


def ddim_step(denoise: Denoiser, x_t: Tensor, t: int, s: int, schedule: DiffusionSchedule,
              *, target: Target = "sample", eta: float = 0.0, z: Tensor | None = None) -> Tensor:
    """One DDIM step ``x_t -> x_s`` (0 <= s < t <= T).

    ``x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - ab_s)/(1 - ab_t)) sqrt(1 - ab_t/ab_s)``; x0 and eps are
    the prediction and its complement under x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps.
    ``eta = 0`` is deterministic (``z`` unused); s = 0 returns x0.
    """
    if not 0 <= s < t:
        raise ValueError(f"ddim_step needs 0 <= s < t, got t={t}, s={s}")
    pred = denoise(x_t, t)
    ab_t, ab_s = schedule.alpha_bars[t], schedule.alpha_bars[s]
    if target == "sample":
        x0 = pred
        eps = (x_t - torch.sqrt(ab_t) * x0) / torch.sqrt(1 - ab_t)
    elif target == "noise":
        eps = pred
        x0 = (x_t - torch.sqrt(1 - ab_t) * eps) / torch.sqrt(ab_t)
    else:
        raise ValueError(f"target must be 'sample' or 'noise', got {target!r}")
    var = eta ** 2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
    x_s = torch.sqrt(ab_s) * x0 + torch.sqrt((1 - ab_s - var).clamp(min=0)) * eps
    if eta > 0 and s > 0:
        if z is None:
            raise ValueError("ddim_step with eta > 0 needs noise z")
        x_s = x_s + torch.sqrt(var) * z
    return x_s


def ddim_timesteps(num_steps: int, steps: int) -> list[int]:
    """Descending grid ``[T, ..., 0]`` with ``steps`` jumps, evenly spaced (rounded)."""
    if not 1 <= steps <= num_steps:
        raise ValueError(f"steps must lie in 1..{num_steps}, got {steps}")
    grid = torch.linspace(num_steps, 0, steps + 1, dtype=torch.float64).round().long().tolist()
    return grid


def cfg_combine(preds: Tensor, scales: Sequence[float], mode: CfgMode = "incremental") -> Tensor:
    """Classifier-free guidance over ``preds`` ``[1 + k, B, ...]`` (index 0 = unconditional).

    incremental: ``r0 + sum_i s_i (r_{i+1} - r_i)``; independent: ``r0 + sum_i s_i (r_{i+1} - r0)``.
    With one condition both are ``uncond + s (cond - uncond)``.
    """
    if preds.shape[0] != len(scales) + 1:
        raise ValueError(f"{preds.shape[0]} predictions for {len(scales)} guidance scales")
    if mode not in ("incremental", "independent"):
        raise ValueError(f"cfg_mode must be 'incremental' or 'independent', got {mode!r}")
    out = preds[0]
    for i, scale in enumerate(scales):
        base = preds[i] if mode == "incremental" else preds[0]
        out = out + scale * (preds[i + 1] - base)
    return out


def parse_threshold(value: object) -> Threshold | None:
    """The official ``dynamic_threshold`` argument: falsy (None, 0, []) = off, else three numbers."""
    if not value:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"dynamic_threshold must be (ratio, min, max) or falsy, got {value!r}")
    ratio, low, high = (float(v) for v in value)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"dynamic_threshold ratio must lie in [0, 1], got {ratio}")
    return ratio, low, high


def dynamic_threshold(preds: Tensor, threshold: Threshold) -> Tensor:
    """Clamp each row of ``preds`` ``[R, n, D]`` to ``[-s, s]``.

    ``s`` is the ``ratio`` quantile (linear interpolation) of the row's absolute
    values, clamped to ``[min, max]``; rows are the CFG entries, before guidance.
    """
    ratio, low, high = threshold
    s = torch.quantile(at_least_float32(preds.abs().flatten(1)), ratio, dim=1).clamp(low, high)
    s = s.to(preds.dtype)[:, None, None]
    return torch.clamp(preds, -s, s)


def _network(net: DenoisingNetwork, *inputs: Tensor, pe_variant: PeVariant) -> Tensor:
    return net(*inputs, pe_variant)


#: Per denoising network: (its parameters' signature, a graph replayer per pe_variant).
_GRAPHS: weakref.WeakKeyDictionary[DenoisingNetwork, tuple[tuple, dict[str, GraphReplayer]]] = \
    weakref.WeakKeyDictionary()


def graphed_network(net: DenoisingNetwork, pe_variant: PeVariant) -> Callable[..., Tensor]:
    """``net(motion, audio, prev_motion, prev_audio, step)`` replayed from CUDA graphs.

    One graph per input signature, kept with ``net`` until its parameters are
    replaced; eager for the first call of a signature, and for good if capture fails.
    """
    signature = modules_signature(net)
    cached = _GRAPHS.get(net)
    if cached is None or cached[0] != signature:
        cached = _GRAPHS[net] = (signature, {})
    replayer = cached[1].get(pe_variant)
    if replayer is None:
        replayer = cached[1][pe_variant] = GraphReplayer(partial(_network, pe_variant=pe_variant),
                                                         what="motion sampling")

    def run(*inputs: Tensor) -> Tensor:
        out = replayer((net,), inputs)
        return _network(net, *inputs, pe_variant=pe_variant) if out is None else out

    return run


def guided_denoiser(model: MotionGenerator, audio_feat: Tensor, prev_motion: Tensor, prev_audio: Tensor,
                    *, cfg_scale: float | None, cfg_mode: CfgMode = "incremental",
                    pe_variant: PeVariant = "head", threshold: Threshold | None = None,
                    cuda_graphs: bool = False) -> Denoiser:
    """The CFG denoiser of one window: ``denoise(x_t [B, n, D], t) -> [B, n, D]`` float32
    (float64 for a float64 model, the tests' reference).

    The network sees the batch ``[null audio; audio]`` (2B) with the context twice, in
    the model's dtype; ``threshold`` (see :func:`dynamic_threshold`) and the combination
    are done in float32. ``cfg_scale`` None: no guidance (the official ``cfg_cond=[]``),
    the network sees ``[audio]`` (B) only. ``cuda_graphs``: run the network through
    :func:`graphed_network`.
    """
    net = model.denoising_net
    network = graphed_network(net, pe_variant) if cuda_graphs else partial(_network, net,
                                                                          pe_variant=pe_variant)
    dtype = net.feature_proj.weight.dtype
    batch, n = audio_feat.shape[:2]
    scales = [] if cfg_scale is None else [cfg_scale]
    entries = [audio_feat] if cfg_scale is None else \
        [model.null_audio_feat.expand(batch, n, -1), audio_feat]
    k = len(entries)
    audio_in = torch.cat([e.to(dtype) for e in entries], dim=0)
    prev_motion_in = torch.cat([prev_motion] * k, dim=0).to(dtype)
    prev_audio_in = torch.cat([prev_audio] * k, dim=0).to(dtype)

    def denoise(x_t: Tensor, t: int) -> Tensor:
        step = torch.full((k * batch,), t, dtype=torch.long, device=x_t.device)
        out = at_least_float32(network(torch.cat([x_t] * k, dim=0).to(dtype), audio_in, prev_motion_in,
                                       prev_audio_in, step)[:, -n:])
        if threshold is not None:
            out = dynamic_threshold(out, threshold)
        return cfg_combine(out.view(k, batch, *out.shape[1:]), scales, cfg_mode)

    return denoise


def _noise_getter(noise: NoiseSource, generator: torch.Generator | None,
                  device: torch.device) -> Callable[[int, tuple[int, ...]], Tensor]:
    if callable(noise):
        return noise
    if noise is not None:
        return lambda k, shape: noise[k]
    return lambda k, shape: torch.randn(shape, generator=generator, device=device)


def sample_window(model: MotionGenerator, audio_feat: Tensor, prev_motion: Tensor | None,
                  prev_audio: Tensor | None, x_T: Tensor | None, *, cfg_scale: float | None,
                  cfg_mode: CfgMode = "incremental", sampler: Sampler = "ddpm",
                  steps: int | None = None, noise: NoiseSource = None,
                  generator: torch.Generator | None = None, pe_variant: PeVariant = "head",
                  flexibility: float = 0.0, eta: float = 0.0, threshold: Threshold | None = None,
                  cuda_graphs: bool = False, callback: Callback | None = None,
                  return_trajectory: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Generate the motion of one window.

    Args:
        model: the motion generator (its ``args.target`` selects x0 or noise prediction).
        audio_feat: ``[B, n, F]`` audio features of the window.
        prev_motion, prev_audio: ``[B, p, D]`` / ``[B, p, F]`` context (last frames of the
            previous window); None uses the model's start features.
        x_T: ``[B, n, D]`` starting noise; None draws ``randn`` with ``generator``.
        cfg_scale, cfg_mode: classifier-free guidance (one condition: audio); scale None =
            no guidance (the official ``cfg_cond=[]``).
        sampler: ``"ddpm"`` (official, all T steps; ``steps`` must be None or T) or
            ``"ddim"`` (``steps`` jumps, default T).
        noise: per-step noise: ``noise(step_index, shape)``, or an indexable of
            tensors ``[B, n, D]`` (``noise[k]``), or None (``randn`` with ``generator``).
            Step k (0 = first) draws noise unless it is the last step; DDPM draws
            T - 1 tensors, DDIM draws only when ``eta > 0``.
        pe_variant: ``"head"`` or ``"legacy"`` token positions (see ``denoiser``).
        flexibility: DDPM noise std between the posterior std (0, official) and sqrt(beta) (1).
        eta: DDIM stochasticity (0 = deterministic).
        threshold: the official ``dynamic_threshold`` ``(ratio, min, max)``, None = off
            (the official gen_motion_sequence passes 0: off).
        cuda_graphs: replay the network from CUDA graphs (same kernels, same
            numbers; ignored with a warning off CUDA).
        callback: ``callback(step_index, t, x_next)`` after each step.
        return_trajectory: also return ``[x_T, x_after_step_0, ...]`` (float32).

    Returns:
        ``[B, n, D]`` float32 motion (and the trajectory if asked); float64 for a float64 model.
    """
    schedule = model.diffusion_sched.schedule()
    num_steps = schedule.num_steps
    batch, n = audio_feat.shape[:2]
    if n != model.n_motions:
        raise ValueError(f"audio_feat has {n} frames, the model generates {model.n_motions} per window")
    start_motion, start_audio = model.start_context(batch)
    prev_motion = start_motion if prev_motion is None else prev_motion
    prev_audio = start_audio if prev_audio is None else prev_audio
    shape = (batch, n, model.motion_feat_dim)
    device = audio_feat.device
    if x_T is None:
        x_T = torch.randn(shape, generator=generator, device=device)
    draw = _noise_getter(noise, generator, device)
    if cuda_graphs and device.type != "cuda":
        warnings.warn(f"cuda_graphs=True needs a CUDA device, not {device}; sampling without graphs",
                      RuntimeWarning, stacklevel=2)
        cuda_graphs = False
    denoise = guided_denoiser(model, audio_feat, prev_motion, prev_audio, cfg_scale=cfg_scale,
                              cfg_mode=cfg_mode, pe_variant=pe_variant, threshold=threshold,
                              cuda_graphs=cuda_graphs)
    target = model.args.target

    if sampler == "ddpm":
        if steps not in (None, num_steps):
            raise ValueError(f"the DDPM sampler runs all {num_steps} steps; use sampler='ddim' for {steps}")
        grid = list(range(num_steps, -1, -1))
    elif sampler == "ddim":
        grid = ddim_timesteps(num_steps, steps or num_steps)
    else:
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")

    x = x_T.to(torch.promote_types(model.denoising_net.feature_proj.weight.dtype, torch.float32))
    trajectory = [x]
    last = len(grid) - 2
    for k, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
        wants_noise = k < last and (sampler == "ddpm" or eta > 0)
        z = draw(k, shape).to(device=device, dtype=x.dtype) if wants_noise else None
        if sampler == "ddpm":
            x = ddpm_step(denoise, x, t, schedule, z, target=target, flexibility=flexibility)
        else:
            x = ddim_step(denoise, x, t, s, schedule, target=target, eta=eta, z=z)
        if return_trajectory:
            trajectory.append(x)
        if callback is not None:
            callback(k, t, x)
    return (x, trajectory) if return_trajectory else x
