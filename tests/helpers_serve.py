"""A real websockets client of the live server, over loopback: clips streamed, a slow reader,
a flood of malformed messages, an over-size message. Shared by ``tests/test_serve.py``,
``tests/test_serve_load.py`` and ``benchmarks/live_load.py`` (no pytest here).

Speech is s16le mono PCM at 16 kHz (``bytes``), so the expected frame count is the
offline one: :func:`n_frames`.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from joyvasa_core.audio import plan_windows
from joyvasa_core.serve import MAX_MESSAGE_BYTES

TIMEOUT = 120                    # seconds for any one reply (CI runners are slow, never hit normally)
RATE = 16000


def speech_pcm(seconds: float, seed: int = 0) -> bytes:
    """``seconds`` of espeak-ng speech (a sentence repeated) at 16 kHz, or a speech-like
    signal where espeak-ng is not installed; seeds pick different sentences."""
    n = int(seconds * RATE)
    if shutil.which("espeak-ng") is None:
        import helpers_pipeline as hp

        return _int16(hp.speech_like(seconds, seed=seed))
    from joyvasa_core.audio import load_audio_file

    sentences = ("Hello there, this is a live test.", "The quick brown fox jumps over the dog.",
                 "Four clients talk to one server.", "Every frame arrives in order.")
    text = " ".join([sentences[seed % len(sentences)]] * max(1, round(seconds / 2) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        wave, rate = load_audio_file(path)
    import soxr

    x = soxr.resample(wave[0].numpy(), rate, RATE, quality="HQ")
    x = np.resize(x, n) if x.size < n else x[:n]
    return _int16(x)


def _int16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def n_frames(audio: bytes) -> int:
    """Frames the server must send for ``audio`` (the offline count, ``int((N + 1920) / 640)``)."""
    return plan_windows(len(audio) // 2, fps=25, n_motions=1).n_frames


async def receive(ws) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


@dataclass
class Clip:
    """What one client got back: the frames, the closing ``done`` (or error) message, seconds."""

    frames: list[bytes]
    last: dict
    seconds: float
    errors: list[dict]           # error answers before ``last`` (to bad messages sent inside the stream)

    def ok(self, audio: bytes) -> bool:
        expected = n_frames(audio)
        return self.last == {"type": "done", "frames": expected, "sent": expected} \
            and len(self.frames) == expected


async def stream_clip(url: str, audio: bytes, chunk: int = 3200, read_delay: float = 0.0,
                      rcvbuf: int | None = None, start: dict | None = None) -> Clip:
    """Start, send the clip in ``chunk``-byte messages, end, read to ``done``.

    read_delay: seconds slept after each frame read (a slow reader); rcvbuf: the client
    socket's receive buffer (bytes), small so that a slow reader pushes back on the server.
    """
    from websockets.asyncio.client import connect

    sock = None
    if rcvbuf is not None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        host, port = url.rsplit(":", 1)
        sock.connect((host, int(port)))
    async with connect(f"ws://{url}/live", sock=sock, max_queue=1 if rcvbuf else 16) as ws:
        return await _stream_on(ws, audio, chunk, read_delay, start or {})


async def _stream_on(ws, audio: bytes, chunk: int, read_delay: float, start: dict,
                     inside: tuple[str | bytes, ...] = ()) -> Clip:
    """One stream on an open connection; the ``inside`` messages are sent right after start."""
    t0 = time.perf_counter()
    frames, errors = [], []
    await ws.send(json.dumps({"type": "start", "sample_rate": RATE, **start}))
    for message in inside:
        await ws.send(message)

    async def send():
        for lo in range(0, len(audio), chunk):
            await ws.send(audio[lo:lo + chunk])
        await ws.send(json.dumps({"type": "end"}))

    sender = asyncio.create_task(send())          # sends while frames come back, as a live client
    while True:
        message = await receive(ws)
        if isinstance(message, bytes):
            frames.append(message)
            if read_delay:
                await asyncio.sleep(read_delay)
        elif (answer := json.loads(message))["type"] == "error" and len(errors) < len(inside):
            errors.append(answer)
        else:
            break
    await sender
    return Clip(frames, answer, time.perf_counter() - t0, errors)


#: Bad messages inside a running stream: an odd byte count, a second start, an unknown type.
INSIDE_A_STREAM = (b"\x00\x01\x02", json.dumps({"type": "start", "sample_rate": RATE}),
                   json.dumps({"type": "pause"}))


def malformed_messages(n: int) -> list[str | bytes]:
    """``n`` messages that each break the protocol once (cycling through every kind), for a
    connection with no stream running: each must be answered by one error."""
    deep = "[" * 100_000 + "]" * 100_000                   # valid JSON, nested too deep to parse
    huge = json.dumps({"type": "start", "sample_rate": 16000,
                       "expression": "smiel=0.1 " * ((MAX_MESSAGE_BYTES - 200) // 10)})
    kinds = ["hello", "{", deep, json.dumps(list(range(50_000))), huge,
             json.dumps({"type": "x" * 500_000}), json.dumps({"type": "dance"}), json.dumps({"type": None}),
             json.dumps({"type": "start", "sample_rate": 12}), json.dumps({"type": "start"}),
             json.dumps({"type": "start", "sample_rate": 16000, "k" * 100_000: 1}),
             json.dumps({"type": "start", "sample_rate": 16000, "chunk": 10_000}),
             json.dumps({"type": "start", "sample_rate": 16000, "seed": "x" * 100_000}),
             json.dumps({"type": "start", "sample_rate": 16000, "seed": 2**70}),
             json.dumps({"type": "end"}), b"\x00\x01", b"\x00", b""]
    return [kinds[i % len(kinds)] for i in range(n)]


async def flood(url: str, messages: list[str | bytes], audio: bytes) -> tuple[list[dict], Clip]:
    """Send every message (reading the answers meanwhile), then stream ``audio`` on the same
    connection with :data:`INSIDE_A_STREAM` sent after its start: (the answers, one per
    message expected; what the stream got back, ``errors`` one per inside message)."""
    from websockets.asyncio.client import connect

    answers: list[dict] = []
    async with connect(f"ws://{url}/live", max_size=None) as ws:
        async def read(count: int):
            for _ in range(count):
                answers.append(json.loads(await receive(ws)))

        reader = asyncio.create_task(read(len(messages)))
        for message in messages:
            await ws.send(message)
        await reader
        clip = await _stream_on(ws, audio, 3200, 0.0, {}, INSIDE_A_STREAM)
    return answers, clip


async def oversize(url: str) -> tuple[int | None, str]:
    """Send one message a byte over the limit; (close code, reason) the server closed with."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(f"ws://{url}/live") as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
        await ws.send(b"\x00" * (MAX_MESSAGE_BYTES + 2))
        try:
            while True:
                await receive(ws)
        except ConnectionClosed as closed:
            return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process now (MiB); this one by default."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20
