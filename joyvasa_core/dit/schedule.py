"""The diffusion noise schedule as a value object, built exactly like the official one.

Index convention (official): every table has ``T + 1`` entries and index 0 is a
padded step with beta_0 = 0, so ``alpha_bars[0] = 1`` and step ``t`` in 1..T uses
``betas[t]``. ``alpha_bars`` is the exp of a *sequential float32* running sum of
``log(alphas)`` (not ``cumprod``), which is what makes the values bit-exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

SCHEDULE_MODES = ("linear", "quadratic", "sigmoid", "cosine")
SCHEDULE_BUFFERS = ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex")


def make_betas(num_steps: int, mode: str = "cosine", beta_1: float = 1e-4, beta_T: float = 0.02,
               s: float = 0.008) -> Tensor:
    """Betas for steps 1..T, float32 ``[T]`` (no padding)."""
    if mode == "linear":
        return torch.linspace(beta_1, beta_T, num_steps)
    if mode == "quadratic":
        return torch.linspace(beta_1 ** 0.5, beta_T ** 0.5, num_steps) ** 2
    if mode == "sigmoid":
        return torch.sigmoid(torch.linspace(-5, 5, num_steps)) * (beta_T - beta_1) + beta_1
    if mode == "cosine":
        x = torch.linspace(0, num_steps, num_steps + 1)
        bars = torch.cos(((x / num_steps) + s) / (1 + s) * math.pi * 0.5) ** 2
        bars = bars / bars[0]
        return torch.clip(1 - bars[1:] / bars[:-1], 0.0001, 0.999)
    raise ValueError(f"unknown diffusion schedule {mode!r}; choose one of {SCHEDULE_MODES}")


@dataclass(frozen=True)
class DiffusionSchedule:
    """Tables of one schedule, each ``[T + 1]`` float32 (index 0 = padded beta_0 = 0).

    ``sigmas_flex[t] = sqrt(beta_t)``; ``sigmas_inflex[t]`` is the DDPM posterior
    std ``sqrt((1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t)``.
    """

    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor
    sigmas_flex: Tensor
    sigmas_inflex: Tensor

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.shape[0] - 1

    @classmethod
    def build(cls, num_steps: int, mode: str = "cosine", beta_1: float = 1e-4, beta_T: float = 0.02,
              s: float = 0.008) -> "DiffusionSchedule":
        """Compute the tables on the CPU in float32, as the official constructor does."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        betas = torch.cat([torch.zeros(1), make_betas(num_steps, mode, beta_1, beta_T, s)])
        alphas = 1 - betas
        # Sequential float32 prefix sum (numpy accumulates in the array dtype, in order).
        log_bars = np.add.accumulate(torch.log(alphas).numpy(), dtype=np.float32)
        alpha_bars = torch.from_numpy(log_bars).exp()
        sigmas_flex = torch.sqrt(betas)
        ratio = torch.zeros_like(betas)
        ratio[1:] = (1 - alpha_bars[:-1]) / (1 - alpha_bars[1:]) * betas[1:]
        return cls(betas, alphas, alpha_bars, sigmas_flex, torch.sqrt(ratio))

    def sigmas(self, flexibility: float = 0.0) -> Tensor:
        """Ancestral noise std per step ``[T + 1]``: flexibility 0 = posterior std, 1 = sqrt(beta)."""
        if not 0.0 <= flexibility <= 1.0:
            raise ValueError(f"flexibility must lie in [0, 1], got {flexibility}")
        return self.sigmas_flex * flexibility + self.sigmas_inflex * (1 - flexibility)

    def tables(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in SCHEDULE_BUFFERS}


class ScheduleBuffers(nn.Module):
    """The schedule as the ``diffusion_sched`` buffers of the checkpoint.

    The buffers stay float32 when the model is cast to half precision
    (``alpha_bars`` reaches 1e-8), and follow the model's device.
    """

    def __init__(self, schedule: DiffusionSchedule):
        super().__init__()
        for name, value in schedule.tables().items():
            self.register_buffer(name, value.clone())

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0] - 1

    def schedule(self) -> DiffusionSchedule:
        """The (possibly checkpoint-loaded) buffers as a :class:`DiffusionSchedule`, float32."""
        return DiffusionSchedule(**{n: getattr(self, n).float() for n in SCHEDULE_BUFFERS})

    def _apply(self, fn, recurse=True):
        def device_only(t: Tensor) -> Tensor:
            moved = fn(t)
            return moved if moved.dtype == t.dtype else t.to(moved.device)
        return super()._apply(device_only, recurse)
