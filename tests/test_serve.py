"""The live server over loopback, with a real websockets client and tiny real-architecture models."""
from __future__ import annotations

import asyncio
import io
import json
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import helpers_pipeline as hp
from helpers_serve import TIMEOUT, n_frames, receive, stream_clip
from joyvasa_core import pipeline
from joyvasa_core.live import LIVE_MOTION
from joyvasa_core.serve import LiveServer, ProtocolError, parse_start

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402

PHOTO_SIZE = (45, 37)            # H, W: odd, so frames come out 46 x 38


@pytest.fixture(scope="module")
def server():
    import skimage.data
    from skimage.transform import resize

    models = hp.fast_models()
    photo = resize(skimage.data.astronaut()[:400, 40:350], PHOTO_SIZE, anti_aliasing=True)
    face = pipeline.extract_face(models, (photo * 255).round().astype(np.uint8), face_backend="none")
    live = LiveServer(models, face, {"chunk": 4, "lookahead": 1, "steps": 2})
    yield live
    live.close()


def test_start_message_settings_over_the_server_defaults():
    from dataclasses import replace

    rate, settings = parse_start({"type": "start", "sample_rate": 22050, "seed": 4, "chunk": 6,
                                  "expression": "smile=0.5", "eye_contact": 1},
                                 {"chunk": 4, "lookahead": 1, "steps": 2})
    assert rate == 22050 and (settings.chunk, settings.lookahead) == (6, 1)
    assert settings.motion == replace(LIVE_MOTION, steps=2, seed=4)
    assert settings.edits is not None and settings.edits.eye_contact_tracks
    _, plain = parse_start({"type": "start", "sample_rate": 16000})
    assert plain.motion == LIVE_MOTION and plain.edits is None
    for bad, words in (({"blink": 3}, "blink must be text"), ({"steps": 0}, "steps"),
                       ({"seed": 1.5}, "seed"), ({"eye_contact": 2.5}, "eye-contact")):
        with pytest.raises(ProtocolError, match=words):
            parse_start({"type": "start", "sample_rate": 16000, **bad})
    with pytest.raises(ProtocolError, match="chunk"):         # a bad server default fails at once
        LiveServer(None, None, {"chunk": 0})


def pcm(seconds: float, seed: int = 0) -> bytes:
    return (hp.speech_like(seconds, seed=seed) * 32767).astype("<i2").tobytes()


def run(server: LiveServer, scenario) -> object:
    """Serve on a free loopback port for the length of ``scenario(url)``."""
    async def main():
        async with server.serve("127.0.0.1", 0) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            return await asyncio.wait_for(scenario(f"127.0.0.1:{port}"), 4 * TIMEOUT)
    return asyncio.run(main())


def test_page_and_info(server):
    async def scenario(url):
        def get(path):
            with urllib.request.urlopen(f"http://{url}{path}", timeout=TIMEOUT) as reply:
                return reply.headers["Content-Type"], reply.read()
        page = await asyncio.to_thread(get, "/")
        info = await asyncio.to_thread(get, "/info")
        photo = await asyncio.to_thread(get, "/photo")
        return page, info, photo

    (page_type, page), (info_type, info), (photo_type, photo) = run(server, scenario)
    assert photo_type == "image/jpeg"
    with Image.open(io.BytesIO(photo)) as image:
        assert image.size == (37, 45)
    assert page_type.startswith("text/html") and b"/live" in page and b"getUserMedia" in page and b'start.eye_contact = 1' in page
    assert info_type == "application/json"
    assert json.loads(info) == {"fps": 25.0, "width": 38, "height": 46}


def test_the_cpu_fast_path_compiles_before_the_first_client(server):
    """With W and G in bf16 on the CPU the renderer compiles (tens of seconds at full size): the
    server does it while starting, so the first client's frames are not late by that much, and
    they come out complete."""
    from dataclasses import replace

    from joyvasa_core import render
    from joyvasa_core.loaders import place

    if not render.compiles_by_default(torch.device("cpu"), torch.bfloat16):
        pytest.skip("no C++ compiler for torch.compile")
    models = hp.fast_models()
    fast = replace(models, liveportrait=place(models.liveportrait, "cpu", torch.bfloat16),
                   dtype=torch.bfloat16)
    spade = fast.liveportrait.spade_generator
    live = LiveServer(fast, server.face, {"chunk": 4, "lookahead": 1, "steps": 2})
    try:
        assert render._RENDERERS[spade].chunk is not render._render_chunk     # compiled already
        audio = pcm(0.35)
        clip = run(live, lambda url: stream_clip(url, audio))
    finally:
        live.close()
    assert clip.last == {"type": "done", "frames": n_frames(audio), "sent": n_frames(audio)}


