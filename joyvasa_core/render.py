"""Batched rendering: warp the source feature volume to each driving keypoint set, decode with G.

Cost per 512² frame: W ≈ 342 GFLOP, G ≈ 892 GFLOP. :class:`RenderOptions`
collects the switches that make that fast on a given machine; every default
is safe on CPU, CUDA and MPS and leaves float32 results unchanged (up to
float32 reordering).

Precision follows the modules (``RenderOptions.dtype`` converts them):
keypoints stay float32; W computes its sampling grids, heatmaps,
``grid_sample`` and softmax in float32 internally, and G its instance norms.
Frames come out in G's dtype. Against fp32, with the synthetic weights
(``benchmarks/precision.py``, CPU): fp16 frames differ by mean 0.003 / max
0.03, bf16 by mean 0.022 / max 0.2 (G amplifies input noise ~25× with these
weights). fp16 has no overflow there (largest activation ≈ 55, in G's
residual stream; float16 holds 65504), and a non-finite first chunk raises
instead of silently rendering black frames (``check_finite``). On CUDA
float32 convolutions use TF32 unless ``torch.backends.cudnn.allow_tf32`` is
turned off.

Preparation happens in place, once per (modules, options): W and G are cast
to ``dtype``, G's spectral-norm weights are folded (exact; see
:meth:`SPADEDecoder.fold_spectral_norm_`), and conv weights take the
requested memory format. It is redone automatically when the parameters are
replaced (``.to()``, ``load_state_dict`` dropping the fold); after editing
weights in place by other means call ``spade.fold_spectral_norm_()``.
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn

from .cuda_graph import GraphReplayer, modules_signature
from .devices import PendingCopy, copy_async, cpu_compiler_found, cpu_has_amx
from .models.spade import SPADEDecoder
from .models.warping import WarpingNetwork

#: Frames per chunk when the device's free memory can't be read (CPU, MPS).
DEFAULT_BATCH_SIZE = 4
#: Frames per chunk on the CPU, whatever is asked. Batching gains nothing there (2 cores:
#: 0.96-1.0x, benchmarks/render.py), and a cancel is seen between chunks: one frame per
#: chunk keeps a cancel within one frame's render time instead of a whole batch's.
CPU_CHUNK_FRAMES = 1
#: Upper bound of the automatic chunk: larger batches don't raise GPU throughput further.
MAX_AUTO_BATCH_SIZE = 16
#: Share of the free GPU memory the automatic chunk may fill (allocator slack, cuDNN workspaces).
AUTO_MEMORY_FRACTION = 0.5
#: Peak activation memory of one 512² frame through W then G (MiB), by element size of the
#: compute dtype. Measured (peak RSS growth, CPU, batch 1 and 2, official sizes): fp32 W ≈ 175,
#: G ≈ 420; bf16 W ≈ 115, G ≈ 265 (half precision is not half: grids, softmax and instance
#: norms stay float32). W and G don't overlap; the larger one plus margin is used.
_FRAME_MIB = {4: 480, 2: 300}

Chunk = Callable[[WarpingNetwork, SPADEDecoder, torch.Tensor, torch.Tensor, torch.Tensor],
                 torch.Tensor]


@dataclass(frozen=True)
class RenderOptions:
    """Speed switches of :func:`iter_render`; the defaults are safe everywhere.

    batch_size: frames per chunk (memory is bounded by one chunk in flight);
        None = :func:`auto_batch_size` (from free VRAM on CUDA, else
        ``DEFAULT_BATCH_SIZE``). A ``batch_size`` argument of iter_render wins.
    dtype: compute dtype of W and G (float32, float16, bfloat16); None = keep
        the modules' dtype. Otherwise W and G are converted **in place**.
    channels_last: NHWC weights (so NHWC activations) for the 2-D convs: all
        of G (892 GFLOP/frame) and W's last 2-D convs. Tensor-core
        convolutions want this layout, and so do oneDNN's AMX kernels. None =
        on for CUDA in fp16/bf16 and for bf16 on CPUs with AMX
        (:func:`~joyvasa_core.devices.cpu_has_amx`), off elsewhere: on an
        AVX512-BF16 CPU without AMX it made G 2x slower in bf16 (see
        docs/benchmarks.md, CPU fast path), fp32 CPUs gain little, MPS
        support is partial, fp32 CUDA gains only through TF32.
    channels_last_3d: NDHWC weights for W's 3-D convs (its hourglass, most of
        W's 342 GFLOP/frame); None = same rule as ``channels_last``.
    compile: wrap the W+G chunk in ``torch.compile`` (first chunks compile,
        one graph per chunk size). If compiling fails (no C++ compiler,
        Windows, MPS, old Python) a warning is issued once and rendering
        continues eagerly. None = on for bfloat16 on the CPU (the CPU fast
        path) where a C++ compiler is found
        (:func:`~joyvasa_core.devices.cpu_compiler_found`), off elsewhere:
        there the convolutions are 92 % of a compiled frame and the fused
        normalisations and casts around them make W+G about 1.2x faster, at a
        one-off compile of about 30 s (docs/benchmarks.md, CPU fast path).
    cuda_graphs: replay a captured CUDA graph for every chunk size seen twice
        (input copies into static buffers, one ``clone`` of the frames out;
        :mod:`joyvasa_core.cuda_graph`). Ignored with a warning off CUDA or if
        capture fails.
    cudnn_benchmark: let cuDNN time its convolution algorithms for each chunk
        shape (the first chunk of a shape is slower). Set only while a chunk
        renders, restored after. None = on for CUDA.
    output_device: where frames are yielded; None = the modules' device. To
        the CPU from CUDA, copies go into pinned memory without blocking and
        each chunk is handed out when the next one is queued, so the GPU
        renders while the caller encodes.
    check_finite: raise ``FloatingPointError`` on a non-finite frame; None =
        check the first chunk after preparation, in float16 only (one host
        sync). True checks every chunk (a host sync each).
    """

    batch_size: int | None = None
    dtype: torch.dtype | None = None
    channels_last: bool | None = None
    channels_last_3d: bool | None = None
    compile: bool | None = None
    cuda_graphs: bool = False
    cudnn_benchmark: bool | None = None
    output_device: torch.device | str | None = None
    check_finite: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32, float16 or bfloat16, got {self.dtype}")


def compiles_by_default(device: torch.device, dtype: torch.dtype) -> bool:
    """``RenderOptions.compile=None``'s rule for W and G on ``device`` in ``dtype``: bfloat16 on
    the CPU (the CPU fast path) where a C++ compiler is found."""
    return device.type == "cpu" and dtype == torch.bfloat16 and cpu_compiler_found()


def estimate_frame_bytes(dtype: torch.dtype) -> int:
    """Peak activation memory of one 512² frame rendered in ``dtype`` (bytes, an upper estimate)."""
    size = torch.empty((), dtype=dtype).element_size()
    return _FRAME_MIB[4 if size >= 4 else 2] * 2**20


def auto_batch_size(device: torch.device | str, dtype: torch.dtype,
                    free_bytes: int | None = None) -> int:
    """Frames per chunk that fit ``AUTO_MEMORY_FRACTION`` of the free memory.

    ``free_bytes``: memory available for activations; None = read it on CUDA
    (driver-free memory plus what PyTorch's cache holds unused). Without it
    (CPU, MPS) ``DEFAULT_BATCH_SIZE``. Result in [1, MAX_AUTO_BATCH_SIZE].
    """
    device = torch.device(device)
    if free_bytes is None:
        if device.type != "cuda":
            return DEFAULT_BATCH_SIZE
        free_bytes, _ = torch.cuda.mem_get_info(device)
        free_bytes += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    fit = int(free_bytes * AUTO_MEMORY_FRACTION) // estimate_frame_bytes(dtype)
    return max(1, min(MAX_AUTO_BATCH_SIZE, fit))


def frames_per_chunk(device: torch.device | str, dtype: torch.dtype,
                     requested: int | None = None) -> int:
    """The chunk size the product's render loop uses: ``requested`` (None =
    :func:`auto_batch_size`), capped at :data:`CPU_CHUNK_FRAMES` on the CPU."""
    size = requested if requested is not None else auto_batch_size(device, dtype)
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    return min(size, CPU_CHUNK_FRAMES) if torch.device(device).type == "cpu" else size


# --------------------------------------------------------------------------- one chunk

def _render_chunk(warping: WarpingNetwork, spade: SPADEDecoder, feature_3d: torch.Tensor,
                  kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """W then G on one chunk: feature [1 or b, C, D, H, W], kp [1 or b, K, 3], [b, K, 3] -> [b, 3, 512, 512]."""
    warped = warping(feature_3d, kp_driving=kp_driving, kp_source=kp_source)["out"]
    return spade(warped.to(spade.fc.weight.dtype))


def _set_memory_format_(module: nn.Module, channels_last: bool, channels_last_3d: bool) -> None:
    """4-D tensors (2-D conv weights) to channels_last or contiguous, 5-D (3-D conv
    weights) to channels_last_3d or contiguous; in place, values unchanged."""
    formats = {4: torch.channels_last if channels_last else torch.contiguous_format,
               5: torch.channels_last_3d if channels_last_3d else torch.contiguous_format}
    for sub in module.modules():
        for table in (sub._parameters, sub._buffers):
            for name, t in table.items():
                fmt = formats.get(t.dim()) if t is not None else None
                if fmt is None or t.is_contiguous(memory_format=fmt):
                    continue
                if isinstance(t, nn.Parameter):
                    t.data = t.data.contiguous(memory_format=fmt)
                else:
                    table[name] = t.contiguous(memory_format=fmt)


@contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = on`` for the block, the caller's value restored after."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class _Renderer:
    """Prepared state for one (W, G, options): compiled chunk, CUDA graphs, checks.

    Holds no reference to the modules (they are passed to every call), so it
    can be cached per G without keeping G alive.
    """

    def __init__(self, warping: WarpingNetwork, spade: SPADEDecoder, options: RenderOptions):
        device = spade.fc.weight.device
        # outside inference mode, or the converted weights would become inference tensors
        with torch.inference_mode(False), torch.no_grad():
            if options.dtype is not None:
                warping.to(options.dtype)
                spade.to(options.dtype)
            spade.fold_spectral_norm_()
            dtype = spade.fc.weight.dtype
            matrix_units = (device.type == "cuda" and dtype != torch.float32) or \
                (device.type == "cpu" and dtype == torch.bfloat16 and cpu_has_amx())
            layouts = [matrix_units if flag is None else flag
                       for flag in (options.channels_last, options.channels_last_3d)]
            for module in (warping, spade):
                _set_memory_format_(module, *layouts)
        self.options = options
        self.signature = modules_signature(warping, spade)
        self.dtype = spade.fc.weight.dtype
        self.device = device
        self.chunk: Chunk = _render_chunk
        compile_chunk = compiles_by_default(device, self.dtype) if options.compile is None \
            else options.compile
        if compile_chunk:
            try:
                self.chunk = torch.compile(_render_chunk, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - any failure means: run eagerly
                self._fall_back("torch.compile", exc)
        self.graphs: GraphReplayer | None = None
        if options.cuda_graphs and device.type == "cuda":
            # through self.chunk: a torch.compile that failed on its first call is not captured
            self.graphs = GraphReplayer(lambda *args: self.chunk(*args), what="rendering")
        elif options.cuda_graphs:
            warnings.warn(f"RenderOptions(cuda_graphs=True) needs a CUDA device, not {device}; "
                          "rendering without graphs", RuntimeWarning, stacklevel=4)
        self.cudnn_benchmark = device.type == "cuda" if options.cudnn_benchmark is None \
            else options.cudnn_benchmark
        check = options.check_finite
        self.checks_left = (1 if self.dtype == torch.float16 else 0) if check is None \
            else (-1 if check else 0)   # -1: every chunk

    def _fall_back(self, what: str, exc: Exception) -> None:
        warnings.warn(f"{what} failed ({type(exc).__name__}: {exc}); rendering eagerly. "
                      f"Turn the option off in RenderOptions to silence this.",
                      RuntimeWarning, stacklevel=5)

    def __call__(self, warping: WarpingNetwork, spade: SPADEDecoder, feature_3d: torch.Tensor,
                 kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        inputs = (feature_3d, kp_source, kp_driving)
        with _cudnn_benchmark(self.cudnn_benchmark):
            frames = None if self.graphs is None else self.graphs((warping, spade), inputs)
            if frames is None:
                frames = self._run(warping, spade, inputs)
        if self.checks_left:
            self.checks_left -= self.checks_left > 0
            if not bool(torch.isfinite(frames).all()):
                raise FloatingPointError(
                    f"non-finite frames rendered in {self.dtype} (activation overflow in W/G); "
                    "render in bfloat16 or float32: RenderOptions(dtype=torch.bfloat16) or "
                    "precision 'bf16'/'fp32'")
        return frames

    def _run(self, warping, spade, inputs) -> torch.Tensor:
        if self.chunk is _render_chunk:
            return _render_chunk(warping, spade, *inputs)
        try:
            return self.chunk(warping, spade, *inputs)
        except Exception as exc:  # noqa: BLE001 - compile errors surface on the first calls
            self._fall_back("torch.compile", exc)
            self.chunk = _render_chunk
            return _render_chunk(warping, spade, *inputs)


_RENDERERS: weakref.WeakKeyDictionary[SPADEDecoder, _Renderer] = weakref.WeakKeyDictionary()


def _renderer_for(warping: WarpingNetwork, spade: SPADEDecoder,
                  options: RenderOptions) -> _Renderer:
    """The cached renderer of ``spade`` if it was made for these options and these tensors."""
    renderer = _RENDERERS.get(spade)
    if (renderer is None or renderer.options != options
            or renderer.signature != modules_signature(warping, spade)):
        renderer = _RENDERERS[spade] = _Renderer(warping, spade, options)
    return renderer


# --------------------------------------------------------------------------- frames out

def _rows(t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of a per-frame tensor; a batch-1 tensor is shared by every frame."""
    return t if t.shape[0] == 1 else t[start:stop]


