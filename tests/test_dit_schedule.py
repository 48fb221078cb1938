"""DiffusionSchedule: parity with the official tables, identities, checkpoint buffers."""
from __future__ import annotations

import pytest
import torch

from joyvasa_core.dit.schedule import SCHEDULE_BUFFERS, DiffusionSchedule, ScheduleBuffers
from joyvasa_core.parity.fixture import Fixture
from conftest import PARITY
from helpers_precision import U, gamma


@pytest.fixture(scope="module")
def fx() -> Fixture:
    return Fixture.open(PARITY, "dit_schedules")


def test_every_mode_matches_official(fx):
    defaults = fx.meta.get("defaults", {})
    for mode in fx.meta["modes"]:
        for n in fx.meta["steps"]:
            sched = DiffusionSchedule.build(n, mode, **defaults)
            assert sched.num_steps == n
            for name, ours in sched.tables().items():
                ref = fx.tensor(f"{mode}{n}.{name}")
                assert ours.dtype == torch.float32 and ours.shape == ref.shape == (n + 1,)
                torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6, msg=f"{mode}{n}.{name}")


def test_sample_full_buffers_are_the_cosine_schedule():
    fx = Fixture.open(PARITY, "dit_sample_full")
    for n in (fx.config["n_diff_steps"], 500):
        sched = DiffusionSchedule.build(n, "cosine")
        for name in SCHEDULE_BUFFERS:
            torch.testing.assert_close(getattr(sched, name), fx.tensor(f"sched{n}.{name}"),
                                       atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "quadratic", "sigmoid", "cosine"])
def test_identities(mode):
    s = DiffusionSchedule.build(37, mode)
    assert s.betas[0] == 0 and s.alpha_bars[0] == 1 and s.sigmas_inflex[1] == 0
    assert (s.alpha_bars[1:] < s.alpha_bars[:-1]).all()
    cum = torch.cumprod(s.alphas.double(), 0)
    # exp of a float32 sequential sum of t+1 float32 logs: relative error ≤ U·(1 + (t+2)·|log ab_t|)
    t = torch.arange(len(cum), dtype=torch.float64)
    assert ((s.alpha_bars.double() - cum).abs() <= U * (1 + (t + 2) * cum.log().abs()) * cum).all()
    post = (1 - s.alpha_bars[:-1]) / (1 - s.alpha_bars[1:]) * s.betas[1:]
    torch.testing.assert_close(s.sigmas_inflex[1:] ** 2, post, atol=0, rtol=gamma(3))  # sqrt, then squared
    torch.testing.assert_close(s.sigmas(1.0), s.sigmas_flex)
    torch.testing.assert_close(s.sigmas(0.5), 0.5 * (s.sigmas_flex + s.sigmas_inflex))


def test_cosine_clips_betas():
    s = DiffusionSchedule.build(10, "cosine")
    assert s.betas[1:].min() >= torch.tensor(1e-4) and s.betas[-1] == torch.tensor(0.999)  # float32 clip ends


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown diffusion schedule"):
        DiffusionSchedule.build(10, "exponential")
    with pytest.raises(ValueError, match="flexibility"):
        DiffusionSchedule.build(10).sigmas(1.5)


def test_buffers_keep_float32_and_round_trip():
    sched = DiffusionSchedule.build(20, "cosine")
    buffers = ScheduleBuffers(sched).to(torch.float16)
    assert all(getattr(buffers, n).dtype == torch.float32 for n in SCHEDULE_BUFFERS)
    assert list(buffers.state_dict()) == list(SCHEDULE_BUFFERS)
    back = buffers.schedule()
    assert back.num_steps == 20
    for name in SCHEDULE_BUFFERS:
        assert torch.equal(getattr(back, name), getattr(sched, name))
