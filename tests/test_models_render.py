"""LivePortrait F, W, G and the batched renderer: layout, parity, batching, precision."""
from __future__ import annotations

import json
import warnings
from itertools import chain

import pytest
import torch

from conftest import PARITY, SCHEMA
from helpers_precision import assert_float32_close, gamma, to_float64
from joyvasa_core import config
from joyvasa_core.fill import fill_module_
from joyvasa_core.models.appearance import AppearanceFeatureExtractor
from joyvasa_core.models.spade import SPADEDecoder
from joyvasa_core.models.warping import WarpingNetwork, coordinate_grid
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.parity.runner import run_fixture
from joyvasa_core.models.blocks import SpectralNormConv2d, avg_pool_hw
from joyvasa_core.render import (DEFAULT_BATCH_SIZE, MAX_AUTO_BATCH_SIZE, RenderOptions,
                                 auto_batch_size, estimate_frame_bytes, iter_render, render)

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


@pytest.fixture(scope="module")
def tiny64(tiny):
    """W and G in float64 and their outputs on the tiny inputs: the reference that measures
    the float32 error of every comparison below (see helpers_precision)."""
    _, w, g, feature, kp_s, kp_d = tiny
    w64, g64 = to_float64(w), to_float64(g)
    with torch.inference_mode():
        warped = w64(*to_float64((feature, kp_d, kp_s)))
        frames = g64(warped["out"])
    return w64, g64, warped, frames


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


def test_batched_render_equals_per_frame(tiny, tiny64):
    _, w, g, feature, kp_s, kp_d = tiny
    _, _, warped64, frames64 = tiny64
    batched = render(w, g, feature, kp_s, kp_d, batch_size=len(kp_d))
    with torch.inference_mode():
        warped = w(feature, kp_d, kp_s)
        per_frame = [w(feature, kp_d[i:i + 1], kp_s) for i in range(len(kp_d))]
        single = torch.cat([g(out["out"]) for out in per_frame])
    # only float32 reordering (batch-size dependent conv kernels) separates them
    for key in ("deformation", "occlusion_map", "out"):
        assert_float32_close(torch.cat([o[key] for o in per_frame]), warped[key], warped64[key], name=key)
    assert_float32_close(single, batched, frames64)
    # frames differ from one another, so the comparison is not vacuous
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_chunking_and_shared_source_do_not_change_frames(tiny, tiny64):
    _, w, g, feature, kp_s, kp_d = tiny
    frames64 = tiny64[3]
    whole = render(w, g, feature, kp_s, kp_d, batch_size=5)
    chunks = list(iter_render(w, g, feature, kp_s, kp_d, batch_size=2))
    assert [c.shape[0] for c in chunks] == [2, 2, 1]
    assert_float32_close(torch.cat(chunks), whole, frames64)
    # per-frame copies of the source volume/keypoints give the same frames as the shared ones
    copied = render(w, g, feature.expand(5, -1, -1, -1, -1).contiguous(), kp_s.expand(5, -1, -1),
                    kp_d, batch_size=3)
    assert_float32_close(copied, whole, frames64)


def test_identical_keypoints_give_identity_deformation(tiny):
    _, w, _, feature, kp_s, _ = tiny
    with torch.inference_mode():
        deformation = w(feature, kp_s, kp_s)["deformation"]
    grid = coordinate_grid(4, 16, 16, "cpu")
    # Σ_k mask_k·((grid − kp_k) + kp_k) over K+1 motions: 2 roundings per motion, a softmax
    # (exp, a K+1 sum, a division) and a K+1 dot product, all on values ≤ 1 + max|kp|
    k = kp_s.shape[1] + 1
    bound = gamma(2 + (k + 2) + k) * (1 + kp_s.abs().max().item())
    torch.testing.assert_close(deformation[0], grid, atol=bound, rtol=0)


