"""Parity handlers for the motion generator: denoiser, schedules, one sampler step, full sampling.

Models are built from the sidecar ``config`` (the checkpoint args) and filled with
the fill rule; the constructor-built buffers (alignment mask, TE/PE tables,
schedule) are left as built. Every injected noise tensor is read from the fixture.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor

from ..dit.args import MotionGeneratorArgs
from ..dit.model import MotionGenerator, build_motion_generator
from ..dit.samplers import ddpm_step, guided_denoiser, sample_window
from ..dit.schedule import DiffusionSchedule
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
        prev_motion = get(f"{prefix}_motion_feat").expand(batch, -1, -1)
        prev_audio = get(f"{prefix}_audio_feat").expand(batch, -1, -1)
        step = torch.full((batch,), int(m.group(1)), dtype=torch.long, device=device)
        out[name] = net(motion, audio, prev_motion, prev_audio, step,
                        "legacy" if m.group(3) else "head")
    out["alignment_mask"] = net.alignment_mask
    return out


@handler("dit_schedules")
def dit_schedules(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    defaults = fx.meta.get("defaults", {})
    out = {}
    for mode in fx.meta["modes"]:
        for n in fx.meta["steps"]:
            tables = DiffusionSchedule.build(n, mode, **defaults).tables()
            out.update({f"{mode}{n}.{k}": v for k, v in tables.items()})
    return out


@handler("dit_sample_step")
def dit_sample_step(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    model = filled_generator(fx, device, with_audio_encoder=False)
    schedule = model.diffusion_sched.schedule()
    x_t, audio = fx.tensor("motion_at_t").to(device), fx.tensor("audio_feat").to(device)
    prev_motion, prev_audio = model.start_context(x_t.shape[0])
    denoise = guided_denoiser(model, audio, prev_motion, prev_audio,
                              cfg_scale=fx.meta["cfg_scale"], cfg_mode=fx.meta["cfg_mode"])
    out = {}
    for name in fx.names("output"):
        m = re.fullmatch(r"(sample|noise)\.t(\d+)\.motion_next", name)
        if m is None:
            continue
        target, t = m.group(1), int(m.group(2))
        z = fx.tensor(f"{target}.t{t}.z").to(device)
        out[name] = ddpm_step(denoise, x_t, t, schedule, z, target=target,
                              flexibility=fx.meta.get("flexibility", 0))
    return out


@handler("dit_sample_full")
def dit_sample_full(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    from ..dit.audio_encoder import encode_audio

    model = filled_generator(fx, device, with_audio_encoder=True)
    get = lambda name: fx.tensor(name).to(device)  # noqa: E731
    settings = dict(cfg_scale=fx.meta["cfg_scale"], cfg_mode=fx.meta["cfg_mode"], sampler="ddpm")
    x_T = get("w0.motion_at_T")
    feat0 = encode_audio(model, get("audio_w0")).audio_feat
    _, traj = sample_window(model, feat0, None, None, x_T, noise=get("w0.z"),
                            return_trajectory=True, **settings)
    feat1 = encode_audio(model, get("audio_w1")).audio_feat
    motion1 = sample_window(model, feat1, get("w1.prev_motion_feat"), get("w1.prev_audio_feat"), x_T,
                            noise=get("w1.z"), **settings)
    return {"w0.traj": torch.stack(traj), "w0.audio_feat": feat0,
            "w1.motion": motion1, "w1.audio_feat": feat1}
