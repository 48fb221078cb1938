"""The live server: a WebSocket stream of speech in, a stream of JPEG frames out.

``python -m joyvasa_core.serve --models-dir DIR --image PHOTO`` serves, on one
port (the ``websockets`` library):

* ``GET /``: a small page (microphone or audio file in, the talking head out);
* ``GET /info``: ``{"fps": 25, "width": W, "height": H}`` of the frames;
* ``GET /photo``: the photo (JPEG), shown by the page before the stream starts;
* WebSocket ``/live``: the protocol of docs/live_mode.md:
  client -> server ``{"type": "start", "sample_rate": N, ...settings}``, binary
  s16le mono PCM chunks, ``{"type": "interrupt"}``, ``{"type": "end"}``; server ->
  client one binary JPEG per frame in order (the photo's size rounded up to
  even), ``{"type": "interrupted"}`` once an interrupted reply is dropped (the
  stream goes on, idle), ``{"type": "error", "message": ...}`` for a bad message
  (the connection stays usable) and ``{"type": "done", "frames": N, "sent": M}``
  after the last frame of an ended stream (N: the frames the speech received
  accounts for, the offline count; M: every frame sent, idle ones included).

While a started stream gets no audio for ``idle_after`` seconds, it ends the
reply it was in (its last frames) and then sends idle frames at the frame rate
(the generated idle motion, lips held shut by the silence gate) until speech
comes again; that speech continues from the idle motion.

Several clients share the device: one worker thread runs the steps (a window
sampled, a render chunk) of every open stream in turn, first come first
served, so streams progress together and each slows the others. A client that
drops the line cancels its session at once (the step in flight stops at its
next denoising step or render chunk). A slow reader gets backpressure, never
dropped frames: the session waits while its frames sit unsent, then stops
reading the socket once ``INBOX_MESSAGES`` audio messages are queued, so
memory per client stays bounded. A client message is checked by
:mod:`.protocol`; each bad one is answered with one error and the connection
goes on. What the server survives and what it does not: docs/live_mode.md,
"Fault model".
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path

import torch

from ..driving import DrivingSettings
from ..errors import one_line
from ..live import MIN_SAMPLE_RATE, LiveCancelled, LiveFrames, LiveSession, LiveSettings
from ..pipeline import JoyVASAModels
from ..render import compiles_by_default, render
from ..sources import PhotoSource
from .posts import post_connection
from .protocol import (CLIENT_SETTINGS, MAX_MESSAGE_BYTES, ProtocolError, error_text, parse_start,
                       read_pcm, read_text, short)

__all__ = ["CLIENT_SETTINGS", "INBOX_MESSAGES", "MAX_MESSAGE_BYTES", "MAX_STREAMS", "LiveServer",
           "ProtocolError", "encode_jpegs", "parse_start"]

log = logging.getLogger(__name__)

#: Audio messages a stream may have queued before the server stops reading its socket.
INBOX_MESSAGES = 32
#: Streams the server runs at once by default; a ``start`` beyond them is answered with an error.
MAX_STREAMS = 8
#: Seconds without audio after which a stream ends its reply and sends idle frames.
IDLE_AFTER = 0.5
JPEG_QUALITY = 85
PAGE = Path(__file__).with_name("page.html")
_END = object()
_INTERRUPT = object()


def encode_jpegs(frames: LiveFrames, quality: int = JPEG_QUALITY) -> list[bytes]:
    """uint8 frames ``[b, H, W, 3]`` -> one JPEG file (bytes) each."""
    from PIL import Image

    out = []
    for image in frames.images.numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


class LiveServer:
    """Serves live sessions of one photo with models already loaded (tests build it from
    in-memory models; :func:`main` from the command line).

    defaults: start settings applied when a client does not send them (checked
    here: a bad one raises :class:`ProtocolError`). max_streams: streams served at
    once (a ``start`` beyond them is answered with an error). send_buffer: each
    connection's kernel send buffer (bytes; None: the system's, which on Linux grows
    up to ``net.ipv4.tcp_wmem``'s 4 MiB): how many frames a slow reader can leave
    unread before its stream waits. idle_after: seconds without audio after which a
    stream sends idle frames (None: never; the stream waits for speech).
    """

    def __init__(self, models: JoyVASAModels, face: PhotoSource,
                 defaults: Mapping[str, object] | None = None,
                 driving: DrivingSettings = DrivingSettings(), max_streams: int = MAX_STREAMS,
                 send_buffer: int | None = None, idle_after: float | None = IDLE_AFTER):
        self.defaults = dict(defaults or {})
        parse_start({"sample_rate": MIN_SAMPLE_RATE}, self.defaults)
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
            raise ValueError(f"max_streams must be a whole number >= 1, got {max_streams!r}")
        self.models, self.face, self.driving = models, face, driving
        if send_buffer is not None and (isinstance(send_buffer, bool) or not isinstance(send_buffer, int)
                                        or send_buffer < 4096):
            raise ValueError(f"send_buffer must be a whole number of bytes >= 4096, got {send_buffer!r}")
        if idle_after is not None and not (isinstance(idle_after, (int, float)) and idle_after > 0):
            raise ValueError(f"idle_after must be a number of seconds > 0 or None, got {idle_after!r}")
        self.max_streams, self.send_buffer, self.idle_after = max_streams, send_buffer, idle_after
        self.sessions: set[LiveSession] = set()     # open streams (their work not yet over)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="joyvasa-live")
        height, width = (int(s) + int(s) % 2 for s in face.image.shape[:2])
        fps = float(models.motion_generator.args.fps)
        self.info = json.dumps({"fps": fps, "width": width, "height": height}).encode()
        from ..video import frames_to_uint8_tensor

        self.photo = encode_jpegs(LiveFrames(0, fps, frames_to_uint8_tensor(face.image[None]).cpu()))[0]
        from .webrtc import WebRTCPeers

        self.webrtc = WebRTCPeers(self)              # POST /offer (docs/live_mode.md, "WebRTC")
        if compiles_by_default(models.device, models.dtype):
            log.info("compiling the renderer (the CPU fast path) before the first client")
            lp = models.liveportrait
            with torch.inference_mode():         # the source's own pose, as a stream's chunk
                render(lp.warping_module, lp.spade_generator, face.feature_3d, face.x_s, face.x_s)

    def serve(self, host: str = "127.0.0.1", port: int = 8765):
        """The websockets server (an async context manager; ``port`` 0 picks a free one)."""
        from websockets.asyncio.server import serve

        return serve(self._handle, host, port, process_request=self._http,
                     max_size=MAX_MESSAGE_BYTES, max_queue=INBOX_MESSAGES,
                     create_connection=post_connection({"/offer": self.webrtc.offer}))

    def close(self) -> None:
        self.webrtc.close()
        for session in list(self.sessions):
            session.cancel()
        self._worker.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ HTTP

    def _http(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        path = request.path.split("?", 1)[0]
        if path == "/live":
            return None                                  # go on with the WebSocket handshake
        if path in ("/", "/index.html"):
            body, kind = PAGE.read_bytes(), "text/html; charset=utf-8"
        elif path == "/info":
            body, kind = self.info, "application/json"
        elif path == "/photo":
            body, kind = self.photo, "image/jpeg"
        else:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no {path} here: open / or connect to /live\n")
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store")])
        return Response(HTTPStatus.OK, "OK", headers, body)

    # ------------------------------------------------------------- WebSocket

    async def _handle(self, ws) -> None:
        stream: _Stream | None = None
        sock = ws.transport.get_extra_info("socket")
        if self.send_buffer and sock is not None:       # frames a slow reader leaves in the kernel
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        try:
            async for message in ws:
                try:
                    stream = await self._on_message(ws, stream, message)
                except ProtocolError as exc:
                    await _send_error(ws, str(exc))
                except Exception as exc:  # noqa: BLE001 - one message's failure is answered, never fatal
                    log.exception("live message failed")
                    await _send_error(ws, f"the server could not handle that message: {one_line(exc)}")
        except Exception as exc:  # noqa: BLE001 - a dropped line ends the connection, never the server
            log.debug("live connection ended: %s", exc)
        finally:
            if stream is not None:
                stream.cancel()

    async def _on_message(self, ws, stream: "_Stream | None", message: str | bytes) -> "_Stream | None":
        if stream is not None and stream.over:
            stream = None                            # the last stream ended: a new start may come
        if isinstance(message, bytes):
            if stream is None:
                raise ProtocolError("binary audio before start: send {\"type\": \"start\", "
                                    "\"sample_rate\": N} first")
            if stream.ended:
                raise ProtocolError("binary audio after end: start a new stream for more speech")
            await stream.inbox.put(read_pcm(message))
            return stream
        data = read_text(message)
        kind = data.get("type")
        if kind == "start":
            if stream is not None:
                raise ProtocolError("a stream is already running: send {\"type\": \"end\"} and wait for done")
            rate, settings = parse_start(data, self.defaults)
            if len(self.sessions) >= self.max_streams:
                raise ProtocolError(f"the server is busy: {len(self.sessions)} streams running, at most "
                                    f"{self.max_streams}; start again when one has ended")
            try:
                return _Stream(self, ws, rate, settings)
            except ValueError as exc:                # settings this model cannot run (chunk + lookahead)
                raise ProtocolError(f"bad start setting: {exc}") from None
        if kind == "end":
            if stream is None or stream.ended:
                raise ProtocolError("end without a running stream: send start first")
            stream.ended = True
            await stream.inbox.put(_END)
            return stream
        if kind == "interrupt":
            if stream is None or stream.ended:
                raise ProtocolError("interrupt without a running stream: send start first")
            await stream.interrupt()
            return stream
        raise ProtocolError(f"unknown message type {short(kind)}: use start, binary PCM, interrupt, end")


class _Stream:
    """One started stream of a connection: its session and the task that works it."""

    def __init__(self, server: LiveServer, ws, rate: int, settings: LiveSettings) -> None:
        self.server, self.ws, self.rate = server, ws, rate
        self.session = LiveSession(server.models, server.face, settings, server.driving,
                                   sample_rate=rate)
        self.inbox: asyncio.Queue = asyncio.Queue(maxsize=INBOX_MESSAGES)
        self.ended = self.over = False
        self.sent = 0
        server.sessions.add(self.session)
        self.task = asyncio.get_running_loop().create_task(self._work())

    def cancel(self) -> None:
        self.session.cancel()
        self.task.cancel()
        self.server.sessions.discard(self.session)

    async def interrupt(self) -> None:
        """Drop the reply: the session's uncommitted speech, and the audio still queued."""
        self.session.interrupt()
        while not self.inbox.empty():
            self.inbox.get_nowait()
        await self.inbox.put(_INTERRUPT)

    async def _next(self, loop) -> object:
        """The next inbox item; with ``idle_after`` set, None when the client sent nothing
        for that long (then once per ``chunk`` frames of real time while it stays quiet)."""
        wait = self.server.idle_after
        if wait is None:
            return await self.inbox.get()
        if self.idle_since is not None:      # idle already: pace the frames at the frame rate
            due = self.idle_since + self.idle_sent / self.session.fps
            wait = max(0.0, due - loop.time())
        if not self.inbox.empty() or wait <= 0:    # (wait_for with no time left never reads)
            return None if self.inbox.empty() else self.inbox.get_nowait()
        try:
            return await asyncio.wait_for(self.inbox.get(), wait)
        except asyncio.TimeoutError:
            return None

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        chunk = self.session.settings.chunk
        self.idle_since, self.idle_sent = None, 0
        try:
            while True:
                item = await self._next(loop)
                if item is None:                       # quiet: the reply is over, idle frames
                    if self.idle_since is None:
                        self.idle_since = loop.time()
                    frames = self.session.idle(chunk)
                    self.idle_sent += chunk
                elif item is _INTERRUPT:
                    await self._send(loop, self.session.end_reply())   # applies the interrupt
                    await _send_json(self.ws, {"type": "interrupted"})
                    continue
                else:
                    self.idle_since, self.idle_sent = None, 0
                    frames = self.session.finish() if item is _END \
                        else self.session.push(item, self.rate)
                await self._send(loop, frames)
                if item is _END:
                    await _send_json(self.ws, {"type": "done", "frames": self.session.speech_frames,
                                               "sent": self.sent})
                    return
        except (LiveCancelled, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - a failed stream is reported, the connection stays
            log.exception("live stream failed")
            await _send_error(self.ws, f"the stream failed: {one_line(exc)}", quiet=True)
        finally:
            self.over = True
            self.server.sessions.discard(self.session)
            while not self.inbox.empty():        # wakes a reader waiting on a full inbox: never stuck
                self.inbox.get_nowait()

    async def _send(self, loop, frames: Iterator[LiveFrames]) -> None:
        """Run ``frames`` on the worker thread, sending each render chunk's JPEGs in order."""
        while (jpegs := await loop.run_in_executor(self.server._worker, _next_jpegs, frames)):
            for jpeg in jpegs:
                await self.ws.send(jpeg)      # waits while a slow reader's buffer is full
            self.sent += len(jpegs)


def _next_jpegs(frames: Iterator[LiveFrames]) -> list[bytes] | None:
    """Run the session to its next render chunk (worker thread) and encode it; None when done."""
    batch = next(frames, None)
    return None if batch is None else encode_jpegs(batch)


async def _send_error(ws, message: str, quiet: bool = False) -> None:
    await _send_json(ws, {"type": "error", "message": error_text(message)}, quiet)


async def _send_json(ws, message: dict, quiet: bool = False) -> None:
    try:
        await ws.send(json.dumps(message))
    except Exception:  # noqa: BLE001 - the client is gone
        if not quiet:
            raise
