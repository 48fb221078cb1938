"""CUDA-graph replay (joyvasa_core.cuda_graph) in the sampler and the renderer.

On a machine without CUDA, capture is replaced by :class:`EmulatedCapture`, which
keeps the graph contract (static input buffers filled by copy, the function run
only on those buffers, one static output buffer cloned after each replay): the
bookkeeping and the plumbing of every varying tensor through the inputs are
tested here. The real capture runs in the CUDA-only tests at the end.
"""
from __future__ import annotations

import warnings

import pytest
import torch

import helpers_tiny_models as htm
from helpers_precision import assert_float32_close, to_float64
from joyvasa_core import cuda_graph
from joyvasa_core.dit.args import MotionGeneratorArgs
from joyvasa_core.dit.model import build_motion_generator
from joyvasa_core.dit.samplers import _GRAPHS, guided_denoiser, sample_window
from joyvasa_core.fill import fill_module_

CUDA = torch.cuda.is_available()


class EmulatedCapture:
    """Stands in for :class:`cuda_graph.CapturedCall`: same buffers, replay = rerun on them."""

    captures = 0

    def __init__(self, fn, modules, inputs, pool, warmup: int = 2):
        type(self).captures += 1
        self.fn, self.modules = fn, tuple(modules)
        self.static_in = tuple(t.clone() for t in inputs)
        self.static_out = fn(*self.modules, *self.static_in)
        self.replays = 0

    def __call__(self, *inputs):
        for static, t in zip(self.static_in, inputs):
            static.copy_(t)
        self.static_out.copy_(self.fn(*self.modules, *self.static_in))
        self.replays += 1
        return self.static_out.clone()


@pytest.fixture
def emulated(monkeypatch):
    EmulatedCapture.captures = 0
    monkeypatch.setattr(cuda_graph, "CapturedCall", EmulatedCapture)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: ("pool",))
    return EmulatedCapture


def test_replayer_captures_each_signature_on_its_nth_sighting(emulated):
    calls = []

    def fn(module, x, y):
        calls.append(x.shape)
        return module(x) + y

    lin = torch.nn.Linear(3, 3)
    replayer = cuda_graph.GraphReplayer(fn, what="testing", capture_after=2)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert replayer((lin,), (a, b)) is None                    # first sighting: eager
    first = replayer((lin,), (a, b))                            # second: captured and replayed
    assert emulated.captures == 1
    with torch.no_grad():                       # emulated replay runs the same kernels: exact
        torch.testing.assert_close(first, lin(a) + b, atol=0, rtol=0)
        # new values, same signature: replayed from the same graph with the new inputs
        c = torch.randn(4, 3)
        torch.testing.assert_close(replayer((lin,), (c, b)), lin(c) + b, atol=0, rtol=0)
    assert emulated.captures == 1
    # another shape or dtype is another graph, again after two sightings
    assert replayer((lin,), (a[:2], b[:2])) is None
    assert replayer((lin,), (a, b.double())) is None
    replayer((lin,), (a[:2], b[:2]))
    assert emulated.captures == 2 and len(replayer.graphs) == 2
    # the output handed out is a copy: a later replay does not change it
    kept = replayer((lin,), (a, b))
    snapshot = kept.clone()
    replayer((lin,), (c, b))
    torch.testing.assert_close(kept, snapshot, atol=0, rtol=0)