def test_warping_argument_order_is_driving_first(tiny):
    _, w, _, feature, kp_s, kp_d = tiny
    with torch.inference_mode():
        positional = w(feature, kp_d[:1], kp_s)["deformation"]
        keyword = w(feature, kp_source=kp_s, kp_driving=kp_d[:1])["deformation"]
        swapped = w(feature, kp_s, kp_d[:1])["deformation"]
    torch.testing.assert_close(positional, keyword, atol=0, rtol=0)
    assert (positional - swapped).abs().max() > 1e-3


def _copy(module: torch.nn.Module, cls, cfg, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A fresh copy (render options convert and prepare modules in place)."""
    copy = cls(**cfg).eval()
    copy.load_state_dict(module.state_dict())
    return copy.to(dtype)


def test_bf16_warping_keeps_coordinates_in_float32(tiny):
    _, w, _, feature, kp_s, kp_d = tiny
    w16 = _copy(w, WarpingNetwork, TINY_W, torch.bfloat16)
    with torch.inference_mode():
        ref = w(feature, kp_d, kp_s)
        low = w16(feature.bfloat16(), kp_d, kp_s)
    assert low["deformation"].dtype == torch.float32 and low["out"].dtype == torch.bfloat16
    # a bf16 grid alone would be off by up to 1.6e-3 (half a bf16 ulp near |x| = 1)
    assert (low["deformation"] - ref["deformation"]).abs().max() < 5e-4
    assert (low["occlusion_map"].float() - ref["occlusion_map"]).abs().max() < 1e-2
    assert (low["out"].float() - ref["out"]).abs().max() < 0.05 * ref["out"].abs().max()


# (mean, max) error bounds on the tiny renderer's frames; fp16 has 3 more mantissa bits.
HALF_BOUNDS = {torch.bfloat16: (0.03, 0.5), torch.float16: (0.005, 0.1)}


@pytest.mark.parametrize("dtype", sorted(HALF_BOUNDS, key=str), ids=str)
def test_half_precision_render_close_to_fp32(tiny, dtype):
    # The random-weight G is ill-conditioned (a 0.4 % input perturbation moves pixels by
    # ~4 %), so the bound is on the typical error; the worst pixel is only sanity-checked.
    _, w, g, feature, kp_s, kp_d = tiny
    ref = render(w, g, feature, kp_s, kp_d, batch_size=5)
    w_low, g_low = _copy(w, WarpingNetwork, TINY_W), _copy(g, SPADEDecoder, TINY_G)
    low = render(w_low, g_low, feature, kp_s, kp_d, options=RenderOptions(batch_size=5, dtype=dtype))
    assert g_low.fc.weight.dtype == dtype and w_low.third.conv.weight.dtype == dtype  # in place
    assert low.dtype == dtype and low.shape == ref.shape
    assert torch.isfinite(low).all()
    err = (low.float() - ref).abs()
    mean_bound, max_bound = HALF_BOUNDS[dtype]
    assert err.mean() < mean_bound and err.max() < max_bound, (float(err.mean()), float(err.max()))
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
        assert_float32_close(ref(x), ours(x), to_float64(ours)(x.double()))
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


# --------------------------------------------------------------------------- render options

def _spectral_convs(g: SPADEDecoder) -> list[SpectralNormConv2d]:
    return [m for m in g.modules() if isinstance(m, SpectralNormConv2d)]


@pytest.mark.parametrize("amx", [False, True])
def test_cpu_bf16_takes_channels_last_only_with_amx(tiny, monkeypatch, amx):
    """oneDNN's AMX kernels want NHWC; without AMX (AVX512-BF16 only) NHWC made G slower."""
    import joyvasa_core.render as render_module

    monkeypatch.setattr(render_module, "cpu_has_amx", lambda: amx)
    _, w, g, feature, kp_s, kp_d = tiny
    for dtype, expected in ((torch.bfloat16, amx), (torch.float32, False)):
        wc, gc = _copy(w, WarpingNetwork, TINY_W, dtype), _copy(g, SPADEDecoder, TINY_G, dtype)
        frames = render(wc, gc, feature.to(dtype), kp_s, kp_d,
                        options=RenderOptions(batch_size=5, compile=False))
        assert torch.isfinite(frames).all()
        conv3d = wc.dense_motion_network.hourglass.encoder.down_blocks[0].conv.weight
        assert gc.fc.weight.is_contiguous(memory_format=torch.channels_last) == expected, dtype
        assert conv3d.is_contiguous(memory_format=torch.channels_last_3d) == expected, dtype


def test_amx_is_read_from_the_cpu_flags():
    from joyvasa_core.devices import cpu_has_amx

    sapphire = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    cascade = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n"
    assert cpu_has_amx(sapphire) and not cpu_has_amx(cascade) and not cpu_has_amx("")
    assert isinstance(cpu_has_amx(), bool)                               # this machine


def test_avg_pool_hw_matches_avg_pool3d_in_both_layouts():
    x = torch.randn(2, 3, 4, 6, 8)
    ref = torch.nn.functional.avg_pool3d(x, (1, 2, 2))
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    out = avg_pool_hw(cl)
    bound = 2 * gamma(4) * x.abs().max().item()    # two 4-term means in any order
    torch.testing.assert_close(avg_pool_hw(x), ref, atol=bound, rtol=0)
    torch.testing.assert_close(out, ref, atol=bound, rtol=0)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)


