"""WebRTC on the live server: a real aiortc peer over loopback sends speech from a file as its
microphone and gets the avatar's video and the paired speech back; POST answers and errors."""
from __future__ import annotations

import asyncio
import fractions
import json
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from helpers_serve import TIMEOUT, speech_pcm
from test_serve import run, server  # noqa: F401 - the tiny-model server fixture

aiortc = pytest.importorskip("aiortc")
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

RATE = 16000
SAMPLES = RATE // 50                 # 20 ms


class SpeechTrack(MediaStreamTrack):
    """A microphone playing ``pcm`` (s16 mono at 16 kHz) in real time, then ending."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray) -> None:
        super().__init__()
        self.pcm, self.sent, self.start = pcm, 0, None
        self.silenced = False           # a barge-in: the speaker stops

    async def recv(self):
        import av

        if self.sent >= len(self.pcm) or self.silenced:
            self.stop()
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        await asyncio.sleep(max(0.0, self.start + self.sent / RATE - time.monotonic()))
        chunk = np.zeros(SAMPLES, np.int16)
        part = self.pcm[self.sent:self.sent + SAMPLES]
        chunk[:len(part)] = part
        frame = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.sent, fractions.Fraction(1, RATE)
        self.sent += SAMPLES
        return frame


def post(url: str, path: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://{url}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


async def call(url: str, pcm: np.ndarray | None, enough, interrupt_when=None):
    """Connect a peer (microphone ``pcm``, or none) and gather what comes back until
    ``enough(video, audio, messages)``; returns (video frames [(pts, w, h)], audio [n] float
    at 48 kHz, data channel messages (text, audio samples received before it)). Waits on what arrived, never on a fixed time: the
    machine running the tests may be slower than real time."""
    pc = RTCPeerConnection()
    speaker = None
    if pcm is not None:
        speaker = SpeechTrack(pcm)
        pc.addTrack(speaker)
    else:
        pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    channel = pc.createDataChannel("control")
    opened, messages = asyncio.Event(), []
    channel.on("open", opened.set)
    channel.on("message", lambda text: messages.append((text, sum(map(len, audio)))))
    video, audio, tasks = [], [], []

    async def read(track):
        nonlocal interrupt_when
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    video.append((frame.pts, frame.width, frame.height))
                    if interrupt_when is not None and interrupt_when(video, audio):
                        interrupt_when = None                 # once
                        channel.send(json.dumps({"type": "interrupt"}))
                        if speaker is not None:
                            speaker.silenced = True           # a barge-in: the speaker stops too
                else:
                    x = frame.to_ndarray().astype(np.float32).reshape(-1, len(frame.layout.channels))
                    audio.append(x.mean(axis=1) / 32768)
        except MediaStreamError:
            pass

    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(read(track))))
    await pc.setLocalDescription(await pc.createOffer())
    offer = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}).encode()
    status, kind, body = await asyncio.to_thread(post, url, "/offer", offer)
    assert (status, kind) == (200, "application/json"), body
    answer = json.loads(body)
    assert answer["type"] == "answer" and "m=video" in answer["sdp"] and "m=audio" in answer["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await asyncio.wait_for(opened.wait(), TIMEOUT)
    for _ in range(TIMEOUT * 10):
        if enough(video, np.concatenate(audio) if audio else np.zeros(0), messages):
            break
        await asyncio.sleep(0.1)
    await pc.close()
    for task in tasks:
        task.cancel()
    return video, np.concatenate(audio) if audio else np.zeros(0), messages


async def freed(server) -> bool:  # noqa: F811
    """Whether the server let go of the peer's session once the peer closed."""
    for _ in range(TIMEOUT * 10):
        if not server.sessions:
            return True
        await asyncio.sleep(0.1)
    return False


