"""The Pipecat adapter in a real Pipecat pipeline, in process, with the tiny real-architecture
models: TTS frames in, image and audio frames out; idle frames between replies; interruption."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

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

RATE = 16000
WAIT = 60                            # seconds for any one expectation (never hit normally)


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


async def until(condition, what: str) -> None:
    for _ in range(WAIT * 50):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def tts(pcm: bytes, size: int = 3200) -> list:
    return [TTSAudioRawFrame(audio=pcm[i:i + size], sample_rate=RATE, num_channels=1)
            for i in range(0, len(pcm), size)]


def level(frames: list) -> float:
    """Sum of |samples| of audio frames (s16)."""
    return float(sum(np.abs(np.frombuffer(f.audio, "<i2").astype(np.int64)).sum() for f in frames))


def test_tts_frames_become_video_idle_between_replies_and_an_interruption_ends_a_reply(server):  # noqa: F811
    avatar = Avatar(server.models, server.face, live_settings(chunk=4, lookahead=1, steps=2))
    service, sink = JoyVASAVideoService(avatar=avatar), Collect()
    reply, long_reply = speech_pcm(0.6, seed=1), speech_pcm(4.0, seed=2)

    async def scenario():
        worker = PipelineWorker(Pipeline([service, sink]), idle_timeout_secs=None, enable_rtvi=False)
        runner = WorkerRunner(handle_sigint=False)
        running = asyncio.ensure_future(runner.run(worker))
        seen = {}
        await until(lambda: len(sink.since(0, OutputImageRawFrame)) >= 10, "idle frames before speech")
        seen["idle_audio"] = len(sink.since(0, TTSAudioRawFrame))
        mark = len(sink.out)
        await worker.queue_frames([TTSStartedFrame(), *tts(reply), TTSStoppedFrame()])
        await until(lambda: level(sink.since(mark, TTSAudioRawFrame)) >= 0.99 * level(tts(reply)),
                    "the reply's audio")
        after = len(sink.out)
        await until(lambda: len(sink.since(after, OutputImageRawFrame)) >= 10, "idle frames after the reply")
        seen["reply"] = sink.out[mark:after]
        seen["after_reply_audio"] = len(sink.since(after, TTSAudioRawFrame))
        mark = len(sink.out)
        await worker.queue_frames([TTSStartedFrame(), *tts(long_reply)])
        await until(lambda: len(sink.since(mark, TTSAudioRawFrame)) >= 4, "the long reply's first frames")
        await worker.queue_frame(InterruptionFrame())
        stop = len(sink.out)
        await until(lambda: len(sink.since(stop, OutputImageRawFrame)) >= 25, "idle frames after the interruption")
        seen["interrupted"] = sink.out[mark:]
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, WAIT)
        return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert seen["idle_audio"] == 0 and seen["after_reply_audio"] == 0      # idle: images only
    images = [f for f in seen["reply"] if isinstance(f, OutputImageRawFrame)]
    audio = [f for f in seen["reply"] if isinstance(f, TTSAudioRawFrame)]
    assert len(audio) == len([i for i in images if i.sync_with_audio]) >= 20   # one sound per frame
    assert {(i.size, i.format, len(i.image)) for i in images} == {((38, 46), "RGB", 38 * 46 * 3)}
    assert {a.sample_rate for a in audio} == {RATE}
    # the frames carry the speech pushed, all of it, and only it (padding is silence)
    assert level(audio) == pytest.approx(level(tts(reply)), rel=1e-3)
    cut = [f for f in seen["interrupted"] if isinstance(f, TTSAudioRawFrame)]
    assert 4 <= len(cut) < 50 and level(cut) < 0.5 * level(tts(long_reply))   # 100 frames were asked for
    assert service.frames_out > 60