def test_channels_last_does_not_change_fp32_results(tiny, tiny64):
    _, w, g, feature, kp_s, kp_d = tiny
    _, g64, warped64, frames64 = tiny64
    w, g = _copy(w, WarpingNetwork, TINY_W), _copy(g, SPADEDecoder, TINY_G)
    conv3d = w.dense_motion_network.hourglass.encoder.down_blocks[0].conv.weight
    frames, warped, decoded = {}, {}, {}
    for channels_last in (False, True):
        frames[channels_last] = render(w, g, feature, kp_s, kp_d, options=RenderOptions(
            batch_size=5, channels_last=channels_last, channels_last_3d=channels_last))
        with torch.inference_mode():
            warped[channels_last] = w(feature, kp_d, kp_s)
            decoded[channels_last] = g(warped[False]["out"])       # G on the same input
    # the weights really changed layout (3-D convs NDHWC, 2-D and folded spectral ones NHWC)
    assert w.dense_motion_network.hourglass.encoder.down_blocks[0].conv.weight \
        .is_contiguous(memory_format=torch.channels_last_3d) and not conv3d.is_contiguous()
    assert g.fc.weight.is_contiguous(memory_format=torch.channels_last)
    assert g.G_middle_0.conv_0.weight_folded.is_contiguous(memory_format=torch.channels_last)
    # other kernels, other summation order: bounded by the float32 error of each stage itself
    assert_float32_close(warped[True], warped[False], warped64)
    with torch.inference_mode():
        decoded64 = g64(warped[False]["out"].double())
    assert_float32_close(decoded[True], decoded[False], decoded64)
    assert_float32_close(frames[True], frames[False], frames64)
    render(w, g, feature, kp_s, kp_d, options=RenderOptions(batch_size=5, channels_last=False,
                                                            channels_last_3d=True))
    assert g.fc.weight.is_contiguous() and w.third.conv.weight.is_contiguous()
    assert not w.dense_motion_network.mask.weight.is_contiguous()        # still NDHWC
    render(w, g, feature, kp_s, kp_d, batch_size=5)                      # CPU default: NCHW
    assert w.dense_motion_network.mask.weight.is_contiguous()


def test_render_folds_spectral_norm_and_refolds_after_loading(tiny, tiny64):
    _, w, g, feature, kp_s, kp_d = tiny
    fresh = _copy(g, SPADEDecoder, TINY_G)
    assert all(m.weight_folded is None for m in _spectral_convs(fresh))
    with torch.inference_mode():
        unfolded = fresh(w(feature, kp_d, kp_s)["out"])
    frames = render(w, fresh, feature, kp_s, kp_d, options=RenderOptions(batch_size=5,
                                                                         channels_last=False))
    assert all(m.weight_folded is not None for m in _spectral_convs(fresh))
    assert_float32_close(frames, unfolded, tiny64[3])
    fresh.load_state_dict(g.state_dict())                  # drops the folded weights
    assert all(m.weight_folded is None for m in _spectral_convs(fresh))
    render(w, fresh, feature, kp_s, kp_d, batch_size=5)
    assert all(m.weight_folded is not None for m in _spectral_convs(fresh))