def test_capture_failure_warns_once_and_stays_eager(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated: operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graph, "CapturedCall", broken)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: ("pool",))
    replayer = cuda_graph.GraphReplayer(lambda m, x: x, what="the test", capture_after=1)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed.*simulated.*the test runs without"):
        assert replayer((), (torch.ones(2),)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert replayer((), (torch.ones(2),)) is None
    assert not replayer.enabled
    with pytest.raises(ValueError, match="capture_after"):
        cuda_graph.GraphReplayer(lambda: None, what="x", capture_after=0)


def tiny_generator(seed: int = 0):
    torch.manual_seed(seed)
    model = build_motion_generator(MotionGeneratorArgs(**htm.TINY_GENERATOR_ARGS), None)
    return fill_module_(model).eval()


def test_graphed_denoiser_matches_eager_across_windows_and_steps(emulated):
    """Every varying tensor (x_t, the step, each window's audio and context) reaches the graph."""
    model = tiny_generator()
    n, d = model.n_motions, model.motion_feat_dim
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, n, d, generator=g)
    with torch.inference_mode():
        for window in range(2):
            audio = torch.randn(1, n, model.args.feature_dim, generator=g)
            prev_motion = torch.randn(1, model.n_prev_motions, d, generator=g)
            prev_audio = torch.randn(1, model.n_prev_motions, model.args.feature_dim, generator=g)
            kwargs = dict(cfg_scale=2.0, pe_variant="legacy" if window else "head")
            eager = guided_denoiser(model, audio, prev_motion, prev_audio, **kwargs)
            graphed = guided_denoiser(model, audio, prev_motion, prev_audio, cuda_graphs=True, **kwargs)
            for t in (4, 3, 1):
                torch.testing.assert_close(graphed(x, t), eager(x, t), atol=0, rtol=0)  # same kernels
    # one capture per pe_variant, replayed for every later step and window
    assert emulated.captures == 2
    replayers = _GRAPHS[model.denoising_net][1]
    assert set(replayers) == {"head", "legacy"}


def test_new_parameters_get_new_graphs(emulated):
    model = tiny_generator()
    net = model.denoising_net
    x = torch.randn(1, model.n_motions, model.motion_feat_dim)
    audio = torch.randn(1, model.n_motions, model.args.feature_dim)
    prev_m, prev_a = model.start_context(1)
    with torch.inference_mode():
        denoise = guided_denoiser(model, audio, prev_m, prev_a, cfg_scale=1.5, cuda_graphs=True)
        denoise(x, 2), denoise(x, 2)
    before = _GRAPHS[net]
    model.load_state_dict(tiny_generator(seed=5).state_dict())   # same tensors, new values: graph stays
    assert _GRAPHS[net] is before
    model.double()                                                 # new storage: new graphs
    with torch.inference_mode():
        denoise = guided_denoiser(model, audio.double(), prev_m.double(), prev_a.double(), cfg_scale=1.5,
                                  cuda_graphs=True)
        eager = guided_denoiser(model, audio.double(), prev_m.double(), prev_a.double(), cfg_scale=1.5)
        denoise(x, 2)
        torch.testing.assert_close(denoise(x, 2), eager(x, 2), atol=0, rtol=0)
    assert _GRAPHS[net] is not before


def test_sample_window_off_cuda_warns_and_samples_eagerly():
    model = tiny_generator()
    audio = torch.randn(1, model.n_motions, model.args.feature_dim)
    x_T = torch.randn(1, model.n_motions, model.motion_feat_dim)
    noise = [torch.randn_like(x_T) for _ in range(model.args.n_diff_steps)]
    with torch.inference_mode():
        eager = sample_window(model, audio, None, None, x_T, cfg_scale=2.0, noise=noise)
        with pytest.warns(RuntimeWarning, match="cuda_graphs=True needs a CUDA device"):
            graphed = sample_window(model, audio, None, None, x_T, cfg_scale=2.0, noise=noise,
                                    cuda_graphs=True)
    torch.testing.assert_close(graphed, eager, atol=0, rtol=0)


# ------------------------------------------------------------------------- real capture

@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_graph_sampling_equals_eager_on_cuda():
    model = tiny_generator().cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    audio = torch.randn(1, model.n_motions, model.args.feature_dim, device="cuda", generator=g)
    x_T = torch.randn(1, model.n_motions, model.motion_feat_dim, device="cuda", generator=g)
    noise = [torch.randn_like(x_T) for _ in range(model.args.n_diff_steps)]
    with torch.inference_mode():
        eager = sample_window(model, audio, None, None, x_T, cfg_scale=2.0, noise=noise)
        graphed = [sample_window(model, audio, None, None, x_T, cfg_scale=2.0, noise=noise, cuda_graphs=True)
                   for _ in range(2)]
        reference = sample_window(to_float64(model), audio.double(), None, None, x_T.double(), cfg_scale=2.0,
                                  noise=to_float64(noise))
    for out in graphed:
        assert_float32_close(out, eager, reference)
    replayer = _GRAPHS[model.denoising_net][1]["head"]
    assert replayer.enabled and len(replayer.graphs) == 1
