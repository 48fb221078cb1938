"""Shared by the voice-agent adapter tests (tests/test_pipecat.py, tests/test_livekit.py)."""
from __future__ import annotations

import asyncio

#: Seconds for any one expectation (never hit normally; the shared machine may be slow).
WAIT = 60
RATE = 16000


async def until(condition, what: str) -> None:
    """Wait until ``condition()`` holds, polling every 20 ms; fail naming ``what`` after WAIT s."""
    for _ in range(WAIT * 50):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
