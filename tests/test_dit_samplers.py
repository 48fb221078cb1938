"""Samplers: oracle identities, CFG, tiny-model sampling behaviour, parity with the official loop."""
from __future__ import annotations

import pytest
import torch

from conftest import PARITY
from helpers_precision import U, U64, assert_float32_close, to_float64
from joyvasa_core.dit.args import MotionGeneratorArgs
from joyvasa_core.dit.model import build_motion_generator
from joyvasa_core.dit.samplers import (cfg_combine, ddim_step, ddim_timesteps, ddpm_step,
                                       sample_window)
from joyvasa_core.dit.schedule import DiffusionSchedule
from joyvasa_core.fill import fill_module_
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.parity.runner import run_fixture

SHAPE = (2, 8, 6)


def oracle(x0: torch.Tensor, schedule: DiffusionSchedule, target: str):
    """A perfect denoiser for a data distribution concentrated on ``x0``."""
    def denoise(x_t, t):
        if target == "sample":
            return x0
        ab = schedule.alpha_bars[t].double()
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
    return denoise


def smooth_denoiser(x_t, t):
    """Some deterministic non-trivial prediction."""
    return torch.tanh(0.7 * x_t + 0.01 * t) - 0.2 * x_t.roll(1, dims=1)


def exact_schedule(n: int) -> DiffusionSchedule:
    """Self-consistent float64 cosine tables (ab_t = ab_{t-1} a_t exactly; the float32
    official tables satisfy it only to 1e-7, which near t = 1 matters for the identity)."""
    betas = DiffusionSchedule.build(n, "cosine").betas.double()
    alphas = 1 - betas
    bars = torch.cumprod(alphas, 0)
    inflex = torch.zeros_like(betas)
    inflex[1:] = ((1 - bars[:-1]) / (1 - bars[1:]) * betas[1:]).sqrt()
    return DiffusionSchedule(betas, alphas, bars, betas.sqrt(), inflex)


# --------------------------------------------------------------------------- oracle identities


@pytest.mark.parametrize("target", ["sample", "noise"])
@pytest.mark.parametrize("steps", [1, 3, 7, 50])
def test_ddim_with_oracle_returns_x0(target, steps):
    schedule = DiffusionSchedule.build(50, "cosine")
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    grid = ddim_timesteps(50, steps)
    assert grid[0] == 50 and grid[-1] == 0 and len(grid) == steps + 1
    den = oracle(x0, schedule, target)
    x_T = x
    for t, s in zip(grid[:-1], grid[1:]):
        x = ddim_step(den, x, t, s, schedule, target=target)
    # 'sample': the last step weighs x0 by sqrt(ab_0) = 1 and eps by 0: exact. 'noise': the oracle's
    # float64 sqrt(ab) against the step's float32-rounded one (U relative), divided by sqrt(ab_T)
    atol = 0.0 if target == "sample" else \
        2 * U * (x_T.abs().max() + x0.abs().max()).item() / schedule.alpha_bars[50].sqrt().item()
    torch.testing.assert_close(x, x0, atol=atol, rtol=0)


@pytest.mark.parametrize("target", ["sample", "noise"])
@pytest.mark.parametrize("t", [2, 17, 250, 480])
def test_ddim_eta1_on_full_grid_is_the_ddpm_posterior_step(target, t):
    schedule = exact_schedule(500)
    g = torch.Generator().manual_seed(t)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    z = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    ours = ddim_step(smooth_denoiser, x, t, t - 1, schedule, target=target, eta=1.0, z=z)
    official = ddpm_step(smooth_denoiser, x, t, schedule, z, target=target)
    # one algebraic identity, two float64 formulas: a few float64 roundings of |x|, amplified by
    # the cancellation in 1 − ab_{t-1} (the posterior variance's numerator)
    scale = (x.abs().max() + z.abs().max() + 1).item() / (1 - schedule.alpha_bars[t - 1]).item()
    torch.testing.assert_close(ours, official, atol=16 * U64 * scale, rtol=0)
    # and with eta = 0 it is a different (deterministic) update
    assert (ddim_step(smooth_denoiser, x, t, t - 1, schedule, target=target) - official).abs().max() > 1e-3


