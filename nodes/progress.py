"""Progress reporting and cancellation for long node runs."""
from __future__ import annotations

from collections.abc import Callable

import comfy.model_management as mm
import comfy.utils


def progress_bar(total: int = 1) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for the core: drives the node's progress
    bar and raises ComfyUI's interrupt exception when the user cancels the run."""
    bar = comfy.utils.ProgressBar(max(int(total), 1))

    def progress(done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(int(done), max(int(total), 1))

    return progress
