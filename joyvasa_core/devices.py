"""Device and precision choice: what "auto" means, in one place."""
from __future__ import annotations

import os
import shutil
import sys

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")
_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps, else cpu; other names are checked.

    Accepts ``"cuda:1"`` style names and ``torch.device`` objects.
    """
    if isinstance(name, torch.device):
        return name
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but this PyTorch has no CUDA GPU; "
                         "use --device cpu or auto")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {name!r} requested but MPS is not available; "
                         "use --device cpu or auto")
    return device


def resolve_dtype(precision: str | torch.dtype = "auto",
                  device: torch.device | str = "cpu") -> torch.dtype:
    """Compute dtype of the networks.

    ``"auto"``: fp16 on CUDA and MPS, fp32 on CPU (half precision is slow or
    unsupported there). fp16 rather than bf16 because the official LivePortrait
    runs these networks in fp16 and, measured on the full-size renderer
    (``benchmarks/precision.py``), fp16 frames are about 8x closer to fp32 than
    bf16 frames with ample overflow headroom; the renderer checks its first fp16
    chunk for inf/nan and names bf16/fp32 as the fix.
    """
    if isinstance(precision, torch.dtype):
        return precision
    precision = precision.strip().lower()
    if precision in _PRECISIONS:
        return _PRECISIONS[precision]
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISION_CHOICES}")
    return torch.float16 if torch.device(device).type in ("cuda", "mps") else torch.float32


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has AMX with bfloat16 (Intel Sapphire Rapids and later): the
    ``amx_bf16`` flag of /proc/cpuinfo (``cpuinfo``: its text, for tests). False where
    the flags cannot be read (other systems)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    return any(line.startswith("flags") and "amx_bf16" in line.split()
               for line in cpuinfo.splitlines())


def cpu_compiler_found() -> bool:
    """Whether ``torch.compile`` can build CPU kernels here: the C++ compiler its inductor
    backend calls is on PATH (``$CXX``, else g++ or clang++; ``cl`` on Windows)."""
    names = ["cl"] if sys.platform == "win32" else [os.environ.get("CXX", ""), "g++", "clang++"]
    return any(name and shutil.which(name) for name in names)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is a half-precision type, else unchanged (float64 stays float64,
    so a float64 module computes its float32 islands in float64: the tests' reference)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class PendingCopy:
    """A tensor on its way to another device (:func:`copy_async`); :meth:`result` waits for it."""

    def __init__(self, tensor: torch.Tensor, event: "torch.cuda.Event | None" = None) -> None:
        self.tensor, self.event = tensor, event

    def result(self) -> torch.Tensor:
        """The copied tensor, once the copy has finished."""
        if self.event is not None:
            self.event.synchronize()
        return self.tensor


def copy_async(tensor: torch.Tensor, device: torch.device | str) -> PendingCopy:
    """Start copying ``tensor`` to ``device``. From CUDA to the CPU the copy goes into pinned
    memory without blocking (the GPU goes on with the next chunk while the caller waits on
    the previous one); anything else is copied at once."""
    device = torch.device(device)
    if tensor.device.type == "cuda" and device.type == "cpu":
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return PendingCopy(host, event)
    return PendingCopy(tensor.to(device))
