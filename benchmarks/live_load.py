"""The live server under load: four clients at once, a slow reader among them, a flood of
malformed messages, and resident memory over sessions in a row.

    python benchmarks/live_load.py --image PHOTO [--models-dir DIR] [--device cpu]
                                   [--seconds 2] [--sessions 20] [--malformed 300]

The server runs in a process of its own (``python -m joyvasa_core.serve --port 0``, started
from this script so that the tiny networks can be patched in), so its resident memory is its
own; the clients are real websockets clients over loopback (``tests/helpers_serve.py``),
speaking espeak-ng speech (a speech-like signal where espeak-ng is not installed), sent as
fast as the server takes it. Default: the tiny configuration of the real networks on the CPU
(``tests/helpers_pipeline.py``, face detection off); ``--models-dir`` serves the official tree.

1. four clients stream ``--seconds`` each at once: each must get every frame (the offline count);
2. the same with the fourth reading one frame per 0.5 s (slower than the server makes
   them) through a 4 KiB receive buffer, the server's ``--send-buffer`` small enough that
   its stream waits on its socket within a few frames: the
   slowest of the other three must finish within ``SLOW_LIMIT`` of its time beside a normal
   fourth (a slow reader waits on its socket, not on the shared worker);
3. one client sends ``--malformed`` bad messages (every kind in ``helpers_serve.malformed_messages``)
   while three others stream, then streams on the same connection with three bad messages
   inside, and another sends one message over the size limit: each of the bad messages must get
   one error, the over-size one a close with code 1009, and the three others every frame;
4. ``--sessions`` sessions in a row, each on a new connection: the server's RSS after the last
   over its RSS after the second (target <= 1.10).

The last line is ``live load: C clients ok, F/F malformed answered, rss ratio R``; the exit
status is 1 when a check failed.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT

import helpers_serve as hs   # noqa: E402  (tests/ is on sys.path via common)

SLOW_READ = 0.5             # seconds the slow reader waits after each frame: slower than it is made
SLOW_LIMIT = 1.25            # others' time beside the slow reader / beside a normal fourth client
RSS_LIMIT = 1.10
TINY = ["--chunk", "4", "--lookahead", "1", "--face-backend", "none"]


def _child(tiny: bool, argv: list[str]) -> int:
    """Run the server command in this process, with the tiny networks when ``tiny``."""
    from joyvasa_core.serve.__main__ import main

    import logging

    logging.getLogger("websockets").setLevel(logging.WARNING)     # not a line per connection
    if not tiny:
        return main(argv)
    import helpers_pipeline as hp

    with hp.fast_liveportrait_build():
        return main(argv)


@contextlib.contextmanager
def served(argv: list[str]):
    """Start the server process; yields (loopback address "127.0.0.1:PORT", its pid)."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", *argv],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("serving http://"):
                yield line.split("http://", 1)[1].split("/", 1)[0], proc.pid
                break
        else:
            sys.exit(f"the server did not start (exit {proc.wait()}); its error is above")
    finally:
        proc.terminate()
        proc.wait(30)


async def concurrent(url: str, clips: list[bytes], slow: bool = False) -> list[hs.Clip]:
    """Every clip at once; with ``slow``, the last one read slowly."""
    reads = [{}] * (len(clips) - 1) + [dict(read_delay=SLOW_READ, rcvbuf=4096) if slow else {}]
    return await asyncio.gather(*(hs.stream_clip(url, c, **r) for c, r in zip(clips, reads)))


async def malformed(url: str, n: int, clips: list[bytes]) -> tuple[int, int, list[hs.Clip]]:
    """(answered, sent) bad messages, and what the three others got."""
    messages = hs.malformed_messages(n)
    flooding = asyncio.create_task(hs.flood(url, messages, clips[0]))
    others = await asyncio.gather(*(hs.stream_clip(url, c) for c in clips[1:]))
    answers, clip = await flooding
    code, _reason = await hs.oversize(url)
    answered = sum(a["type"] == "error" for a in answers) + len(clip.errors) + (code == 1009)
    ok = clip.ok(clips[0])
    return answered if ok else 0, len(messages) + len(hs.INSIDE_A_STREAM) + 1, others


