"""Device and precision choice: what "auto" means, in one place."""
from __future__ import annotations

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

    ``"auto"``: bf16 on a CUDA GPU that supports it, fp16 on other CUDA GPUs and
    on MPS, fp32 on CPU (half precision is slow or unsupported there).
    """
    if isinstance(precision, torch.dtype):
        return precision
    precision = precision.strip().lower()
    if precision in _PRECISIONS:
        return _PRECISIONS[precision]
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISION_CHOICES}")
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, _ = torch.cuda.get_device_capability(index)
        return torch.bfloat16 if major >= 8 else torch.float16   # native bf16 from Ampere on
    if device.type == "mps":
        return torch.float16
    return torch.float32

