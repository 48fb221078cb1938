"""Host memory: how much is free to this process, and a check before a big frame batch.

A batch of frames held in memory (ComfyUI's IMAGE: float32 ``[N, H, W, 3]``)
grows with the clip: one minute at 25 fps of a 1920x1080 photo is 1,500 x 24.9
MB = 37 GB. :func:`check_frame_batch` refuses such a batch before anything is
allocated, in one line that gives the size, what is free and the fix, instead
of letting the process die (and a ComfyUI server lose its queue).

What is free is the least of three limits (:func:`available_bytes`): the
system's available memory, the container's (cgroup) limit less its usage, and
the process's address-space limit (``ulimit -v``) less what it has mapped.
"""
from __future__ import annotations

from pathlib import Path

import psutil

try:
    import resource
except ImportError:  # Windows: no address-space limit to read
    resource = None

from .errors import JoyVASAError

#: A batch may take at most this share of the free memory: the rest is for the
#: render itself and for what the next nodes make of the batch (copies, encoders).
USABLE_SHARE = 0.75
_FLOAT32 = 4
_CGROUP = Path("/sys/fs/cgroup")


class HostMemoryError(JoyVASAError, MemoryError):
    """A frame batch that would not fit in host memory."""


def frame_batch_bytes(count: int, height: int, width: int, channels: int = 3,
                      itemsize: int = _FLOAT32) -> int:
    """Bytes of a batch of ``count`` frames ``[height, width, channels]`` (float32 by default)."""
    return int(count) * int(height) * int(width) * int(channels) * int(itemsize)


def _system_available() -> int:
    """The system's available memory in bytes (MemAvailable on Linux)."""
    return int(psutil.virtual_memory().available)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None    # "max": no limit


def _cgroup_available() -> int | None:
    """The container's memory limit less its usage (cgroup v2, else v1), or None."""
    for limit, usage in ((_CGROUP / "memory.max", _CGROUP / "memory.current"),
                         (_CGROUP / "memory" / "memory.limit_in_bytes",
                          _CGROUP / "memory" / "memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 1 << 60:
            return max(cap - used, 0)
    return None


def _address_space_available() -> int | None:
    """The soft ``RLIMIT_AS`` (``ulimit -v``) less this process's mapped size, or None."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return soft
    return max(soft - pages * resource.getpagesize(), 0)


def available_bytes() -> int:
    """Host memory this process can still take, in bytes."""
    limits = (_cgroup_available(), _address_space_available())
    return min([_system_available(), *(v for v in limits if v is not None)])


def gigabytes(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB"


def check_frame_batch(count: int, height: int, width: int, *, what: str, fix: str) -> None:
    """Raise :class:`HostMemoryError` if ``count`` float32 frames ``[height, width, 3]``
    would take more than :data:`USABLE_SHARE` of :func:`available_bytes`.

    what: the batch, as the user knows it (``"RenderPortrait's images"``); fix:
    what to do instead (a streaming node, a crop-only output, a shorter clip).
    """
    need = frame_batch_bytes(count, height, width)
    free = available_bytes()
    if need <= USABLE_SHARE * free:
        return
    raise HostMemoryError(
        f"{what} would take {gigabytes(need)} ({count} frames of {width}x{height}, float32) "
        f"but {gigabytes(free)} of memory is free: {fix}")