async def in_a_row(url: str, pid: int, audio: bytes, sessions: int) -> list[float]:
    rss = []
    for _ in range(sessions):
        clip = await hs.stream_clip(url, audio)
        if not clip.ok(audio):
            sys.exit(f"a session in a row ended with {clip.last} after {len(clip.frames)} frames")
        rss.append(hs.rss_mib(pid))
    return rss


def main() -> None:
    if sys.argv[1:2] == ["--child"]:               # the server process (see served)
        flag, *rest = sys.argv[2:]
        sys.exit(_child(flag == "tiny", rest))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="the portrait photo served")
    parser.add_argument("--models-dir", type=Path, help="official pretrained_weights tree "
                        "(default: the tiny networks)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=2, help="DDIM steps per window (default 2)")
    parser.add_argument("--seconds", type=float, default=2.0, help="speech per client (s)")
    parser.add_argument("--send-buffer", type=int, default=65536,
                        help="the server's --send-buffer (bytes; default 65536, so that the slow "
                             "reader's stream waits after a few frames instead of after 4 MiB)")
    parser.add_argument("--sessions", type=int, default=20, help="sessions in a row (>= 2)")
    parser.add_argument("--malformed", type=int, default=300, help="bad messages in the flood")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tiny = args.models_dir is None
        if tiny:
            import helpers_pipeline as hp

            models_dir = hp.write_fast_pretrained_weights(Path(tmp) / "pretrained_weights")
        else:
            models_dir = args.models_dir.resolve()
        argv = ["tiny" if tiny else "full", "--image", str(args.image.resolve()), "--models-dir",
                str(models_dir), "--device", args.device, "--port", "0", "--steps", str(args.steps),
                "--send-buffer", str(args.send_buffer),
                *(TINY if tiny else [])]
        clips = [hs.speech_pcm(args.seconds, seed=i) for i in range(4)]
        with served(argv) as (url, pid):
            rss_start = hs.rss_mib(pid)
            normal = asyncio.run(concurrent(url, clips))
            beside_slow = asyncio.run(concurrent(url, clips, slow=True))
            answered, sent, others = asyncio.run(malformed(url, args.malformed, clips))
            rss = asyncio.run(in_a_row(url, pid, clips[0][:len(clips[0]) // 2], max(2, args.sessions)))

    ok = [c.ok(a) for c, a in zip(normal, clips)]
    without, with_slow = max(c.seconds for c in normal[:3]), max(c.seconds for c in beside_slow[:3])
    slow_ok = all(c.ok(a) for c, a in zip(beside_slow, clips))
    others_ok = all(c.ok(a) for c, a in zip(others, clips[1:]))
    ratio = rss[-1] / rss[1]
    print(f"{'tiny' if tiny else 'full-size'} networks, device {args.device}, {args.seconds:g} s of "
          f"speech per client ({hs.n_frames(clips[0])} frames), DDIM {args.steps} steps, "
          f"server --send-buffer {args.send_buffer}")
    print(f"four clients at once: {sum(ok)}/4 got every frame; the slowest of the first three "
          f"took {without:.2f} s")
    print(f"fourth client reading 1 frame per {SLOW_READ} s: every client got every frame: {slow_ok}; "
          f"slowest of the other three {with_slow:.2f} s, {with_slow / without:.2f}x "
          f"(limit {SLOW_LIMIT}x); the slow reader {beside_slow[3].seconds:.2f} s")
    print(f"malformed flood: {answered}/{sent} answered (one error each, the over-size message "
          f"closed with 1009); the three others got every frame: {others_ok}")
    print(f"server RSS: {rss_start:.0f} MiB at start, {rss[1]:.0f} MiB after session 2, "
          f"{rss[-1]:.0f} MiB after session {len(rss)} (max {max(rss):.0f})")
    print(f"live load: {sum(ok)} clients ok, {answered}/{sent} malformed answered, rss ratio {ratio:.3f}")
    passed = (all(ok) and slow_ok and others_ok and answered == sent and with_slow <= SLOW_LIMIT * without
              and ratio <= RSS_LIMIT)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