def test_a_peer_sends_speech_and_gets_video_and_the_speech_back(server):  # noqa: F811
    pcm = np.frombuffer(speech_pcm(1.2, seed=1), "<i2")
    sent = np.abs(pcm / 32768).sum() * 3            # at 48 kHz
    enough = lambda video, audio, _: np.abs(audio).sum() >= 0.4 * sent and len(video) >= 40  # noqa: E731

    async def scenario(url):
        return *await call(url, pcm, enough), await freed(server)

    video, audio, _, released = run(server, scenario)
    assert {(w, h) for _, w, h in video} == {(38, 46)}
    pts = [p for p, _, _ in video]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert np.allclose(np.diff(pts), 90000 / 25, atol=1)       # every frame, 40 ms apart: none skipped
    # the speech comes back, delayed to the video: as loud as sent within what Opus keeps of
    # espeak's sound both ways (about 0.45-0.65 of the sum of |samples| here), never silence
    assert 0.4 * sent <= np.abs(audio).sum() <= 1.3 * sent
    assert released


def test_idle_frames_flow_without_speech_and_interrupt_is_answered(server):  # noqa: F811
    enough = lambda video, _, messages: messages and len(video) >= 20  # noqa: E731
    video, audio, messages = run(server, lambda url: call(url, None, enough, lambda video, _: len(video) == 5))
    assert len(video) >= 20                         # idle video, no speech at all
    assert np.abs(audio).max(initial=0) < 1e-3      # idle frames carry silence
    assert json.loads(messages[0][0]) == {"type": "interrupted"}


def test_post_answers_name_the_problem(server, monkeypatch):  # noqa: F811
    async def scenario(url):
        bad = [await asyncio.to_thread(post, url, path, body) for path, body in (
            ("/offer", b"not json"), ("/offer", b'{"type": "answer", "sdp": ""}'),
            ("/elsewhere", b"{}"), ("/offer", json.dumps({"type": "offer", "sdp": "v=0",
                                                          "settings": {"chunk": 0}}).encode()))]
        monkeypatch.setitem(sys.modules, "aiortc", None)           # aiortc not installed
        missing = await asyncio.to_thread(post, url, "/offer", b"{}")
        page = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://{url}/").read())
        return bad, missing, page

    bad, missing, page = run(server, scenario)
    assert [status for status, _, _ in bad] == [400, 400, 404, 400]
    assert b"JSON" in bad[0][2] and b'"type": "offer"' in bad[1][2] and b"POST /offer" in bad[2][2]
    assert b"chunk" in bad[3][2]
    assert missing[0] == 501 and missing[2] == b"WebRTC needs aiortc: pip install -r requirements-agents.txt\n"
    # GET goes on as before; the page offers WebRTC by default, the WebSocket as an option,
    # an interrupt button and a file standing in for the microphone
    assert b'value="webrtc" checked' in page and b'"/offer"' in page and b"/live" in page
    assert b'createDataChannel("control")' in page and b'id="interrupt"' in page
    assert b"createMediaStreamDestination" in page


def test_an_interrupt_mid_reply_silences_it_and_the_video_goes_on(server):  # noqa: F811
    pcm = np.frombuffer(speech_pcm(4.0, seed=2), "<i2")
    heard = []                                   # video frames received when the reply was heard

    def barge_in(video, audio) -> bool:
        if sum(np.abs(a).sum() for a in audio) > 30:
            heard.append(len(video))
            return True
        return False

    def enough(video, audio, messages) -> bool:
        return bool(messages) and len(audio) >= messages[0][1] + 48000 and len(video) >= heard[0] + 25

    video, audio, messages = run(server, lambda url: call(url, pcm, enough, barge_in))
    (answer, at), = messages
    assert json.loads(answer) == {"type": "interrupted"}
    before, after = np.abs(audio[:at]).sum(), np.abs(audio[at + 4800:]).sum()   # 0.1 s in flight
    assert before > 30 and after < 0.05 * before, (before, after)
    assert len(video) >= heard[0] + 25                      # idle video after the reply was dropped
