"""Parity handlers for the motion generator: denoiser, schedules, one sampler step, full sampling.

Models are built from the sidecar ``config`` (the checkpoint args) and filled with
the fill rule; the constructor-built buffers (alignment mask, TE/PE tables,
schedule) are left as built. Every injected noise tensor is read from the fixture;
the sampling settings (``cfg_scale``, ``cfg_mode``, ``flexibility``,
``dynamic_threshold``) come from the sidecar, and which steps / windows /
schedules to compute from the output names.
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from ..dit.args import MotionGeneratorArgs
from ..dit.model import MotionGenerator, build_motion_generator
from ..dit.samplers import ddpm_step, guided_denoiser, parse_threshold, sample_window
from ..dit.schedule import SCHEDULE_BUFFERS, DiffusionSchedule
from ..fill import fill_module_
from .fixture import Fixture
from .registry import handler


def filled_generator(fx: Fixture, device: torch.device, with_audio_encoder: bool) -> MotionGenerator:
    """The sidecar-config motion generator, every parameter filled, on ``device``."""
    args = MotionGeneratorArgs.from_checkpoint_args(fx.config)
    encoder = None
    if with_audio_encoder:
        from ..dit.audio_encoder import build_audio_encoder
        encoder = build_audio_encoder(args.audio_model)
    model = build_motion_generator(args, encoder)
    return fill_module_(model).to(device)


def guidance_settings(fx: Fixture, model: MotionGenerator) -> dict[str, Any]:
    """``cfg_scale``, ``cfg_mode`` and ``dynamic_threshold`` of the official ``sample()`` call,
    from the sidecar.

    ``cfg_cond`` (a list or a comma-separated string; missing = the model's guiding
    conditions, audio) without ``'audio'`` turns guidance off (``cfg_scale`` None);
    otherwise ``cfg_scale`` is required (a number, or a one-element list: one
    condition, audio). A missing ``cfg_mode`` means the model's default, and a
    missing or falsy ``dynamic_threshold`` means none, as in the official code.
    """
    conditions = fx.meta.get("cfg_cond")
    if conditions is None:
        conditions = model.args.guiding_conditions
    elif isinstance(conditions, str):
        conditions = [c for c in conditions.split(",") if c]
    scale = None
    if "audio" in conditions:
        if "cfg_scale" not in fx.meta:
            raise KeyError(f"fixture {fx.name}: the sidecar must give 'cfg_scale' (the official sample() argument)")
        scale = fx.meta["cfg_scale"]
        if isinstance(scale, list):
            if len(scale) != 1:
                raise ValueError(f"fixture {fx.name}: cfg_scale {scale} has one value per condition; "
                                 "JoyVASA guides on audio only")
            scale = scale[0]
        scale = float(scale)
    return {"cfg_scale": scale, "cfg_mode": fx.meta.get("cfg_mode") or model.args.cfg_mode,
            "threshold": parse_threshold(fx.meta.get("dynamic_threshold"))}


def cfg_batch(context: Tensor, batch: int) -> Tensor:
    """Context ``[b, p, C]`` for a CFG batch of ``batch`` rows: as is, expanded from 1, or
    repeated (the official ``cat([prev] * n_entries)``)."""
    if context.shape[0] == batch:
        return context
    if batch % context.shape[0]:
        raise ValueError(f"context batch {context.shape[0]} does not divide the denoiser batch {batch}")
    return context.repeat(batch // context.shape[0], 1, 1)


@handler("dit_denoiser")
def dit_denoiser(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    net = filled_generator(fx, device, with_audio_encoder=False).denoising_net
    get = lambda name: fx.tensor(name).to(device)  # noqa: E731
    motion, audio = get("motion_feat"), get("audio_feat")
    batch = motion.shape[0]
    out: dict[str, Tensor] = {}
    for name in fx.names("output"):
        m = re.fullmatch(r"out_t(\d+)(_prev)?(_legacy_pe)?", name)
        if m is None:
            continue
        prefix = "prev" if m.group(2) else "start"
        prev_motion = cfg_batch(get(f"{prefix}_motion_feat"), batch)
        prev_audio = cfg_batch(get(f"{prefix}_audio_feat"), batch)
        step = torch.full((batch,), int(m.group(1)), dtype=torch.long, device=device)
        out[name] = net(motion, audio, prev_motion, prev_audio, step,
                        "legacy" if m.group(3) else "head")
    if net.alignment_mask is not None:
        out["alignment_mask"] = net.alignment_mask
    return out


_SCHEDULE_NAME = re.compile(rf"([a-z]+)(\d+)\.({'|'.join(SCHEDULE_BUFFERS)})")


@handler("dit_schedules")
def dit_schedules(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    """Every ``<mode><n>.<table>`` output, with the sidecar's ``defaults`` (beta_1, beta_T, s)."""
    defaults = fx.meta.get("defaults", {})
    wanted = {(m.group(1), int(m.group(2))) for m in map(_SCHEDULE_NAME.fullmatch, fx.names("output")) if m}
    out = {}
    for mode, n in sorted(wanted):
        tables = DiffusionSchedule.build(n, mode, **defaults).tables()
        out.update({f"{mode}{n}.{k}": v for k, v in tables.items()})
    return out


