"""LiveKit Agents: the talking head as an avatar ``VideoGenerator``.

livekit-agents' avatar runner (``livekit.agents.voice.avatar.AvatarRunner``) reads
the agent's speech from the room, hands it to a ``VideoGenerator`` and publishes
what the generator yields through its audio/video synchroniser.
:class:`JoyVASAVideoGenerator` is that generator:

* :meth:`~JoyVASAVideoGenerator.push_audio` takes ``rtc.AudioFrame``\\ s of a reply
  and the ``AudioSegmentEnd`` that ends it;
* :meth:`~JoyVASAVideoGenerator.clear_buffer` interrupts: the reply is dropped and
  the avatar goes idle;
* iterating it yields, per frame, an ``rtc.VideoFrame`` (RGBA) and, while speaking,
  the ``rtc.AudioFrame`` of the speech that frame covers (at ``sample_rate``),
  then ``AudioSegmentEnd`` after a reply's last frame; between replies, idle
  video frames at the frame rate.

:mod:`.livekit_worker` is the worker that joins a room as the avatar participant.
Tested with livekit-agents 1.8 and livekit 1.1 (requirements-agents.txt), driven
directly: no LiveKit server runs in this project's tests.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from ..avatar import AvatarDriver, at_rate, frame_pairs
from . import LIVEKIT_SAMPLE_RATE, Avatar, load_avatar


class JoyVASAVideoGenerator(VideoGenerator):
    """Animates ``image`` with the agent's speech (see the module docstring).

    models_dir / image / device / precision / face_backend: as
    :func:`~joyvasa_core.integrations.load_avatar`; further keyword arguments are
    the live settings (``chunk``, ``steps``, ``blink``, ...). ``avatar``: an
    :class:`~joyvasa_core.integrations.Avatar` already loaded instead. sample_rate:
    the rate of the audio frames yielded (the runner's audio source's).
    """

    def __init__(self, models_dir: str | Path | None = None, image=None, *, device: str = "auto",
                 precision: str = "auto", face_backend: str = "auto", avatar: Avatar | None = None,
                 sample_rate: int = LIVEKIT_SAMPLE_RATE, **settings) -> None:
        avatar = avatar or load_avatar(models_dir, image, device=device, precision=precision,
                                       face_backend=face_backend, **settings)
        self.avatar, self.sample_rate = avatar, sample_rate
        self._driver: AvatarDriver | None = None
        self._segments = 0              # AudioSegmentEnds pushed, not yet yielded

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the video frames (the photo's, rounded up to even)."""
        height, width = (int(s) + int(s) % 2 for s in self.avatar.face.image.shape[:2])
        return width, height

    @property
    def fps(self) -> float:
        return float(self.avatar.models.motion_generator.args.fps)

    def _started(self) -> AvatarDriver:
        if self._driver is None:
            self._driver = AvatarDriver(self.avatar.session(), lead=2)
        return self._driver

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        driver = self._started()
        if isinstance(frame, AudioSegmentEnd):
            self._segments += 1
            driver.end_reply()
            return
        pcm = np.frombuffer(frame.data, "<i2").reshape(-1, frame.num_channels).T
        driver.push(pcm, frame.sample_rate)

    def clear_buffer(self) -> None:
        """Interrupt: drop the reply (its segment end too; the runner reports it interrupted)."""
        self._segments = 0
        self._started().interrupt()

    async def aclose(self) -> None:
        if self._driver is not None:
            self._driver.close()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        loop = asyncio.get_running_loop()
        due = loop.time()
        driver = self._started()
        ended = driver.replies_ended
        async for batch, idle in driver.frames():
            if driver.replies_ended > ended:               # a reply's last frame went out
                ended = driver.replies_ended
                if self._segments:
                    self._segments -= 1
                    yield AudioSegmentEnd()
            for _index, image, audio in frame_pairs(at_rate(batch, self.sample_rate)):
                if idle:                                   # the synchroniser paces speech, idle paces here
                    due = max(due + 1 / batch.fps, loop.time() - 1 / batch.fps)
                    await asyncio.sleep(max(0.0, due - loop.time()))
                yield _video_frame(image.numpy())
                if not idle:
                    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
                    yield rtc.AudioFrame(pcm.tobytes(), self.sample_rate, 1, len(pcm))
                    due = loop.time()


def _video_frame(image: np.ndarray) -> rtc.VideoFrame:
    """``[H, W, 3]`` uint8 RGB -> an RGBA ``rtc.VideoFrame``."""
    height, width = image.shape[:2]
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = image, 255
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())