def test_chunks_are_bounded_by_batch_size(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    sizes = lambda **kw: [c.shape[0] for c in iter_render(w, g, feature, kp_s, kp_d, **kw)]
    assert sizes(batch_size=2) == [2, 2, 1]
    assert sizes(options=RenderOptions(batch_size=2)) == [2, 2, 1]
    assert sizes(batch_size=3, options=RenderOptions(batch_size=2)) == [3, 2]   # argument wins
    auto = sizes()                                                 # CPU: DEFAULT_BATCH_SIZE
    assert auto == [DEFAULT_BATCH_SIZE, 5 - DEFAULT_BATCH_SIZE]
    with pytest.raises(ValueError, match="batch_size"):
        sizes(batch_size=0)


def test_auto_batch_size_follows_free_memory():
    gib = 2**30
    assert auto_batch_size("cpu", torch.float32) == DEFAULT_BATCH_SIZE
    assert auto_batch_size("cuda", torch.float16, free_bytes=0) == 1
    assert auto_batch_size("cuda", torch.float16, free_bytes=80 * gib) == MAX_AUTO_BATCH_SIZE
    laptop_half = auto_batch_size("cuda", torch.float16, free_bytes=6 * gib)
    laptop_full = auto_batch_size("cuda", torch.float32, free_bytes=6 * gib)
    assert 1 < laptop_full < laptop_half < MAX_AUTO_BATCH_SIZE
    # the chunk's activations stay within the memory share it was sized for
    assert laptop_half * estimate_frame_bytes(torch.float16) <= 0.5 * 6 * gib
    assert estimate_frame_bytes(torch.bfloat16) == estimate_frame_bytes(torch.float16) \
        < estimate_frame_bytes(torch.float32)


def _failing_compile(*args, **kwargs):
    def compiled(*a, **k):
        raise RuntimeError("simulated: no C++ compiler")
    return compiled


@pytest.mark.parametrize("compiler", [True, False])
def test_cpu_bf16_compiles_by_default_where_a_compiler_is_found(tiny, monkeypatch, compiler):
    """The CPU fast path: bf16 W+G run through torch.compile (a real compile, checked against the
    eager bf16 frames); float32, or no C++ compiler, stays eager, without a warning."""
    import joyvasa_core.render as render_module

    monkeypatch.setattr(render_module, "cpu_compiler_found", lambda: compiler)
    _, w, g, feature, kp_s, kp_d = tiny
    chunks = {}
    for dtype in (torch.bfloat16, torch.float32):
        wc, gc = _copy(w, WarpingNetwork, TINY_W, dtype), _copy(g, SPADEDecoder, TINY_G, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)     # no fallback warning either way
            frames = render(wc, gc, feature.to(dtype), kp_s, kp_d, batch_size=5)
        chunks[dtype] = render_module._RENDERERS[gc].chunk
        if dtype == torch.bfloat16:
            eager = render(wc, gc, feature.to(dtype), kp_s, kp_d, options=RenderOptions(
                batch_size=5, compile=False))
            _, hi = HALF_BOUNDS[torch.bfloat16]
            assert (frames.float() - eager.float()).abs().max() < hi
    assert (chunks[torch.bfloat16] is not render_module._render_chunk) == compiler
    assert chunks[torch.float32] is render_module._render_chunk


@pytest.mark.parametrize("where", ["first call", "creation"])
def test_compile_failure_warns_once_and_renders_eagerly(tiny, monkeypatch, where):
    _, w, g, feature, kp_s, kp_d = tiny
    w, g = _copy(w, WarpingNetwork, TINY_W), _copy(g, SPADEDecoder, TINY_G)
    eager = render(w, g, feature, kp_s, kp_d, batch_size=2)
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append(kwargs)
        if where == "creation":
            raise RuntimeError("simulated: torch.compile unavailable")
        return _failing_compile()

    monkeypatch.setattr(torch, "compile", fake_compile)
    options = RenderOptions(batch_size=2, compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*simulated") as record:
        frames = render(w, g, feature, kp_s, kp_d, options=options)
    assert len([r for r in record if "torch.compile" in str(r.message)]) == 1
    assert len(calls) == 1
    torch.testing.assert_close(frames, eager, atol=0, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # the fallback is remembered: no new warning
        again = render(w, g, feature, kp_s, kp_d, options=options)
    torch.testing.assert_close(again, eager, atol=0, rtol=0)
    assert len(calls) == 1


def test_cuda_graphs_off_cuda_warn_and_render(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    ref = render(w, g, feature, kp_s, kp_d, batch_size=2)
    with pytest.warns(RuntimeWarning, match="cuda_graphs=True.*needs a CUDA device"):
        frames = render(w, g, feature, kp_s, kp_d, options=RenderOptions(batch_size=2,
                                                                          cuda_graphs=True))
    torch.testing.assert_close(frames, ref, atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_render_the_eager_frames_on_cuda(tiny, tiny64):
    _, w, g, feature, kp_s, kp_d = tiny
    w, g = _copy(w, WarpingNetwork, TINY_W).cuda(), _copy(g, SPADEDecoder, TINY_G).cuda()
    args = (feature.cuda(), kp_s.cuda(), kp_d.cuda())
    eager = render(w, g, *args, batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # a failed capture would warn
        graphed = render(w, g, *args, options=RenderOptions(batch_size=2, cuda_graphs=True))
    assert_float32_close(graphed.cpu(), eager.cpu(), tiny64[3])   # eager's own error (TF32 convs)


def test_cudnn_benchmark_is_set_while_rendering_only(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    seen = []
    hook = g.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.benchmark))
    before = torch.backends.cudnn.benchmark
    try:
        for flag in (True, False, True):
            render(w, g, feature, kp_s, kp_d, options=RenderOptions(batch_size=5, cudnn_benchmark=flag))
            assert torch.backends.cudnn.benchmark == before
        render(w, g, feature, kp_s, kp_d, batch_size=5)     # default: on for CUDA only
    finally:
        hook.remove()
    assert seen == [True, False, True, False]


def test_fp16_overflow_raises_with_the_fix(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    hot = _copy(g, SPADEDecoder, TINY_G)
    with torch.no_grad():
        hot.fc.bias.fill_(1e5)                              # beyond float16's 65504
    with pytest.raises(FloatingPointError, match="bfloat16 or float32"):
        render(_copy(w, WarpingNetwork, TINY_W), hot, feature, kp_s, kp_d,
               options=RenderOptions(dtype=torch.float16))
    unchecked = render(_copy(w, WarpingNetwork, TINY_W), hot, feature, kp_s, kp_d,
                       options=RenderOptions(dtype=torch.float16, check_finite=False))
    assert not torch.isfinite(unchecked).all()


def test_preparing_inside_inference_mode_keeps_normal_weights(tiny):
    _, w, g, feature, kp_s, kp_d = tiny
    w, g = _copy(w, WarpingNetwork, TINY_W), _copy(g, SPADEDecoder, TINY_G)
    with torch.inference_mode():                          # how the pipeline calls it
        frames = render(w, g, feature, kp_s, kp_d, options=RenderOptions(
            dtype=torch.bfloat16, channels_last=True, output_device="cpu", compile=False))
    assert frames.device.type == "cpu" and frames.dtype == torch.bfloat16
    assert not any(p.is_inference() for p in chain(w.parameters(), g.parameters()))
    assert not any(m.weight_folded.is_inference() for m in _spectral_convs(g))
