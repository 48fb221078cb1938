"""The avatar driver shared by the transports: frames paired with their sound, resampling,
the idle clock, replies, interruption (tiny real-architecture models)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from helpers_serve import speech_pcm
from test_serve import server  # noqa: F401 - the tiny models and face, loaded once
from joyvasa_core.avatar import AvatarDriver, WallClock, at_rate, frame_pairs
from joyvasa_core.integrations import Avatar, live_settings
from joyvasa_core.live import LiveFrames


def batch(n: int, samples: int, rate: int = 16000, start: int = 3) -> LiveFrames:
    return LiveFrames(start, 25.0, torch.zeros(n, 4, 2, 3, dtype=torch.uint8),
                      torch.linspace(-1, 1, samples), rate)


def test_frame_pairs_cut_the_sound_exactly_and_at_rate_keeps_its_length():
    b = batch(3, 1921)
    pairs = list(frame_pairs(b))
    assert [i for i, _, _ in pairs] == [3, 4, 5] and [len(a) for _, _, a in pairs] == [640, 640, 641]
    assert np.array_equal(np.concatenate([a for _, _, a in pairs]), b.audio.numpy())
    up = at_rate(b, 48000)
    assert up.sample_rate == 48000 and len(up.audio) == 1921 * 3 and up.start == 3
    silent = at_rate(LiveFrames(0, 25.0, b.images, torch.zeros(1920), 16000), 48000)
    assert len(silent.audio) == 5760 and not silent.audio.any()
    assert at_rate(b, 16000) is b


def test_wall_clock_wants_frames_as_time_passes_and_re_anchors_when_behind():
    clock = WallClock(fps=50.0, lead=2)
    assert clock() == 2
    clock.handed(2)
    assert clock() == 0
    time.sleep(0.1)                                     # 5 frames due at 50 fps
    assert 4 <= clock() <= 8
    time.sleep(1.2)                                     # over a second behind: from now, no burst
    assert clock() == 2


def test_driver_idles_speaks_ends_the_reply_and_interrupts(server):  # noqa: F811
    avatar = Avatar(server.models, server.face, live_settings(chunk=4, lookahead=1, steps=2))
    reply, long_reply = speech_pcm(0.6, seed=1), speech_pcm(4.0, seed=2)
    pcm = np.frombuffer(reply, "<i2")

    async def scenario():
        driver = AvatarDriver(avatar.session(), wanted=lambda: 4)       # idle as fast as it renders
        out, marks = [], {}
        frames = driver.frames()
        async for b, idle in frames:
            out.append((b, idle))
            if len(out) == 6:
                driver.push(pcm, 16000)
                driver.end_reply()
            if driver.replies_ended and "ended" not in marks:
                marks["ended"] = len(out)
                driver.push(np.frombuffer(long_reply, "<i2"), 16000)
            if "ended" in marks and not out[-1][1] and "interrupt" not in marks:
                marks["interrupt"] = len(out)
                marks["done"] = driver.interrupt()             # done by the iterator's next step
            if "interrupt" in marks and len(out) >= marks["interrupt"] + 12:
                break
        driver.close()
        return out, marks

    out, marks = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert marks["done"].done()
    starts = [b.start for b, _ in out]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    spoken = [b for b, idle in out[:marks["ended"]] if not idle]
    assert sum(float(b.audio.abs().sum()) for b in spoken) == pytest.approx(np.abs(pcm / 32768).sum(), rel=1e-5)
    assert all(idle for _, idle in out[:6]) and all(idle for _, idle in out[marks["interrupt"] + 1:])
    assert sum(float(b.audio.abs().sum()) for b, _ in out[marks["interrupt"] + 1:]) == 0