def test_ddpm_last_step_without_noise_is_x0_for_sample_target():
    schedule = DiffusionSchedule.build(10, "cosine")
    x0, x = torch.randn(SHAPE), torch.randn(SHAPE)
    torch.testing.assert_close(ddpm_step(lambda x_t, t: x0, x, 1, schedule, None), x0)


def test_cfg_modes():
    r = torch.stack([torch.full((2,), v) for v in (1.0, 2.0, 5.0)])
    torch.testing.assert_close(cfg_combine(r[:2], [2.8]), r[0] + 2.8 * (r[1] - r[0]))
    torch.testing.assert_close(cfg_combine(r[:2], [2.8], "independent"), cfg_combine(r[:2], [2.8]))
    torch.testing.assert_close(cfg_combine(r, [2.0, 3.0]), torch.full((2,), 1 + 2 * 1 + 3 * 3.0))
    torch.testing.assert_close(cfg_combine(r, [2.0, 3.0], "independent"), torch.full((2,), 1 + 2 * 1 + 3 * 4.0))
    torch.testing.assert_close(cfg_combine(r[:2], [1.0]), r[1])
    with pytest.raises(ValueError):
        cfg_combine(r, [2.0])
    with pytest.raises(ValueError):
        cfg_combine(r[:2], [2.0], "additive")


# --------------------------------------------------------------------------- tiny model


@pytest.fixture(scope="module")
def tiny():
    args = MotionGeneratorArgs(motion_feat_dim=6, n_motions=8, n_prev_motions=3, feature_dim=16,
                               n_diff_steps=6, n_heads=2, n_layers=2)
    model = fill_module_(build_motion_generator(args, None))
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 16, generator=g)
    x_T = torch.randn(2, 8, 6, generator=g)
    z = torch.randn(5, 2, 8, 6, generator=g)
    return model, feats, x_T, z


def test_ddpm_sampling_uses_the_given_noise_in_order(tiny):
    model, feats, x_T, z = tiny
    calls = []
    with torch.no_grad():
        out, traj = sample_window(model, feats, None, None, x_T, cfg_scale=2.0, noise=z,
                                  callback=lambda k, t, x: calls.append((k, t)), return_trajectory=True)
        via_fn = sample_window(model, feats, None, None, x_T, cfg_scale=2.0,
                               noise=lambda k, shape: z[k])
        other = sample_window(model, feats, None, None, x_T, cfg_scale=2.0, noise=z.flip(0))
    assert out.shape == x_T.shape and out.dtype == torch.float32
    assert calls == [(k, 6 - k) for k in range(6)]
    assert len(traj) == 7 and torch.equal(traj[0], x_T) and torch.equal(traj[-1], out)
    assert torch.equal(out, via_fn)
    assert (out - other).abs().max() > 1e-4


def test_ddpm_matches_manual_official_loop(tiny):
    """The window sampler = CFG batch [null, audio] + official step, with prev = start features."""
    model, feats, x_T, z = tiny
    sched = model.diffusion_sched.schedule()
    net, n, b = model.denoising_net, 8, 2
    audio_in = torch.cat([model.null_audio_feat.expand(b, n, -1), feats])
    prev_m = torch.cat([model.start_motion_feat.expand(b, -1, -1)] * 2)
    prev_a = torch.cat([model.start_audio_feat.expand(b, -1, -1)] * 2)
    with torch.no_grad():
        x = x_T
        for k, t in enumerate(range(6, 0, -1)):
            res = net(torch.cat([x, x]), audio_in, prev_m, prev_a, torch.full((2 * b,), t))[:, -n:]
            theta = res[:b] + 1.5 * (res[b:] - res[:b])
            a, ab, abp = sched.alphas[t], sched.alpha_bars[t], sched.alpha_bars[t - 1]
            mean = (1 - abp) * a.sqrt() / (1 - ab) * x + (1 - a) * abp.sqrt() / (1 - ab) * theta
            x = mean + sched.sigmas_inflex[t] * (z[k] if t > 1 else 0)
        ours = sample_window(model, feats, None, None, x_T, cfg_scale=1.5, noise=z)
        ours64 = sample_window(to_float64(model), feats.double(), None, None, x_T.double(), cfg_scale=1.5,
                               noise=z.double())
    assert ours64.dtype == torch.float64
    assert_float32_close(ours, x, ours64)      # same math, coefficients grouped otherwise


