"""Pipecat: the talking head as a video service between the TTS and the transport's output.

::

    pipeline = Pipeline([transport.input(), stt, user_context, llm, tts,
                         JoyVASAVideoService("pretrained_weights", "photo.jpg", blink="auto"),
                         transport.output(), assistant_context])

:class:`JoyVASAVideoService` takes the TTS's ``TTSAudioRawFrame``\\ s (they go no
further: it sends the speech on itself, paired with its frames) and pushes, for
every frame, an ``OutputImageRawFrame`` (RGB, ``sync_with_audio``: shown when its
sound starts) and a ``TTSAudioRawFrame`` of the speech that frame covers. A
``TTSStoppedFrame`` ends the reply (its last frames follow); an
``InterruptionFrame`` drops the reply and the avatar goes idle. Between replies
it keeps idle frames flowing at the frame rate (images only, so the transport
never takes silence for the bot speaking). ``StartFrame`` starts the stream,
``EndFrame`` and ``CancelFrame`` end it. The models run on a worker thread.

Tested with pipecat-ai 1.14 (requirements-agents.txt), where ``PipelineTask`` and
``PipelineRunner`` are the older names of ``PipelineWorker`` and ``WorkerRunner``.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from pipecat.frames.frames import (CancelFrame, EndFrame, Frame, InterruptionFrame, OutputImageRawFrame,
                                   StartFrame, TTSAudioRawFrame, TTSStoppedFrame)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from ..avatar import AvatarDriver, frame_pairs
from . import Avatar, load_avatar


class JoyVASAVideoService(FrameProcessor):
    """Animates ``image`` with the TTS's speech (see the module docstring).

    models_dir / image / device / precision / face_backend: as
    :func:`~joyvasa_core.integrations.load_avatar`; further keyword arguments are
    the live settings (``chunk``, ``lookahead``, ``steps``, ``seed``, ``blink``,
    ``expression``, ``eye_contact``, ...). ``avatar``: an
    :class:`~joyvasa_core.integrations.Avatar` already loaded, instead of
    ``models_dir`` and ``image`` (several services may share one).
    """

    def __init__(self, models_dir: str | Path | None = None, image=None, *, device: str = "auto",
                 precision: str = "auto", face_backend: str = "auto", avatar: Avatar | None = None,
                 name: str | None = None, **settings) -> None:
        super().__init__(name=name)
        avatar = avatar or load_avatar(models_dir, image, device=device, precision=precision,
                                       face_backend=face_backend, **settings)
        self.avatar = avatar
        self._driver: AvatarDriver | None = None
        self._task: asyncio.Task | None = None
        self.frames_out = 0             # frames pushed (speech and idle)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._start()
            return
        if isinstance(frame, (EndFrame, CancelFrame)):
            await self._stop()
        elif self._driver is not None and isinstance(frame, TTSAudioRawFrame):
            pcm = np.frombuffer(frame.audio, "<i2").reshape(-1, frame.num_channels).T
            self._driver.push(pcm, frame.sample_rate)
            return                                     # sent on with the frames it drives
        elif self._driver is not None and isinstance(frame, TTSStoppedFrame):
            self._driver.end_reply()
        elif self._driver is not None and isinstance(frame, InterruptionFrame):
            self._driver.interrupt()
        await self.push_frame(frame, direction)

    def _start(self) -> None:
        if self._driver is None:
            self._driver = AvatarDriver(self.avatar.session(), lead=2)
            self._task = self.create_task(self._send(self._driver), name="joyvasa-frames")

    async def _stop(self) -> None:
        driver, task = self._driver, self._task
        self._driver = self._task = None
        if driver is not None:
            driver.close()
        if task is not None:
            await self.cancel_task(task)

    async def _send(self, driver: AvatarDriver) -> None:
        """Push each frame the driver makes; idle frames one frame time apart."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        async for batch, idle in driver.frames():
            for _index, image, audio in frame_pairs(batch):
                picture = OutputImageRawFrame(image=image.numpy().tobytes(),
                                              size=(image.shape[1], image.shape[0]), format="RGB")
                if idle:
                    due = max(due + 1 / batch.fps, loop.time() - 1 / batch.fps)
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    await self.push_frame(picture)
                else:
                    picture.sync_with_audio = True
                    await self.push_frame(picture)
                    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
                    await self.push_frame(TTSAudioRawFrame(audio=pcm, sample_rate=batch.sample_rate,
                                                           num_channels=1))
                    due = loop.time()
                self.frames_out += 1