def iter_render(warping: WarpingNetwork, spade: SPADEDecoder, feature_3d: torch.Tensor,
                kp_source: torch.Tensor, kp_driving: torch.Tensor,
                batch_size: int | None = None, *,
                options: RenderOptions | None = None) -> Iterator[torch.Tensor]:
    """Render frames chunk by chunk.

    feature_3d: [1 or B, 32, 16, 64, 64] source appearance volume (F output);
    kp_source: [1 or B, 21, 3] source keypoints x_s; kp_driving: [B, 21, 3]
    driving keypoints x_d (normalised units). Yields images [b, 3, 512, 512]
    in (0, 1), b <= batch_size, in frame order, on the modules' device (or
    ``options.output_device``). ``batch_size`` overrides ``options.batch_size``;
    both None = :func:`auto_batch_size`. W and G are prepared in place on the
    first call (see the module docstring).
    """
    options = options or RenderOptions()
    if batch_size is not None:
        options = replace(options, batch_size=batch_size)
    frames = kp_driving.shape[0]
    for name, t in (("feature_3d", feature_3d), ("kp_source", kp_source)):
        if t.shape[0] not in (1, frames):
            raise ValueError(f"{name} batch {t.shape[0]} must be 1 or match kp_driving's {frames}")
    renderer = _renderer_for(warping, spade,
                             replace(options, batch_size=None, output_device=None))
    size = options.batch_size or auto_batch_size(renderer.device, renderer.dtype)
    param = next(warping.parameters())
    feature_3d = feature_3d.to(param.device, param.dtype)
    kp_source = kp_source.to(param.device, torch.float32)
    kp_driving = kp_driving.to(param.device, torch.float32)
    out_device = None if options.output_device is None else torch.device(options.output_device)

    pending: PendingCopy | None = None
    for start in range(0, frames, size):
        stop = min(start + size, frames)
        with torch.inference_mode():
            chunk = renderer(warping, spade, _rows(feature_3d, start, stop),
                             _rows(kp_source, start, stop), kp_driving[start:stop])
        if out_device is None or out_device == chunk.device:
            yield chunk
            continue
        copy = copy_async(chunk, out_device)
        if pending is not None:      # hand out the previous chunk once this one is queued
            yield pending.result()
        pending = copy
    if pending is not None:
        yield pending.result()


def render(warping: WarpingNetwork, spade: SPADEDecoder, feature_3d: torch.Tensor,
           kp_source: torch.Tensor, kp_driving: torch.Tensor, batch_size: int | None = None, *,
           options: RenderOptions | None = None) -> torch.Tensor:
    """All frames at once: [B, 3, 512, 512] in (0, 1); see :func:`iter_render`."""
    return torch.cat(list(iter_render(warping, spade, feature_3d, kp_source, kp_driving,
                                      batch_size, options=options)), dim=0)
