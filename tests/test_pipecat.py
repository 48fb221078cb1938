"""The Pipecat adapter in a real Pipecat pipeline, in process, with the tiny real-architecture
models: TTS frames in, image and audio frames out; idle frames between replies; interruption."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from helpers_agents import RATE, WAIT, until
from helpers_serve import speech_pcm
from test_serve import server  # noqa: F401 - the tiny models and face, loaded once

pytest.importorskip("pipecat")
from pipecat.frames.frames import (EndFrame, InterruptionFrame, OutputImageRawFrame,  # noqa: E402
                                   TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from joyvasa_core.integrations import Avatar, live_settings  # noqa: E402
from joyvasa_core.integrations.pipecat import JoyVASAVideoService  # noqa: E402



class Collect(FrameProcessor):
    """The transport's output stand-in: records every image and audio frame, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list = []

    async def process_frame(self, frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, (OutputImageRawFrame, TTSAudioRawFrame)):
            self.out.append(frame)
        await self.push_frame(frame, direction)

    def since(self, mark: int, kind) -> list:
        return [f for f in self.out[mark:] if isinstance(f, kind)]


def tts(pcm: bytes, size: int = 3200) -> list:
    return [TTSAudioRawFrame(audio=pcm[i:i + size], sample_rate=RATE, num_channels=1)
            for i in range(0, len(pcm), size)]


def level(frames: list) -> float:
    """Sum of |samples| of audio frames (s16)."""
    return float(sum(np.abs(np.frombuffer(f.audio, "<i2").astype(np.int64)).sum() for f in frames))


def idle_images_after_speech(frames: list) -> int:
    """Images without audio after the last audio frame (idle frames once a reply is over)."""
    last = max((i for i, f in enumerate(frames) if isinstance(f, TTSAudioRawFrame)), default=-1)
    return sum(1 for f in frames[last + 1:] if isinstance(f, OutputImageRawFrame) and not f.sync_with_audio)


def test_tts_frames_become_video_idle_between_replies_and_an_interruption_ends_a_reply(server):  # noqa: F811
    avatar = Avatar(server.models, server.face, live_settings(chunk=4, lookahead=1, steps=2))
    service, sink = JoyVASAVideoService(avatar=avatar), Collect()
    reply, long_reply = speech_pcm(0.6, seed=1), speech_pcm(4.0, seed=2)

    async def scenario():
        worker = PipelineWorker(Pipeline([service, sink]), idle_timeout_secs=None, enable_rtvi=False)
        runner = WorkerRunner(handle_sigint=False)
        running = asyncio.ensure_future(runner.run(worker))
        try:
            return await talk(worker, running)
        finally:
            if not running.done():                # a failed expectation: stop the pipeline first
                await worker.cancel()
                await asyncio.wait_for(running, WAIT)

    async def talk(worker, running):
        await until(lambda: len(sink.since(0, OutputImageRawFrame)) >= 10, "idle frames before speech")
        before = list(sink.out)
        mark = len(sink.out)
        await worker.queue_frames([TTSStartedFrame(), *tts(reply), TTSStoppedFrame()])
        await until(lambda: level(sink.since(mark, TTSAudioRawFrame)) >= 0.99 * level(tts(reply)),
                    "the reply's audio")
        await until(lambda: idle_images_after_speech(sink.out[mark:]) >= 10, "idle frames after the reply")
        first = sink.out[mark:]
        mark = len(sink.out)
        await worker.queue_frames([TTSStartedFrame(), *tts(long_reply)])
        await until(lambda: len(sink.since(mark, TTSAudioRawFrame)) >= 4, "the long reply's first frames")
        await worker.queue_frame(InterruptionFrame())
        await until(lambda: idle_images_after_speech(sink.out[mark:]) >= 25,
                    "idle frames after the interruption")
        second = sink.out[mark:]
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, WAIT)
        return before, first, second

    before, first, second = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert not [f for f in before if isinstance(f, TTSAudioRawFrame)]          # idle: images only
    images = [f for f in first if isinstance(f, OutputImageRawFrame)]
    audio = [f for f in first if isinstance(f, TTSAudioRawFrame)]
    speaking = [f for f in images if f.sync_with_audio]
    assert len(audio) == len(speaking) >= len(reply) // 2 // 640           # one sound per frame, 40 ms each
    for k, frame in enumerate(first[:-1]):                                   # each sound right after its image
        if isinstance(frame, TTSAudioRawFrame):
            assert first[k - 1].sync_with_audio
    assert {(i.size, i.format, len(i.image)) for i in images} == {((38, 46), "RGB", 38 * 46 * 3)}
    assert {a.sample_rate for a in audio} == {RATE} and {len(a.audio) for a in audio} == {640 * 2}
    # the frames carry the speech pushed, all of it, and only it (padding is silence)
    assert level(audio) == pytest.approx(level(tts(reply)), abs=len(audio) * 640)   # int16 rounding
    cut = [f for f in second if isinstance(f, TTSAudioRawFrame)]
    assert 4 <= len(cut) < 50 and level(cut) < 0.5 * level(tts(long_reply))   # 100 frames were asked for
    assert service.frames_out > 60
