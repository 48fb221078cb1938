"""WebRTC on the live server (``aiortc``, optional): ``POST /offer``, a microphone in,
the avatar's video and its paired speech out.

``POST /offer`` takes ``{"sdp": ..., "type": "offer"}`` (aiortc's examples'
convention; optional ``"settings"``: start settings as the WebSocket ``start``
message takes them) and answers ``{"sdp": ..., "type": "answer"}``. The peer's
first audio track is the speech: each decoded frame is pushed to the stream's
:class:`~joyvasa_core.avatar.AvatarDriver`, and the track's end ends the reply.
The server sends two tracks: the avatar's video and the speech it was made
from, delayed to match. The audio track is the clock (:class:`Playout`): it
plays each frame's samples in real time, and hands the frame's picture to the
video track when its sound starts, so picture and sound leave together (video
pts ``index / fps`` on a 90 kHz clock). Idle frames (with silence) flow while no
speech is pending. A data channel carries control: ``{"type": "interrupt"}``
drops the reply and is answered ``{"type": "interrupted"}``.

aiortc is imported only here, when an offer comes; without it ``/offer`` answers
501 naming the fix.
"""
from __future__ import annotations

import asyncio
import fractions
import json
import logging
import time
from collections import deque
import numpy as np

from ..avatar import AvatarDriver, at_rate, frame_pairs
from ..live import LiveFrames, LiveSession
from .protocol import ProtocolError, parse_start, read_text

log = logging.getLogger(__name__)

#: Rate of the audio track sent (Hz): Opus's own, so nothing is resampled twice.
AUDIO_RATE = 48000
#: Samples per audio frame sent: 20 ms, WebRTC's usual packet time.
AUDIO_SAMPLES = AUDIO_RATE // 50
VIDEO_CLOCK = 90000
#: Seconds without microphone audio that end a reply (its last frames follow, then idle).
QUIET_SECONDS = 0.5
#: After an interrupt, microphone audio is dropped until a packet peaks below this (int16), or
#: a pause: what is in flight and in aiortc's jitter buffer belongs to the dropped reply.
SILENT_LEVEL = 64
#: Frames (with their audio) kept ahead of the audio clock; the idle lead.
PLAYOUT_LEAD = 8
INSTALL = "WebRTC needs aiortc: pip install -r requirements-agents.txt\n"
_TEXT, _JSON = "text/plain; charset=utf-8", "application/json"


class Playout:
    """Paired frames waiting to be played: :meth:`take_audio` plays their sound in order and
    releases each frame's picture (to :attr:`pictures`) when its first sample is taken."""

    def __init__(self) -> None:
        self.pairs: deque = deque()
        self.pictures: asyncio.Queue = asyncio.Queue()
        self._left = np.zeros(0, np.float32)
        self.played = 0                 # frames whose sound has started

    def add(self, batch: LiveFrames) -> None:
        for index, image, audio in frame_pairs(at_rate(batch, AUDIO_RATE)):
            self.pairs.append((index, image, audio))

    def buffered(self) -> int:
        return len(self.pairs)

    def take_audio(self, n: int) -> np.ndarray:
        """The next ``n`` samples (float32, silence where no frame is ready)."""
        out, got = np.zeros(n, np.float32), 0
        while got < n:
            if not self._left.size:
                if not self.pairs:
                    break
                index, image, self._left = self.pairs.popleft()
                self.pictures.put_nowait((index, image))
                self.played += 1
                continue
            take = self._left[:n - got]
            out[got:got + take.size] = take
            got += take.size
            self._left = self._left[take.size:]
        return out

    def clear(self) -> None:
        """Drop every frame not yet played (an interruption)."""
        self.pairs.clear()
        self._left = np.zeros(0, np.float32)
        while not self.pictures.empty():
            self.pictures.get_nowait()


def _tracks():
    """The aiortc track classes (built here: aiortc is imported only when used)."""
    import av
    from aiortc import MediaStreamTrack

    class AvatarAudio(MediaStreamTrack):
        kind = "audio"

        def __init__(self, playout: Playout) -> None:
            super().__init__()
            self.playout, self._start, self._sent = playout, None, 0

        async def recv(self):
            if self._start is None:
                self._start = time.monotonic()
            wait = self._start + self._sent / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            samples = self.playout.take_audio(AUDIO_SAMPLES)
            pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, self._sent
            frame.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._sent += AUDIO_SAMPLES
            return frame

    class AvatarVideo(MediaStreamTrack):
        kind = "video"

        def __init__(self, playout: Playout, fps: float) -> None:
            super().__init__()
            self.playout, self.fps = playout, fps

        async def recv(self):
            index, image = await self.playout.pictures.get()
            frame = av.VideoFrame.from_ndarray(image.numpy(), format="rgb24")
            frame.pts = round(index * VIDEO_CLOCK / self.fps)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            return frame

    return AvatarAudio, AvatarVideo