def test_batch_items_are_independent(tiny):
    model, feats, x_T, z = tiny
    with torch.no_grad():
        both = sample_window(model, feats, None, None, x_T, cfg_scale=2.0, sampler="ddim", steps=3)
        first = sample_window(model, feats[:1], None, None, x_T[:1], cfg_scale=2.0, sampler="ddim", steps=3)
        first64 = sample_window(to_float64(model), feats[:1].double(), None, None, x_T[:1].double(),
                                cfg_scale=2.0, sampler="ddim", steps=3)
    assert_float32_close(both[:1], first, first64)


def test_ddim_is_deterministic_and_seeded_noise_reproducible(tiny):
    model, feats, x_T, _ = tiny
    calls = []
    with torch.no_grad():
        a = sample_window(model, feats, None, None, x_T, cfg_scale=2.0, sampler="ddim", steps=3,
                          generator=torch.Generator().manual_seed(1), callback=lambda k, t, x: calls.append(t))
        b = sample_window(model, feats, None, None, x_T, cfg_scale=2.0, sampler="ddim", steps=3,
                          generator=torch.Generator().manual_seed(2))
        c1 = sample_window(model, feats, None, None, None, cfg_scale=2.0, generator=torch.Generator().manual_seed(3))
        c2 = sample_window(model, feats, None, None, None, cfg_scale=2.0, generator=torch.Generator().manual_seed(3))
        legacy = sample_window(model, feats, None, None, x_T, cfg_scale=2.0, sampler="ddim", steps=3,
                               pe_variant="legacy")
    assert calls == [6, 4, 2]
    assert torch.equal(a, b) and torch.equal(c1, c2)
    assert (legacy - a).abs().max() > 1e-4


def test_sampler_argument_errors(tiny):
    model, feats, x_T, _ = tiny
    with pytest.raises(ValueError, match="DDPM sampler runs all"):
        sample_window(model, feats, None, None, x_T, cfg_scale=2.0, steps=3)
    with pytest.raises(ValueError, match="frames"):
        sample_window(model, feats[:, :5], None, None, x_T, cfg_scale=2.0)
    with pytest.raises(ValueError, match="sampler"):
        sample_window(model, feats, None, None, x_T, cfg_scale=2.0, sampler="euler")


# --------------------------------------------------------------------------- parity


@pytest.mark.slow
def test_sample_step_parity():
    fx = Fixture.open(PARITY, "dit_sample_step")
    results = run_fixture(fx, torch.device("cpu"))
    bad = [(r.output, r.max_abs_err, r.note) for r in results if not r.ok]
    assert len(results) == len(fx.names("output")) and not bad, bad


@pytest.mark.slow
def test_sample_full_parity_from_features():
    """Window 0 of the official sample() (all T steps, stored trajectory) from the stored
    audio features; the encoder path and window chaining are covered by the
    ``dit_sample_full`` handler in the parity runner."""
    fx = Fixture.open(PARITY, "dit_sample_full")
    model = fill_module_(build_motion_generator(MotionGeneratorArgs.from_checkpoint_args(fx.config), None))
    with torch.no_grad():
        _, traj = sample_window(model, fx.tensor("w0.audio_feat"), None, None, fx.tensor("w0.motion_at_T"),
                                cfg_scale=fx.meta["cfg_scale"], cfg_mode=fx.meta["cfg_mode"],
                                noise=fx.tensor("w0.z"), return_trajectory=True)
    torch.testing.assert_close(torch.stack(traj), fx.tensor("w0.traj"), atol=1e-4, rtol=1e-4)
