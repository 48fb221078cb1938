"""LivePortrait F, W, G and the batched renderer: layout, parity, batching, precision."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import PARITY, SCHEMA
from joyvasa_core import config
from joyvasa_core.fill import fill_module_
from joyvasa_core.models.appearance import AppearanceFeatureExtractor
from joyvasa_core.models.blocks import SpectralNormConv2d
from joyvasa_core.models.spade import SPADEDecoder
from joyvasa_core.models.warping import WarpingNetwork, coordinate_grid
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.parity.runner import run_fixture
from joyvasa_core.render import iter_render, render

FULL = {
    "appearance_feature_extractor": (AppearanceFeatureExtractor, config.APPEARANCE_FEATURE_EXTRACTOR),
    "warping_module": (WarpingNetwork, config.WARPING_MODULE),
    "spade_generator": (SPADEDecoder, config.SPADE_GENERATOR),
}

# Tiny configurations of the real architectures: C·D = 4·4 = 16 = W's max_features,
# W's output width 4·2 = 8 = G's input width.
TINY_F = dict(image_channel=3, block_expansion=4, num_down_blocks=2, max_features=16,
              reshape_channel=4, reshape_depth=4, num_resblocks=1)
TINY_W = dict(num_kp=5, block_expansion=4, max_features=16, num_down_blocks=1, reshape_channel=4,
              estimate_occlusion_map=True,
              dense_motion_params=dict(block_expansion=4, max_features=16, num_blocks=2,
                                       reshape_depth=4, compress=2))
TINY_G = dict(upscale=2, block_expansion=4, max_features=8, num_down_blocks=1, out_channels=8,
              spade_hidden=8)


@pytest.mark.parametrize("name", sorted(FULL))
def test_state_dict_matches_official_schema(name):
    cls, cfg = FULL[name]
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in cls(**cfg).state_dict().items()]
    schema = json.loads((SCHEMA / f"{name}.json").read_text())
    assert ours == [(e["key"], e["shape"], e["dtype"]) for e in schema["entries"]]


@pytest.mark.parametrize("name", sorted(FULL))
def test_parity_fixture(name):
    results = run_fixture(Fixture.open(PARITY, name), torch.device("cpu"))
    assert results
    bad = [(r.output, r.max_abs_err, r.note) for r in results if not r.ok]
    assert not bad, bad


# --------------------------------------------------------------------------- tiny models

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    f = fill_module_(AppearanceFeatureExtractor(**TINY_F)).eval()
    w = fill_module_(WarpingNetwork(**TINY_W)).eval()
    g = fill_module_(SPADEDecoder(**TINY_G)).eval()
    with torch.inference_mode():
        feature = f(torch.rand(1, 3, 64, 64))                        # [1, 4, 4, 16, 16]
    kp_source = 0.6 * (2 * torch.rand(1, 5, 3) - 1)
    kp_driving = kp_source + 0.1 * torch.randn(5, 5, 3)
    return f, w, g, feature, kp_source, kp_driving


def test_tiny_shapes(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    assert feature.shape == (1, 4, 4, 16, 16)
    with torch.inference_mode():
        out = w(feature, kp_d, kp_s)
        image = g(out["out"])
    assert out["out"].shape == (5, 8, 16, 16)
    assert out["occlusion_map"].shape == (5, 1, 16, 16)
    assert out["deformation"].shape == (5, 4, 16, 16, 3)
    assert image.shape == (5, 3, 128, 128)                       # ×2 ×2 upsampling, ×2 pixel shuffle
    assert 0 < image.min() and image.max() < 1 and image.std() > 0.05


def test_batched_render_equals_per_frame(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    batched = render(w, g, feature, kp_s, kp_d, batch_size=len(kp_d))
    with torch.inference_mode():
        warped = w(feature, kp_d, kp_s)
        per_frame = [w(feature, kp_d[i:i + 1], kp_s) for i in range(len(kp_d))]
        single = torch.cat([g(out["out"]) for out in per_frame])
    # only float32 reordering (batch-size dependent conv kernels) separates them
    for key in ("deformation", "occlusion_map", "out"):
        torch.testing.assert_close(warped[key], torch.cat([o[key] for o in per_frame]),
                                   atol=2e-6, rtol=0)
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)
    # frames differ from one another, so the comparison is not vacuous
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_chunking_and_shared_source_do_not_change_frames(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    whole = render(w, g, feature, kp_s, kp_d, batch_size=5)
    chunks = list(iter_render(w, g, feature, kp_s, kp_d, batch_size=2))
    assert [c.shape[0] for c in chunks] == [2, 2, 1]
    torch.testing.assert_close(torch.cat(chunks), whole, atol=1e-4, rtol=0)
    # per-frame copies of the source volume/keypoints give the same frames as the shared ones
    copied = render(w, g, feature.expand(5, -1, -1, -1, -1).contiguous(), kp_s.expand(5, -1, -1),
                    kp_d, batch_size=3)
    torch.testing.assert_close(copied, whole, atol=1e-4, rtol=0)


def test_identical_keypoints_give_identity_deformation(tiny):
    _, w, _, feature, kp_s, _ = tiny
    with torch.inference_mode():
        deformation = w(feature, kp_s, kp_s)["deformation"]
    grid = coordinate_grid(4, 16, 16, "cpu")
    torch.testing.assert_close(deformation[0], grid, atol=1e-6, rtol=0)


def test_warping_argument_order_is_driving_first(tiny):
    _, w, _, feature, kp_s, kp_d = tiny
    with torch.inference_mode():
        positional = w(feature, kp_d[:1], kp_s)["deformation"]
        keyword = w(feature, kp_source=kp_s, kp_driving=kp_d[:1])["deformation"]
        swapped = w(feature, kp_s, kp_d[:1])["deformation"]
    torch.testing.assert_close(positional, keyword, atol=0, rtol=0)
    assert (positional - swapped).abs().max() > 1e-3


def _bf16_copy(module: torch.nn.Module, cls, cfg) -> torch.nn.Module:
    copy = cls(**cfg).eval()
    copy.load_state_dict(module.state_dict())
    return copy.to(torch.bfloat16)


def test_bf16_warping_keeps_coordinates_in_float32(tiny):
    _, w, _, feature, kp_s, kp_d = tiny
    w16 = _bf16_copy(w, WarpingNetwork, TINY_W)
    with torch.inference_mode():
        ref = w(feature, kp_d, kp_s)
        low = w16(feature.bfloat16(), kp_d, kp_s)
    assert low["deformation"].dtype == torch.float32 and low["out"].dtype == torch.bfloat16
    # a bf16 grid alone would be off by up to 1.6e-3 (half a bf16 ulp near |x| = 1)
    assert (low["deformation"] - ref["deformation"]).abs().max() < 5e-4
    assert (low["occlusion_map"].float() - ref["occlusion_map"]).abs().max() < 1e-2
    assert (low["out"].float() - ref["out"]).abs().max() < 0.05 * ref["out"].abs().max()


def test_bf16_render_close_to_fp32(tiny):
    # The random-weight G is ill-conditioned (a 0.4 % input perturbation moves pixels by
    # ~4 %), so the bound is on the typical error; the worst pixel is only sanity-checked.
    _, w, g, feature, kp_s, kp_d = tiny
    ref = render(w, g, feature, kp_s, kp_d, batch_size=5)
    low = render(_bf16_copy(w, WarpingNetwork, TINY_W), _bf16_copy(g, SPADEDecoder, TINY_G),
                 feature, kp_s, kp_d, batch_size=5)
    assert low.dtype == torch.bfloat16 and low.shape == ref.shape
    err = (low.float() - ref).abs()
    assert err.mean() < 0.03 and err.max() < 0.5, (float(err.mean()), float(err.max()))
    assert torch.corrcoef(torch.stack([low.float().flatten(), ref.flatten()]))[0, 1] > 0.98


# --------------------------------------------------------------------------- spectral norm

def test_spectral_conv_matches_torch_eval_spectral_norm():
    torch.manual_seed(1)
    ours = fill_module_(SpectralNormConv2d(6, 5, 3, padding=1))
    ref = torch.nn.utils.spectral_norm(torch.nn.Conv2d(6, 5, 3, padding=1))
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-6)
        # the stored u, v are used as they are: sigma != the true largest singular value
        true_sigma = torch.linalg.matrix_norm(ours.weight_orig.flatten(1), ord=2)
        stored_sigma = ours.weight_orig.flatten(1).mv(ours.weight_v).dot(ours.weight_u)
    assert abs(float(true_sigma - stored_sigma)) > 1e-4


def test_fold_spectral_norm_is_exact_and_dropped_on_load(tiny):
    _, _, g, *_ = tiny
    folded = SPADEDecoder(**TINY_G).eval()
    folded.load_state_dict(g.state_dict())
    folded.fold_spectral_norm_()
    x = torch.randn(2, 8, 16, 16) * 0.1
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), g(x), atol=0, rtol=0)
    assert folded.up_0.conv_s.weight_folded is not None
    assert "up_0.conv_s.weight_folded" not in folded.state_dict()
    folded.load_state_dict(g.state_dict())
    assert folded.up_0.conv_s.weight_folded is None
