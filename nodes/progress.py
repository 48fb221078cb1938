"""Progress reporting, frame previews and cancellation for long node runs."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import torch

import comfy.model_management as mm
import comfy.utils

#: Longest side of a preview frame sent to the browser (pixels; ComfyUI's default preview size).
PREVIEW_MAX_SIZE = 512
#: Least time between two previews (s): a JPEG per chunk would flood the page on a fast GPU.
PREVIEW_INTERVAL_S = 0.25


class NodeProgress:
    """``progress(done, total)`` for the core: drives the node's progress bar and raises
    ComfyUI's interrupt exception when the user cancels the run. :meth:`preview` shows
    a frame in the node as the bar's preview image, so users watch the video form."""

    def __init__(self, total: int = 1) -> None:
        self.total = max(int(total), 1)
        self.done = 0
        self.bar = comfy.utils.ProgressBar(self.total)
        self._last_preview = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.done, self.total = int(done), max(int(total), 1)
        self.bar.update_absolute(self.done, self.total)

    def preview(self, frames: torch.Tensor) -> None:
        """Show the last of ``frames`` ``[b, H, W, 3]`` (float 0..1 or uint8, any device);
        at most one preview per :data:`PREVIEW_INTERVAL_S`, and always the final frame."""
        now = time.monotonic()
        if now - self._last_preview < PREVIEW_INTERVAL_S and self.done < self.total:
            return
        from PIL import Image

        from joyvasa_core.video import frames_to_uint8_tensor

        self._last_preview = now
        picture = Image.fromarray(frames_to_uint8_tensor(frames[-1:])[0].cpu().numpy())
        self.bar.update_absolute(self.done, self.total, ("JPEG", picture, PREVIEW_MAX_SIZE))

    def previewing(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The frame chunks unchanged, each one previewed as it passes."""
        for frames in chunks:
            self.preview(frames)
            yield frames

    def counting(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The frame chunks unchanged, each one counted (its frames are done: a cancel is
        honoured here) and previewed as it passes."""
        for frames in chunks:
            self(self.done + frames.shape[0], self.total)
            self.preview(frames)
            yield frames


def check_interrupt(_done: int = 0, _total: int = 0) -> None:
    """``progress(done, total)`` that only honours ComfyUI's cancel: for work inside a step
    whose progress another bar already shows (motion sampled while a renderer reads it)."""
    mm.throw_exception_if_processing_interrupted()


def progress_bar(total: int = 1) -> NodeProgress:
    """A :class:`NodeProgress` of ``total`` steps."""
    return NodeProgress(total)
