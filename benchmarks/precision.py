"""Half-precision error of the full-size renderer (W + G, synthetic weights) against float32.

Renders the same frames in float32 and in each half precision through
``iter_render`` (``RenderOptions(dtype=...)``) and prints, per precision, the
error on the frames (max / mean |diff| and the share of pixels off by more
than one 8-bit level), the relative error of W's output, and the largest
activation magnitude anywhere in W and G next to float16's limit (65504), which
is the overflow headroom. Inputs are the warping parity fixture's feature
volume and keypoints when present (the official statistics), else random.
On CUDA the float32 reference runs without TF32. Every precision renders eagerly
(the probes hook each module); the CPU fast path's speed and error, compiled as it
runs, are ``benchmarks/render.py --device cpu --fast-path``.

    python benchmarks/precision.py [--device auto] [--frames 2] [--dtypes fp16 bf16]

A benchmark, not a test: tiny-configuration bounds live in tests/test_models_render.py.
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from common import ROOT, describe_device, print_table

from joyvasa_core import config
from joyvasa_core.devices import resolve_device, resolve_dtype
from joyvasa_core.fill import fill_module_
from joyvasa_core.models.spade import SPADEDecoder
from joyvasa_core.models.warping import WarpingNetwork
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.render import RenderOptions, render

FIXTURES = ROOT / "tests" / "data" / "parity"
FP16_MAX = torch.finfo(torch.float16).max


def inputs(frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """feature_3d [1,32,16,64,64], kp_source [1,21,3], kp_driving [frames,21,3] (float32, CPU)."""
    g = torch.Generator().manual_seed(seed)
    if (FIXTURES / "warping_module.json").exists():
        fx = Fixture.open(FIXTURES, "warping_module")
        feature, kp_s, kp_d = fx.tensor("feature_3d"), fx.tensor("kp_source"), fx.tensor("kp_driving")
    else:
        feature = 0.25 * torch.randn(1, 32, 16, 64, 64, generator=g)
        kp_s = 0.6 * (2 * torch.rand(1, 21, 3, generator=g) - 1)
        kp_d = kp_s + 0.05 * torch.randn(1, 21, 3, generator=g)
    extra = kp_d + 0.03 * torch.randn(frames - 1, 21, 3, generator=g)
    return feature, kp_s, torch.cat([kp_d, extra])[:frames]


class ActivationPeak:
    """Largest |value| of every floating output of the hooked modules, and non-finite count."""

    def __init__(self, *modules: nn.Module):
        self.peak, self.nonfinite = 0.0, 0
        self.handles = [m.register_forward_hook(self._hook)
                        for module in modules for m in module.modules()]

    def _hook(self, _module: nn.Module, _args: object, out: object) -> None:
        tensors = out.values() if isinstance(out, dict) else out if isinstance(out, list) else [out]
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                finite = torch.isfinite(t)
                self.nonfinite += int((~finite).sum())
                self.peak = max(self.peak, float(t.abs().where(finite, 0).max()))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def copy_of(module: nn.Module, cfg: dict) -> nn.Module:
    copy = type(module)(**cfg).eval()
    copy.load_state_dict(module.state_dict())
    return copy.to(next(module.parameters()).device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["fp16", "bf16"])
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    warping = fill_module_(WarpingNetwork(**config.WARPING_MODULE)).to(device).eval()
    spade = fill_module_(SPADEDecoder(**config.SPADE_GENERATOR)).to(device).eval()
    feature, kp_s, kp_d = inputs(args.frames)
    print(f"device: {describe_device(device)}; {args.frames} frames of 512x512; synthetic weights")

    def run(w: nn.Module, g: nn.Module, dtype: torch.dtype):
        probe = ActivationPeak(w, g)
        captured = {}
        hook = w.register_forward_hook(lambda _m, _a, out: captured.update(out=out["out"].float()))
        try:
            frames = render(w, g, feature, kp_s, kp_d, options=RenderOptions(
                batch_size=1, dtype=dtype, check_finite=False, compile=False)).float()
        finally:
            probe.remove()
            hook.remove()
        return frames, captured["out"], probe

    ref, ref_w, ref_probe = run(warping, spade, torch.float32)
    rows = [["fp32", 0.0, 0.0, 0.0, 0.0, ref_probe.peak, FP16_MAX / ref_probe.peak,
             ref_probe.nonfinite]]
    for name in args.dtypes:
        dtype = resolve_dtype(name, device)
        frames, out_w, probe = run(copy_of(warping, config.WARPING_MODULE),
                                   copy_of(spade, config.SPADE_GENERATOR), dtype)
        err = (frames - ref).abs()
        w_rel = float((out_w - ref_w).abs().max() / ref_w.abs().max())
        rows.append([name, float(err.max()), float(err.mean()),
                     100 * float((err > 1 / 255).float().mean()), w_rel, probe.peak,
                     FP16_MAX / probe.peak, probe.nonfinite])
    print_table(["dtype", "frame max|d|", "frame mean|d|", "% px >1/255", "W out max rel",
                 "peak |act|", "fp16 headroom", "non-finite"],
                [[r[0], *[f"{v:.3g}" if isinstance(v, float) else v for v in r[1:]]] for r in rows])


if __name__ == "__main__":
    main()
