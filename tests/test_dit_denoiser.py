"""Motion generator layout (official keys), args reading, and denoiser parity."""
from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from conftest import PARITY, SCHEMA
from helpers_precision import U, assert_float32_close, gamma, to_float64
from joyvasa_core.dit.args import MotionGeneratorArgs, nullable_arg
from joyvasa_core.dit.denoiser import DenoisingNetwork, alignment_mask, sinusoid_table
from joyvasa_core.dit.model import MotionGenerator, build_motion_generator
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.parity.runner import run_fixture


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((SCHEMA / "motion_generator.json").read_text())


TINY = dict(motion_feat_dim=6, n_motions=8, n_prev_motions=3, feature_dim=16, n_diff_steps=12,
            n_heads=2, n_layers=2)


# --------------------------------------------------------------------------- args


def test_args_from_checkpoint_ignore_constructor_defaults(schema):
    ns = argparse.Namespace(**schema["args_namespace"])
    args = MotionGeneratorArgs.from_checkpoint_args(ns)
    assert ns.n_layers == 6 and args.n_layers == 8          # official: n_layers is never read
    for key, value in schema["config_used_here"].items():
        assert getattr(args, key) == value
    defaults = schema["constructor_defaults_not_taken_from_args"]
    assert args.target == defaults["DitTalkingHead"]["target"]
    assert args.diff_schedule == defaults["DitTalkingHead"]["diff_schedule"]
    assert args.cfg_mode == defaults["DitTalkingHead"]["cfg_mode"]
    assert (args.n_heads, args.mlp_ratio, args.align_mask_width) == (
        defaults["DenoisingNetwork"]["n_heads"], defaults["DenoisingNetwork"]["mlp_ratio"],
        defaults["DenoisingNetwork"]["align_mask_width"])
    assert args.pad_mode == "zero" and args.use_indicator is True and args.seq_len == 110
    assert args.audio_samples == 64000


def test_nullable_fallbacks():
    assert nullable_arg({}, "fps") is None
    assert nullable_arg({}, "align_mask_width") == 0
    assert nullable_arg({"use_alignment_mask": True}, "align_mask_width") == 1
    assert nullable_arg({"use_alignment_mask": False}, "align_mask_width") == 0
    assert nullable_arg({}, "no_head_pose") is True
    assert nullable_arg({"predict_head_pose": True}, "no_head_pose") is False
    assert nullable_arg({"use_learnable_pe": True}, "no_use_learnable_pe") is False
    sidecar = Fixture.open(PARITY, "dit_denoiser").config
    args = MotionGeneratorArgs.from_checkpoint_args(sidecar)
    assert args.pad_mode is None and args.fps == sidecar["fps"]
    with pytest.raises(ValueError, match="n_diff_steps"):
        MotionGeneratorArgs.from_checkpoint_args({k: v for k, v in sidecar.items() if k != "n_diff_steps"})


# --------------------------------------------------------------------------- layout


@pytest.mark.slow
def test_state_dict_matches_official_file_order(schema):
    from joyvasa_core.dit.audio_encoder import build_audio_encoder

    args = MotionGeneratorArgs.from_checkpoint_args(schema["config_used_here"])
    model = build_motion_generator(args, build_audio_encoder(args.audio_model))
    sd = model.state_dict()
    assert list(sd) == schema["entries_in_file_order"]
    entries = schema["entries_denoiser_and_heads"] + schema["entries_audio_encoder"]
    for e in entries:
        assert tuple(sd[e["key"]].shape) == tuple(e["shape"]), e["key"]
        assert str(sd[e["key"]].dtype) == "torch." + e["dtype"], e["key"]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == schema["num_parameters"]


def test_features_only_generator_has_no_encoder_keys():
    model = MotionGenerator(MotionGeneratorArgs(**TINY), None)
    keys = list(model.state_dict())
    assert keys[:3] == ["start_audio_feat", "start_motion_feat", "null_audio_feat"]
    assert not any(k.startswith("audio_encoder.") for k in keys)
    assert model.audio_feature_map.in_features == 768
    assert model.diffusion_sched.betas.shape == (TINY["n_diff_steps"] + 1,)


