"""The LiveKit Agents adapter, driven directly (no LiveKit server can run here): livekit.rtc audio
frames and a segment end in, video frames and the paired audio out; clear_buffer interrupts.
The avatar worker is checked by import and argument parsing."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from helpers_agents import RATE, WAIT, until
from helpers_serve import speech_pcm
from test_serve import server  # noqa: F401 - the tiny models and face, loaded once

pytest.importorskip("livekit.agents")
from livekit import rtc  # noqa: E402
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator  # noqa: E402

from joyvasa_core.integrations import Avatar, live_settings  # noqa: E402
from joyvasa_core.integrations.livekit import JoyVASAVideoGenerator  # noqa: E402



def frames_of(pcm: bytes, size: int = 480) -> list[rtc.AudioFrame]:
    """10 ms-ish rtc.AudioFrames of s16 mono PCM, as the avatar runner's audio receiver passes them."""
    return [rtc.AudioFrame(pcm[i:i + 2 * size], RATE, 1, len(pcm[i:i + 2 * size]) // 2)
            for i in range(0, len(pcm), 2 * size)]


def level(items: list) -> float:
    return float(sum(np.abs(np.frombuffer(bytes(a.data), "<i2").astype(np.int64)).sum()
                     for a in items if isinstance(a, rtc.AudioFrame)))


def kinds(items: list, kind) -> list:
    return [i for i in items if isinstance(i, kind)]


def test_video_generator_pairs_speech_with_frames_ends_segments_and_clears(server):  # noqa: F811
    avatar = Avatar(server.models, server.face, live_settings(chunk=4, lookahead=1, steps=2))
    reply, long_reply = speech_pcm(0.6, seed=1), speech_pcm(4.0, seed=2)

    async def scenario():
        generator = JoyVASAVideoGenerator(avatar=avatar, sample_rate=RATE)
        assert isinstance(generator, VideoGenerator) and generator.size == (38, 46)
        out: list = []

        async def read():
            async for item in generator:
                out.append(item)

        reader = asyncio.ensure_future(read())
        try:
            return await talk(generator, out)
        finally:
            await generator.aclose()
            reader.cancel()

    async def talk(generator, out):
        await until(lambda: len(out) >= 10, "idle frames")
        idle = list(out)
        mark = len(out)
        for frame in frames_of(reply):
            await generator.push_audio(frame)
        await generator.push_audio(AudioSegmentEnd())
        await until(lambda: kinds(out[mark:], AudioSegmentEnd), "the segment end")
        end = mark + next(i for i, x in enumerate(out[mark:]) if isinstance(x, AudioSegmentEnd))
        spoken = out[mark:end]
        mark = len(out)
        for frame in frames_of(long_reply):
            await generator.push_audio(frame)
        await until(lambda: len(kinds(out[mark:], rtc.AudioFrame)) >= 4, "the long reply's first frames")
        generator.clear_buffer()
        cleared = len(out)
        await until(lambda: len(kinds(out[cleared:], rtc.VideoFrame)) >= 25, "idle frames after clear_buffer")
        interrupted = out[mark:]
        mark = len(out)
        for speech in (reply, speech_pcm(0.4, seed=3)):             # two replies back to back
            for frame in frames_of(speech):
                await generator.push_audio(frame)
            await generator.push_audio(AudioSegmentEnd())
        await until(lambda: len(kinds(out[mark:], AudioSegmentEnd)) == 2, "both segment ends")
        return idle, spoken, interrupted, out[mark:]

    idle, spoken, interrupted, two = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert not kinds(idle, rtc.AudioFrame) and {(v.width, v.height) for v in idle} == {(38, 46)}
    first = next(i for i, x in enumerate(spoken) if isinstance(x, rtc.AudioFrame)) - 1
    speaking = spoken[first:]                       # idle frames may come first, then speech: V A V A ...
    assert [type(x) for x in speaking] == [rtc.VideoFrame, rtc.AudioFrame] * (len(speaking) // 2)
    videos, audios = kinds(speaking, rtc.VideoFrame), kinds(speaking, rtc.AudioFrame)
    assert len(audios) >= len(reply) // 2 // 640                  # the whole reply, one sound per frame
    assert {v.type for v in videos} == {rtc.VideoBufferType.RGBA} and len(bytes(videos[0].data)) == 38 * 46 * 4
    assert {(a.sample_rate, a.samples_per_channel) for a in audios} == {(RATE, 640)}   # 40 ms per frame
    # the speech, all of it, and only it (padding is silence); int16 rounding aside
    assert level(audios) == pytest.approx(level(frames_of(reply)), abs=len(audios) * 640)
    cut = kinds(interrupted, rtc.AudioFrame)
    assert 4 <= len(cut) < 50 and level(cut) < 0.5 * level(frames_of(long_reply))
    assert not kinds(interrupted, AudioSegmentEnd)                # the runner reports it interrupted
    ends = [i for i, x in enumerate(two) if isinstance(x, AudioSegmentEnd)]
    # each end right after its reply's last sound, the second reply's sound between them
    assert isinstance(two[ends[0] - 1], rtc.AudioFrame) and isinstance(two[ends[1] - 1], rtc.AudioFrame)
    assert len(kinds(two[ends[0]:ends[1]], rtc.AudioFrame)) >= len(speech_pcm(0.4, seed=3)) // 2 // 640


def test_worker_parses_its_arguments_and_names_what_is_missing(capsys, monkeypatch, tmp_path):
    from joyvasa_core.errors import EXIT_ERROR
    from joyvasa_core.integrations import livekit_worker

    with pytest.raises(SystemExit) as done:
        livekit_worker.main(["--help"])
    assert done.value.code == 0 and "--token" in capsys.readouterr().out
    args = livekit_worker.build_parser().parse_args(
        ["--url", "wss://example.invalid", "--token", "t", "--image", "p.png", "--blink", "auto",
         "--device", "cpu", "--sample-rate", "48000"])
    assert (args.url, args.blink, args.device, args.sample_rate) == ("wss://example.invalid", "auto", "cpu", 48000)
    monkeypatch.delenv("LIVEKIT_URL", raising=False)
    monkeypatch.delenv("LIVEKIT_TOKEN", raising=False)
    assert livekit_worker.main(["--image", str(tmp_path / "p.png")]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --url and --token are needed (or LIVEKIT_URL and LIVEKIT_TOKEN)"]