@handler("dit_sample_step")
def dit_sample_step(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    model = filled_generator(fx, device, with_audio_encoder=False)
    schedule = model.diffusion_sched.schedule()
    x_t, audio = fx.tensor("motion_at_t").to(device), fx.tensor("audio_feat").to(device)
    prev_motion, prev_audio = model.start_context(x_t.shape[0])
    denoise = guided_denoiser(model, audio, prev_motion, prev_audio, **guidance_settings(fx, model))
    out = {}
    for name in fx.names("output"):
        m = re.fullmatch(r"(sample|noise)\.t(\d+)\.motion_next", name)
        if m is None:
            continue
        target, t = m.group(1), int(m.group(2))
        z = fx.tensor(f"{target}.t{t}.z").to(device)
        out[name] = ddpm_step(denoise, x_t, t, schedule, z, target=target,
                              flexibility=float(fx.meta.get("flexibility", 0)))
    return out


@handler("dit_sample_full")
def dit_sample_full(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    """Windows ``w<k>`` in order: ``audio_w<k>``, ``w<k>.z``, optional ``w<k>.prev_*_feat`` (else
    the start context) and ``w<k>.motion_at_T`` (else window 0's, as gen_motion_sequence reuses it)."""
    from ..dit.audio_encoder import encode_audio

    model = filled_generator(fx, device, with_audio_encoder=True)
    get = lambda name: fx.tensor(name).to(device) if name in fx.specs else None  # noqa: E731
    settings = dict(**guidance_settings(fx, model), sampler="ddpm",
                    flexibility=float(fx.meta.get("flexibility", 0)))
    windows = sorted({int(m.group(1)) for m in (re.fullmatch(r"audio_w(\d+)", n) for n in fx.specs) if m})
    if not windows:
        raise KeyError(f"fixture {fx.name}: no 'audio_w<k>' input")
    x_T_first = get(f"w{windows[0]}.motion_at_T")
    out: dict[str, Tensor] = {}
    for w in windows:
        x_T = get(f"w{w}.motion_at_T")
        x_T = x_T_first if x_T is None else x_T
        if x_T is None:
            raise KeyError(f"fixture {fx.name}: window {w} has no motion_at_T (nor has window {windows[0]})")
        feat = encode_audio(model, get(f"audio_w{w}")).audio_feat
        motion, traj = sample_window(model, feat, get(f"w{w}.prev_motion_feat"), get(f"w{w}.prev_audio_feat"),
                                     x_T, noise=fx.tensor(f"w{w}.z").to(device), return_trajectory=True, **settings)
        out.update({f"w{w}.traj": torch.stack(traj), f"w{w}.motion": motion, f"w{w}.audio_feat": feat})
    return out
