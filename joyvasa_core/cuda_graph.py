"""CUDA-graph replay of fixed-shape calls: render chunks and denoiser steps.

A captured graph replays every kernel of a call with one launch. That is what
launch-bound work needs on a GPU: a denoiser step of the 8-layer motion
transformer is about 300 small kernels, and eager PyTorch spends more time
issuing them than the GPU spends running them.

:class:`GraphReplayer` keeps one graph per input signature (shapes and
dtypes), captured the ``capture_after``-th time a signature is seen,
so one-off shapes (a last partial chunk) stay eager. Before a replay the inputs
are copied into the graph's static buffers; after it the output is cloned, as
the next replay overwrites it. If a capture fails the replayer warns once and
turns itself off: the caller then runs eagerly.

The function must take every tensor that changes between calls as an input
(anything else is frozen into the graph) and must not synchronise with the
host. Modules are passed on each call rather than held, so a replayer cached
per module does not keep that module alive.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import chain

import torch
from torch import nn

GraphFn = Callable[..., torch.Tensor]


def modules_signature(*modules: nn.Module) -> tuple:
    """Storage, dtype and layout of every parameter and buffer: changes when they are replaced.

    A graph replays on the addresses it captured, so it is stale once this changes.
    """
    return tuple((t.data_ptr(), t.dtype, t.stride())
                 for m in modules for t in chain(m.parameters(), m.buffers()))


class CapturedCall:
    """``fn(*modules, *inputs)`` captured as one CUDA graph for the shapes of ``inputs``."""

    def __init__(self, fn: GraphFn, modules: Sequence[nn.Module], inputs: Sequence[torch.Tensor],
                 pool: tuple | None, warmup: int = 2) -> None:
        self.static_in = tuple(t.clone() for t in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):     # cuDNN/cuBLAS algorithm choice, lazy init, allocator
                fn(*modules, *self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.static_out = fn(*modules, *self.static_in)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for static, t in zip(self.static_in, inputs):
            static.copy_(t, non_blocking=True)
        self.graph.replay()
        return self.static_out.clone()


class GraphReplayer:
    """Graphs of ``fn(*modules, *inputs)`` by input signature; see the module docstring.

    Args:
        fn: the function to capture (eager or ``torch.compile``-d).
        what: what runs eagerly after a failed capture, for the warning ("rendering").
        capture_after: sightings of a signature before it is captured (>= 1).
    """

    def __init__(self, fn: GraphFn, *, what: str, capture_after: int = 2) -> None:
        if capture_after < 1:
            raise ValueError(f"capture_after must be >= 1, got {capture_after}")
        self.fn = fn
        self.what = what
        self.capture_after = capture_after
        self.enabled = True
        self.graphs: dict[tuple, CapturedCall] = {}
        self.seen: dict[tuple, int] = {}
        self.pool: tuple | None = None     # one memory pool for all of this replayer's graphs

    def __call__(self, modules: Sequence[nn.Module],
                 inputs: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """The graphed result, or None when the caller should run ``fn`` eagerly."""
        if not self.enabled:
            return None
        signature = tuple((t.shape, t.dtype) for t in inputs)
        graph = self.graphs.get(signature)
        if graph is None:
            self.seen[signature] = self.seen.get(signature, 0) + 1
            if self.seen[signature] < self.capture_after:
                return None
            try:
                if self.pool is None:
                    self.pool = torch.cuda.graph_pool_handle()
                graph = self.graphs[signature] = CapturedCall(self.fn, modules, inputs, self.pool)
            except Exception as exc:  # noqa: BLE001 - an uncapturable op: stay eager
                self.enabled = False
                warnings.warn(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); "
                              f"{self.what} runs without graphs", RuntimeWarning, stacklevel=3)
                return None
        return graph(*inputs)