# --------------------------------------------------------------------------- pieces


def test_alignment_mask_is_a_band():
    m = alignment_mask(6, 1)
    assert torch.equal(~m, torch.eye(6, dtype=torch.bool))
    m2 = alignment_mask(6, 2)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(~m2, (j - i).abs() <= 1)


def test_sinusoid_table_values():
    t = sinusoid_table(5, 8)[0]
    pos, k = 3, 2
    log_freq = -2 * k * math.log(10000.0) / 8
    freq = math.exp(log_freq)
    # float32 exp's argument and result (relative error ~U·|log freq| + U), the product pos·freq,
    # then sin/cos within one ulp (2U)
    tol = gamma(3) * (1 + abs(log_freq)) * pos * freq + 2 * U
    assert t[pos, 2 * k].item() == pytest.approx(math.sin(pos * freq), abs=tol)
    assert t[pos, 2 * k + 1].item() == pytest.approx(math.cos(pos * freq), abs=tol)


def test_tiny_denoiser_shapes_variants_and_batch_independence():
    torch.manual_seed(0)
    a = MotionGeneratorArgs(**TINY)
    net = DenoisingNetwork(a.motion_feat_dim, a.feature_dim, a.n_heads, a.n_layers, a.mlp_ratio,
                           a.n_prev_motions, a.n_motions, a.n_diff_steps).eval()
    b, n, p = 3, a.n_motions, a.n_prev_motions
    x, au = torch.randn(b, n, 6), torch.randn(b, n, 16)
    pm, pa = torch.randn(b, p, 6), torch.randn(b, p, 16)
    step = torch.tensor([1, 5, 12])
    with torch.no_grad():
        out = net(x, au, pm, pa, step)
        assert out.shape == (b, p + n, 6)
        single = torch.cat([net(x[i:i + 1], au[i:i + 1], pm[i:i + 1], pa[i:i + 1], step[i:i + 1])
                            for i in range(b)])
        ref = to_float64(net)(*to_float64((x, au, pm, pa)), step)
        assert_float32_close(single, out, ref)
        legacy = net(x, au, pm, pa, step, "legacy")
        assert (legacy - out).abs().max() > 1e-3
        assert (net(x, au, pm, pa, torch.tensor([2, 5, 12])) - out)[1:].abs().max() == 0
        with pytest.raises(ValueError, match="pe_variant"):
            net(x, au, pm, pa, step, "learned")


# --------------------------------------------------------------------------- parity


@pytest.mark.slow
def test_denoiser_parity():
    fx = Fixture.open(PARITY, "dit_denoiser")
    results = run_fixture(fx, torch.device("cpu"))
    assert {r.output for r in results} == set(fx.names("output"))
    bad = [(r.output, r.max_abs_err, r.note) for r in results if not r.ok]
    assert not bad, bad


@pytest.mark.slow
def test_constructed_buffers_match_official():
    fx = Fixture.open(PARITY, "dit_denoiser")
    c = fx.config
    net = DenoisingNetwork(c["motion_feat_dim"], c["feature_dim"], n_prev_motions=c["n_prev_motions"],
                           n_motions=c["n_motions"], n_diff_steps=c["n_diff_steps"])
    assert torch.equal(net.alignment_mask, fx.tensor("alignment_mask"))
    rows = [0, 1, c["n_diff_steps"] // 2, c["n_diff_steps"]]
    # float32 exp of another CPU may differ by one ulp (2U): that moves sin/cos's argument
    # t·freq by 2U·t (1.5e-5 measured at t = 500), plus one ulp of the result
    atol = 2 * U * (c["n_diff_steps"] + 1)
    torch.testing.assert_close(net.TE.pe[0, rows], fx.tensor("TE_pe_rows"), atol=atol, rtol=0)