class WebRTCPeers:
    """The server's WebRTC peers. ``server``: the :class:`~joyvasa_core.serve.LiveServer`
    (its models, face, driving settings, start defaults, worker thread, stream count)."""

    def __init__(self, server) -> None:
        self.server = server
        self.peers: set = set()

    async def offer(self, body: bytes) -> tuple[int, str, bytes]:
        """``POST /offer``: the answer (status, content type, body)."""
        try:
            from aiortc import RTCPeerConnection, RTCSessionDescription
        except ImportError:
            return 501, _TEXT, INSTALL.encode()
        try:
            data = read_text(body.decode("utf-8", "replace"))
            if data.get("type") != "offer" or not isinstance(data.get("sdp"), str):
                raise ProtocolError('POST /offer takes {"sdp": "...", "type": "offer"}')
            settings = data.get("settings", {})
            if not isinstance(settings, dict):
                raise ProtocolError("settings must be an object of start settings")
            _, live = parse_start({"sample_rate": AUDIO_RATE, **settings}, self.server.defaults)
        except ProtocolError as exc:
            return 400, _TEXT, f"{exc}\n".encode()
        if len(self.server.sessions) >= self.server.max_streams:
            return 503, _TEXT, (f"the server is busy: {len(self.server.sessions)} streams running, "
                                f"at most {self.server.max_streams}\n").encode()
        server = self.server
        try:
            session = LiveSession(server.models, server.face, live, server.driving,
                                  sample_rate=AUDIO_RATE)
        except ValueError as exc:
            return 400, _TEXT, f"bad start setting: {exc}\n".encode()
        pc = RTCPeerConnection()
        peer = _Peer(self, pc, session)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
            peer.start()
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # noqa: BLE001 - a bad SDP is the client's, answered
            await peer.close()
            return 400, _TEXT, f"the offer could not be answered: {exc}\n".encode()
        answer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        return 200, _JSON, json.dumps(answer).encode()

    def close(self) -> None:
        """Stop every peer's stream (and close its connection when called inside the loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for peer in list(self.peers):
            peer.driver.close()
            if loop is not None:
                loop.create_task(peer.close())


class _Peer:
    """One WebRTC client: its connection, its stream's driver and the tasks that feed them."""

    def __init__(self, peers: WebRTCPeers, pc, session: LiveSession) -> None:
        self.peers, self.pc, self.session = peers, pc, session
        self.playout = Playout()
        self.driver = AvatarDriver(session, lead=PLAYOUT_LEAD, executor=peers.server._worker,
                                   wanted=lambda: PLAYOUT_LEAD - self.playout.buffered())
        self.tasks: list[asyncio.Task] = []
        self.flushing = False           # dropping the interrupted reply's speech still arriving
        peers.peers.add(self)
        peers.server.sessions.add(session)

    def start(self) -> None:
        audio_cls, video_cls = _tracks()
        pc = self.pc
        pc.addTrack(audio_cls(self.playout))
        pc.addTrack(video_cls(self.playout, self.session.fps))
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self._produce()))
        for receiver in pc.getReceivers():
            if receiver.track is not None and receiver.track.kind == "audio":
                self.tasks.append(loop.create_task(self._listen(receiver.track)))
                break
        pc.on("datachannel", self._on_channel)

        @pc.on("connectionstatechange")
        async def changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close()

    async def _produce(self) -> None:
        try:
            async for batch, _idle in self.driver.frames():
                self.playout.add(batch)
        except Exception:  # noqa: BLE001 - a failed stream closes its peer, never the server
            log.exception("WebRTC stream failed")
            await self.close()

    async def _listen(self, track) -> None:
        """The peer's speech: each decoded audio frame pushed. A pause of :data:`QUIET_SECONDS`
        without audio ends the reply (a track that ends sends nothing more: RTP has no end)."""
        from aiortc.mediastreams import MediaStreamError

        speaking = False
        while True:
            try:
                frame = await asyncio.wait_for(track.recv(), QUIET_SECONDS if speaking else None)
            except (asyncio.TimeoutError, MediaStreamError) as stop:
                if speaking:
                    self.driver.end_reply()
                speaking, self.flushing = False, False
                if isinstance(stop, MediaStreamError):
                    return
                continue
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).T
            if self.flushing:
                # after an interrupt, the speech still in flight and in the receiver's jitter
                # buffer is the dropped reply's: listen again at a pause (above) or a silent packet
                self.flushing = bool(np.abs(pcm).max(initial=0) >= SILENT_LEVEL)
                continue
            self.driver.push(pcm, frame.sample_rate)
            speaking = True

    def _on_channel(self, channel) -> None:
        @channel.on("message")
        async def message(text) -> None:
            try:
                data = read_text(text if isinstance(text, str) else "")
                if data.get("type") != "interrupt":
                    raise ProtocolError(f"unknown message type {data.get('type')!r}: use interrupt")
            except ProtocolError as exc:
                channel.send(json.dumps({"type": "error", "message": str(exc)}))
                return
            done = self.driver.interrupt()
            self.flushing = True
            self.playout.clear()
            await done
            if channel.readyState == "open":
                channel.send(json.dumps({"type": "interrupted"}))

    async def close(self) -> None:
        if self not in self.peers.peers:
            return
        self.peers.peers.discard(self)
        self.peers.server.sessions.discard(self.session)
        self.driver.close()
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
