"""A lowered memory limit for a test: this process's soft address-space limit (``ulimit -v``)."""
from __future__ import annotations

import contextlib
import resource
from pathlib import Path


def mapped_bytes() -> int:
    """Address space this process has mapped now (bytes)."""
    return int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def lowered_memory_limit(headroom: int):
    """Within the block, the process may map only ``headroom`` more bytes (the soft
    RLIMIT_AS is lowered, then restored: a soft limit can go back up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped_bytes() + headroom, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