def test_short_clip_ends_with_done_and_every_frame_at_the_photo_size(server):
    audio = pcm(0.35)
    clip = run(server, lambda url: stream_clip(url, audio))
    frames, done = clip.frames, clip.last
    assert done == {"type": "done", "frames": n_frames(audio), "sent": n_frames(audio)}
    assert len(frames) == n_frames(audio)
    for jpeg in frames:
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.format == "JPEG" and image.size == (38, 46)


def test_frames_arrive_while_audio_is_still_being_sent(server):
    audio = pcm(0.6, seed=1)
    half = len(audio) // 2

    async def scenario(url):
        async with connect(f"ws://{url}/live") as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            await ws.send(audio[:half])             # 0.3 s: enough for a few 4-frame steps
            first = await receive(ws)               # ... a frame, with half the speech unsent
            await ws.send(audio[half:])
            await ws.send(json.dumps({"type": "end"}))
            rest = []
            while isinstance(message := await receive(ws), bytes):
                rest.append(message)
            return first, rest, json.loads(message)

    first, rest, done = run(server, scenario)
    assert isinstance(first, bytes) and first[:2] == b"\xff\xd8"     # a JPEG
    assert done["frames"] == 1 + len(rest) == n_frames(audio)


def test_bad_messages_each_get_an_error_and_the_connection_stays_usable(server):
    async def scenario(url):
        errors = []
        async with connect(f"ws://{url}/live") as ws:
            for bad in ("hello", b"\x00\x01", json.dumps({"type": "start", "sample_rate": 12}),
                        json.dumps({"type": "start"}), json.dumps({"type": "end"}),
                        json.dumps({"type": "start", "sample_rate": 16000, "chunk": 0}),
                        json.dumps({"type": "start", "sample_rate": 16000, "expression": "smiel=1"}),
                        json.dumps({"type": "dance"})):
                await ws.send(bad)
                errors.append(json.loads(await receive(ws)))
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "blink": "auto",
                                      "eye_contact": 1, "expression": "smile=0.5"}))
            await ws.send(b"\x00\x01\x02")             # odd byte count
            errors.append(json.loads(await receive(ws)))
            audio = pcm(0.2, seed=2)
            await ws.send(audio)
            await ws.send(json.dumps({"type": "end"}))
            frames = 0
            while isinstance(message := await receive(ws), bytes):
                frames += 1
            return errors, frames, json.loads(message), n_frames(audio)

    errors, frames, done, expected = run(server, scenario)
    assert [e["type"] for e in errors] == ["error"] * 9
    messages = [e["message"] for e in errors]
    for message, words in zip(messages, ("JSON", "before start", "sample_rate", "sample_rate",
                                         "without a running stream", "chunk", "unknown slider 'smiel'",
                                         "unknown message type",
                                         "2 bytes per sample")):
        assert words in message, (words, message)
    assert done == {"type": "done", "frames": expected, "sent": expected} and frames == expected


def test_dropped_client_frees_its_session_and_does_not_hold_up_the_next(server):
    async def scenario(url):
        ws = await connect(f"ws://{url}/live")
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await ws.send(pcm(3.0, seed=3))               # 75 frames of work queued ...
        await receive(ws)                             # ... started (a frame came) ...
        ws.transport.abort()                          # ... and the line drops
        for _ in range(TIMEOUT * 10):
            if not server.sessions:
                break
            await asyncio.sleep(0.1)
        freed = not server.sessions
        return freed, await stream_clip(url, pcm(0.2, seed=4))

    freed, clip = run(server, scenario)
    assert freed and clip.ok(pcm(0.2, seed=4))


