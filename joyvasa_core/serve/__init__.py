"""The live server: a WebSocket stream of speech in, a stream of JPEG frames out.

``python -m joyvasa_core.serve --models-dir DIR --image PHOTO`` serves, on one
port (the ``websockets`` library):

* ``GET /``: a small page (microphone or audio file in, the talking head out);
* ``GET /info``: ``{"fps": 25, "width": W, "height": H}`` of the frames;
* ``GET /photo``: the photo (JPEG), shown by the page before the stream starts;
* WebSocket ``/live``: the protocol of docs/live_mode.md:
  client -> server ``{"type": "start", "sample_rate": N, ...settings}``, binary
  s16le mono PCM chunks, ``{"type": "end"}``; server -> client one binary JPEG per
  frame in order (the photo's size rounded up to even), ``{"type": "error",
  "message": ...}`` for a bad message (the connection stays usable) and
  ``{"type": "done", "frames": N}`` after the last frame of an ended stream.

Several clients share the device: one worker thread runs the steps (a window
sampled, a render chunk) of every open stream in turn, first come first
served, so streams progress together and each slows the others. A client that
drops the line cancels its session at once (the step in flight stops at its
next denoising step or render chunk). A slow reader gets backpressure, never
dropped frames: the session waits while its frames sit unsent, then stops
reading the socket once ``INBOX_MESSAGES`` audio messages are queued, so
memory per client stays bounded.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path

import numpy as np

from ..driving import DrivingSettings
from ..edits import build_edits
from ..live import (LIVE_MOTION, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, LiveCancelled, LiveFrames,
                    LiveSession, LiveSettings)
from ..pipeline import JoyVASAModels
from ..sources import PhotoSource

log = logging.getLogger(__name__)

#: Audio messages a stream may have queued before the server stops reading its socket.
INBOX_MESSAGES = 32
#: Largest WebSocket message accepted (bytes): 1 MiB is 32 s of 16 kHz s16le speech.
MAX_MESSAGE_BYTES = 1 << 20
JPEG_QUALITY = 85
#: ``start`` settings a client may send, beside ``sample_rate``: the session's own, the motion
#: sampler's (:class:`~joyvasa_core.settings.MotionSettings`) and the edits (as the headless
#: command's --expression, --blink and --eye-contact).
SESSION_SETTINGS = ("mode", "chunk", "lookahead")
MOTION_SETTINGS = ("steps", "seed", "cfg_scale", "smoothing", "pose_scale", "expression_scale")
EDIT_SETTINGS = ("expression", "blink", "eye_contact")
CLIENT_SETTINGS = SESSION_SETTINGS + MOTION_SETTINGS + EDIT_SETTINGS
_NUMBERS = ("cfg_scale", "smoothing", "pose_scale", "expression_scale", "eye_contact")
_TEXTS = ("mode", "expression", "blink")
PAGE = Path(__file__).with_name("page.html")
_END = object()


class ProtocolError(ValueError):
    """A client message that breaks the protocol; answered with an error message."""


def parse_start(message: dict, defaults: Mapping[str, object] | None = None) -> tuple[int, LiveSettings]:
    """A ``start`` message -> (sample rate, session settings); raises ProtocolError naming the fix.

    defaults: start settings (:data:`CLIENT_SETTINGS`) the server applies when the
    client does not send them (the server's command-line flags); the rest are
    :class:`~joyvasa_core.live.LiveSettings`' defaults. The edits are built here,
    once per stream (automatic blinks seeded by the stream's seed).
    """
    rate = message.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(f"start needs an integer sample_rate in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} "
                            f"(Hz of the PCM you will send), got {rate!r}")
    unknown = sorted(set(message) - {"type", "sample_rate", *CLIENT_SETTINGS})
    if unknown:
        raise ProtocolError(f"unknown start settings {unknown}; allowed: sample_rate, {', '.join(CLIENT_SETTINGS)}")
    given = {**(defaults or {}), **{k: v for k, v in message.items() if k in CLIENT_SETTINGS}}
    for key, value in given.items():
        if key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProtocolError(f"start setting {key} must be a number, got {value!r}")
            given[key] = float(value)
        elif key in _TEXTS and not isinstance(value, str):
            raise ProtocolError(f"start setting {key} must be text, got {value!r}")
    try:
        motion = replace(LIVE_MOTION, **{k: given[k] for k in MOTION_SETTINGS if k in given})
        edits = build_edits(given.get("expression"), given.get("blink", "off"), seed=motion.seed,
                            eye_contact=given.get("eye_contact", 0.0))
        return rate, LiveSettings(motion=motion, edits=edits,
                                  **{k: given[k] for k in SESSION_SETTINGS if k in given})
    except ValueError as exc:
        raise ProtocolError(f"bad start setting: {exc}") from None


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
    here: a bad one raises :class:`ProtocolError`).
    """

    def __init__(self, models: JoyVASAModels, face: PhotoSource,
                 defaults: Mapping[str, object] | None = None,
                 driving: DrivingSettings = DrivingSettings()):
        self.defaults = dict(defaults or {})
        parse_start({"sample_rate": MIN_SAMPLE_RATE}, self.defaults)
        self.models, self.face, self.driving = models, face, driving
        self.sessions: set[LiveSession] = set()     # open streams (their work not yet over)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="joyvasa-live")
        height, width = (int(s) + int(s) % 2 for s in face.image.shape[:2])
        fps = float(models.motion_generator.args.fps)
        self.info = json.dumps({"fps": fps, "width": width, "height": height}).encode()
        from ..video import frames_to_uint8_tensor

        self.photo = encode_jpegs(LiveFrames(0, fps, frames_to_uint8_tensor(face.image[None]).cpu()))[0]

    def serve(self, host: str = "127.0.0.1", port: int = 8765):
        """The websockets server (an async context manager; ``port`` 0 picks a free one)."""
        from websockets.asyncio.server import serve

        return serve(self._handle, host, port, process_request=self._http,
                     max_size=MAX_MESSAGE_BYTES, max_queue=INBOX_MESSAGES)

    def close(self) -> None:
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
        try:
            async for message in ws:
                try:
                    stream = await self._on_message(ws, stream, message)
                except ProtocolError as exc:
                    await _send_json(ws, {"type": "error", "message": str(exc)})
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
            if len(message) % 2:
                raise ProtocolError(f"an audio message of {len(message)} bytes: s16le PCM has 2 bytes "
                                    "per sample, so send an even number of bytes")
            await stream.inbox.put(np.frombuffer(message, dtype="<i2").copy())
            return stream
        try:
            data = json.loads(message)
        except ValueError:
            raise ProtocolError(f"text messages must be JSON objects, got {message[:40]!r}") from None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "start":
            if stream is not None:
                raise ProtocolError("a stream is already running: send {\"type\": \"end\"} and wait for done")
            rate, settings = parse_start(data, self.defaults)
            return _Stream(self, ws, rate, settings)
        if kind == "end":
            if stream is None or stream.ended:
                raise ProtocolError("end without a running stream: send start first")
            stream.ended = True
            await stream.inbox.put(_END)
            return stream
        raise ProtocolError(f"unknown message type {kind!r}: use start, binary PCM, end")


class _Stream:
    """One started stream of a connection: its session and the task that works it."""

    def __init__(self, server: LiveServer, ws, rate: int, settings: LiveSettings) -> None:
        self.server, self.ws, self.rate = server, ws, rate
        self.session = LiveSession(server.models, server.face, settings, server.driving)
        self.inbox: asyncio.Queue = asyncio.Queue(maxsize=INBOX_MESSAGES)
        self.ended = self.over = False
        server.sessions.add(self.session)
        self.task = asyncio.get_running_loop().create_task(self._work())

    def cancel(self) -> None:
        self.session.cancel()
        self.task.cancel()
        self.server.sessions.discard(self.session)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await self.inbox.get()
                frames = self.session.finish() if item is _END else self.session.push(item, self.rate)
                while (jpegs := await loop.run_in_executor(self.server._worker, _next_jpegs, frames)):
                    for jpeg in jpegs:
                        await self.ws.send(jpeg)      # waits while a slow reader's buffer is full
                if item is _END:
                    await _send_json(self.ws, {"type": "done", "frames": self.session.rendered})
                    return
        except (LiveCancelled, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - a failed stream is reported, the connection stays
            log.exception("live stream failed")
            await _send_json(self.ws, {"type": "error", "message": f"the stream failed: {exc}"}, quiet=True)
        finally:
            self.over = True
            self.server.sessions.discard(self.session)


def _next_jpegs(frames: Iterator[LiveFrames]) -> list[bytes] | None:
    """Run the session to its next render chunk (worker thread) and encode it; None when done."""
    batch = next(frames, None)
    return None if batch is None else encode_jpegs(batch)


async def _send_json(ws, message: dict, quiet: bool = False) -> None:
    try:
        await ws.send(json.dumps(message))
    except Exception:  # noqa: BLE001 - the client is gone
        if not quiet:
            raise
