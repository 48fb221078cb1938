"""A live session driven for a media transport: speech in, paired frames and audio out,
idle frames between replies, interruption. One home for what WebRTC, Pipecat and LiveKit share.

:class:`AvatarDriver` owns one :class:`~joyvasa_core.live.LiveSession` on the
asyncio side of a transport. The transport's callbacks only queue what arrived
(:meth:`~AvatarDriver.push` speech, :meth:`~AvatarDriver.end_reply`,
:meth:`~AvatarDriver.interrupt`); :meth:`~AvatarDriver.frames` yields
:class:`~joyvasa_core.live.LiveFrames` (images with the speech samples they
cover) as the session renders them, one render chunk at a time on a worker
thread, so the event loop never waits on the models. While no speech is pending
it yields idle frames, never more than ``lead`` frames ahead of what the
consumer has played (``wanted``), so the video keeps moving at the frame rate
and a reply starts within ``lead`` frames plus its own latency.

:func:`frame_pairs` cuts a batch into (frame index, image, audio) per frame: the
unit a transport plays, picture and sound together.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from .live import LiveCancelled, LiveFrames, LiveSession

#: Longest wait (s) for speech before the driver looks at the idle clock again.
POLL_SECONDS = 0.02
_END_REPLY = object()


def frame_pairs(batch: LiveFrames) -> Iterator[tuple[int, torch.Tensor, np.ndarray]]:
    """One batch -> (frame index, image ``[H, W, 3]`` uint8, audio ``[k]`` float32 at
    ``batch.sample_rate``) per frame; the audio slices add up to ``batch.audio`` exactly."""
    audio = batch.audio.detach().to("cpu", torch.float32).numpy()
    n = len(batch)
    cuts = [len(audio) * k // n for k in range(n + 1)]
    for k in range(n):
        yield batch.start + k, batch.images[k], audio[cuts[k]:cuts[k + 1]]


def at_rate(batch: LiveFrames, rate: int) -> LiveFrames:
    """The batch with its audio at ``rate`` Hz (silence made as silence, speech resampled by
    soxr HQ, one batch at a time): for a transport whose audio track has one fixed rate."""
    if batch.sample_rate == rate:
        return batch
    audio = batch.audio.detach().to("cpu", torch.float32).numpy()
    n = round(len(audio) * rate / batch.sample_rate)
    if audio.any():
        import soxr

        out = soxr.resample(audio, batch.sample_rate, rate, quality="HQ")
        out = np.resize(out, n) if len(out) != n else out
    else:
        out = np.zeros(n, np.float32)
    return replace(batch, audio=torch.from_numpy(np.ascontiguousarray(out, np.float32)), sample_rate=rate)


class WallClock:
    """Frames a consumer playing at ``fps`` in real time wants: those due since the first
    frame was handed out, plus ``lead`` ahead. Re-anchors when the producer fell more than
    a second behind, so a slow reply is not followed by a burst of idle frames."""

    def __init__(self, fps: float, lead: int) -> None:
        self.fps, self.lead = fps, lead
        self._t0: float | None = None
        self._handed = 0

    def handed(self, count: int) -> None:
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._handed += count

    def __call__(self) -> int:
        if self._t0 is None:
            return self.lead
        due = (time.monotonic() - self._t0) * self.fps
        if due > self._handed + self.lead + self.fps:  # a second behind: play on from now
            self._t0 = time.monotonic() - self._handed / self.fps
            due = self._handed
        return max(0, int(due) + self.lead - self._handed)


class AvatarDriver:
    """Drives one live session for a transport (see the module docstring).

    session: the stream (its settings and face). lead: idle frames made ahead of the
    consumer (default: the session's ``chunk``). wanted: how many more frames the
    consumer wants now (default: a :class:`WallClock` at the session's frame rate);
    a transport that knows its own buffer (WebRTC) passes its own. executor: where
    the session works (default: a thread of its own; give the server's single worker
    to share one device between streams in turn).
    """

    def __init__(self, session: LiveSession, *, lead: int | None = None,
                 wanted: Callable[[], int] | None = None, executor: Executor | None = None) -> None:
        self.session = session
        self.lead = lead or session.settings.chunk
        self._clock = WallClock(session.fps, self.lead) if wanted is None else None
        self.wanted = wanted or self._clock
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="joyvasa-avatar")
        self._inbox: deque = deque()
        self._arrived = asyncio.Event()
        self._interrupt = False
        self._interrupted: list[asyncio.Future] = []
        self._closed = False
        self.interruptions = 0          # interrupts carried out (the session dropped its reply)
        self._dropped = 0               # frames below this index belong to an interrupted reply
        self.replies_ended = 0          # replies whose last frame went out (counted before the next yield)

    # ------------------------------------------------------------ transport side

    def push(self, pcm: np.ndarray | torch.Tensor, sample_rate: int) -> None:
        """Queue speech (any PCM :meth:`LiveSession.push` takes); returns at once."""
        self._inbox.append((pcm, int(sample_rate)))
        self._arrived.set()

    def end_reply(self) -> None:
        """The reply's speech is complete: its last frames follow, then idle frames."""
        self._inbox.append(_END_REPLY)
        self._arrived.set()

    def interrupt(self) -> asyncio.Future:
        """Drop the queued speech and the reply in progress; idle again within one render
        chunk. Returns a future done once the session has dropped the reply (by the loop
        iterating :meth:`frames`: never await it from inside that loop)."""
        self._inbox.clear()
        self._interrupt = True
        done = asyncio.get_running_loop().create_future()
        self._interrupted.append(done)
        self._arrived.set()
        return done

    def close(self) -> None:
        """Stop: :meth:`frames` ends (the work in flight stops at its next step)."""
        self._closed = True
        self.session.cancel()
        self._arrived.set()
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ frames out

    async def frames(self) -> AsyncIterator[tuple[LiveFrames, bool]]:
        """The stream's frames in order, until :meth:`close`: (batch, idle), ``idle`` True for
        frames made while no speech was pending (their audio is silence)."""
        try:
            async for item in self._frames():
                yield item
        except LiveCancelled:
            if not self._closed:
                raise

    async def _frames(self) -> AsyncIterator[tuple[LiveFrames, bool]]:
        loop = asyncio.get_running_loop()
        work: Iterator[LiveFrames] | None = None
        ending = False                      # work is a reply's end (end_reply)
        while not self._closed:
            if self._interrupt:
                self._interrupt, work, ending = False, None, False
                await loop.run_in_executor(self._executor, _interrupt, self.session)
                # the session still renders the step it had committed: those frames are the
                # dropped reply's, and never go out (the frame index jumps over them)
                self._dropped = self.session.committed
                self.interruptions += 1
                while self._interrupted:
                    if not (done := self._interrupted.pop()).done():
                        done.set_result(None)
                continue
            while self._inbox and self._inbox[0] is not _END_REPLY and not ending:
                # speech queued meanwhile joins the session at once (push only buffers it); the
                # iterator in progress goes on, so each step it commits is rendered before the
                # next (a newer iterator would commit first and let the renderer fall behind);
                # the next reply's speech waits until the last one's end is rendered
                pushed = self.session.push(*self._inbox.popleft())
                work = work or pushed
            if work is None and self._inbox:         # a reply's end, once its speech is worked
                self._inbox.popleft()
                work, ending = self.session.end_reply(), True
            if work is not None:
                batch = await loop.run_in_executor(self._executor, next, work, None)
                if batch is None:
                    self.replies_ended += ending
                    work, ending = None, False
                elif not self._interrupt and batch.start >= self._dropped:
                    yield self._handed(batch), False     # frames of a dropped reply never go out
                continue
            count = min(self.wanted(), self.session.settings.chunk)
            if count > 0 and not self.session.pending:
                for batch in await loop.run_in_executor(self._executor, _all, self.session.idle(count)):
                    if batch.start >= self._dropped:
                        yield self._handed(batch), True
                continue
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), POLL_SECONDS)
            except asyncio.TimeoutError:
                pass

    def _handed(self, batch: LiveFrames) -> LiveFrames:
        if self._clock is not None:
            self._clock.handed(len(batch))
        return batch


def _all(frames: Iterator[LiveFrames]) -> list[LiveFrames]:
    return list(frames)


def _interrupt(session: LiveSession) -> None:
    """Interrupt and apply it now (``idle(0)`` takes it), so ``pending`` is False at once."""
    session.interrupt()
    _all(session.idle(0))