def test_concurrent_clients_all_finish(server):
    clips = [pcm(0.2 + 0.08 * i, seed=10 + i) for i in range(3)]

    async def scenario(url):
        return await asyncio.gather(*(stream_clip(url, clip, chunk=1000) for clip in clips))

    results = run(server, scenario)
    for audio, clip in zip(clips, results):
        assert clip.ok(audio), (clip.last, len(clip.frames), n_frames(audio))
    assert not server.sessions


@pytest.mark.parametrize("flags, line", [
    (["--blink", "sometimes"], "error: --blink 'sometimes': expected a time like 1.5s"),
    (["--chunk", "0"], "error: --chunk 0: chunk must be a whole number of frames >= 1"),
    (["--expression", "smiel=1"], "error: --expression 'smiel=1': unknown slider 'smiel'"),
    (["--eye-contact", "3"], "error: --eye-contact 3.0:"),
    (["--models-dir", __file__], "is a file; pass the pretrained_weights folder"),
    (["--max-streams", "0"], "error: --max-streams must be 1 or more, got 0"),
    (["--send-buffer", "100"], "error: --send-buffer must be 4096 bytes or more, got 100"),
])
def test_serve_command_refuses_bad_flags_in_one_line_before_loading(flags, line, tmp_path, capsys):
    """The server's flags are checked (naming the flag) before the photo is read or a model loads."""
    from joyvasa_core.errors import EXIT_ERROR
    from joyvasa_core.serve.__main__ import main

    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")        # never read: the flags fail first
    assert main(["--image", str(photo), *flags]) == EXIT_ERROR
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and line in err[0], err


async def _frames_for(ws, seconds: float) -> tuple[int, list[dict]]:
    """JPEGs and text messages received over ``seconds`` of wall time."""
    loop = asyncio.get_running_loop()
    end, count, texts = loop.time() + seconds, 0, []
    while (left := end - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            break
        if isinstance(message, bytes):
            count += 1
        else:
            texts.append(json.loads(message))
    return count, texts


def test_idle_frames_keep_coming_while_no_audio_is_sent(server):
    """After start, silence on the line: idle frames at about the frame rate; then speech and
    end: done counts the speech's frames (the offline count), sent counts them all."""
    audio = pcm(0.4, seed=2)

    async def scenario(url):
        async with connect(f"ws://{url}/live") as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            idle, texts = await _frames_for(ws, 2.5)
            for lo in range(0, len(audio), 3200):
                await ws.send(audio[lo:lo + 3200])
            await ws.send(json.dumps({"type": "end"}))
            frames = 0
            while isinstance(message := await receive(ws), bytes):
                frames += 1
            return idle, texts, frames, json.loads(message)

    idle, texts, frames, done = run(server, scenario)
    assert texts == []
    assert 20 <= idle <= 25 * 2.5 + 8           # 2 s of idle at 25 fps (0.5 s quiet first)
    assert done["type"] == "done" and done["frames"] == n_frames(audio)
    assert done["sent"] == idle + frames and frames >= n_frames(audio) - 2


def test_interrupt_mid_reply_stops_its_frames_and_the_stream_stays_open(server):
    """A long reply, interrupted after its first frames: "interrupted" comes back, far fewer
    frames than the reply's, then idle frames; the stream still ends with done."""
    audio = pcm(6.0, seed=3)

    async def scenario(url):
        async with connect(f"ws://{url}/live") as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            await ws.send(audio[:len(audio) // 2])
            before = 0
            while before < 3:
                before += isinstance(await receive(ws), bytes)
            await ws.send(json.dumps({"type": "interrupt"}))
            await ws.send(audio[len(audio) // 2:])     # after the interrupt: a new reply
            after = 0
            while isinstance(message := await receive(ws), bytes):
                after += 1
            answer = json.loads(message)
            idle, texts = await _frames_for(ws, 1.5)
            await ws.send(json.dumps({"type": "end"}))
            while isinstance(message := await receive(ws), bytes):
                pass
            return before, after, answer, idle, texts, json.loads(message)

    before, after, answer, idle, texts, done = run(server, scenario)
    assert answer == {"type": "interrupted"}
    assert before + after < n_frames(audio) // 4       # the reply's frames stopped
    assert texts == [] and idle > 0                     # the second half, then idle frames
    assert done["type"] == "done"
