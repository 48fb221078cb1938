"""Helpers shared by the benchmark scripts: timing, peak memory, tables.

Peak host memory is read from ``/proc/self/status`` (``VmHWM``, the resident
set's high-water mark), so no psutil is needed; on systems without /proc the
``resource`` module's ``ru_maxrss`` is used.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Run as `python benchmarks/x.py` from anywhere: the package and the test helpers
# (synthetic-weight and tiny models) are importable.
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0   # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_vram(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_vram_mib(device: torch.device) -> float | None:
    """Peak allocated GPU memory since the last reset (MiB); None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


@contextmanager
def timed(device: torch.device) -> Iterator[dict]:
    """``with timed(dev) as t: ...`` then ``t["s"]`` holds the synchronized seconds."""
    result: dict = {}
    synchronize(device)
    start = time.perf_counter()
    yield result
    synchronize(device)
    result["s"] = time.perf_counter() - start


def best_time(fn: Callable[[], object], device: torch.device, repeats: int = 3,
              warmup: int = 1) -> float:
    """Smallest wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        with timed(device) as t:
            fn()
        times.append(t["s"])
    return min(times)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain fixed-width table (floats with 3 significant decimals)."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return "-" if value is None else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({torch.get_num_threads()} threads)"
