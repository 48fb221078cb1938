"""``python -m joyvasa_core.integrations.livekit_worker --url URL --token TOKEN --image PHOTO``:
the avatar participant of a LiveKit room.

It joins the room with ``--token`` (a token whose identity is the avatar's, made
by the agent that dispatches it, as in LiveKit's avatar examples), receives the
agent's speech through livekit-agents' data-stream audio receiver, animates the
photo with :class:`~joyvasa_core.integrations.livekit.JoyVASAVideoGenerator`, and
publishes the video and the paired speech through the avatar runner until the
room closes. The model and face options are the headless command's
(:mod:`joyvasa_core.options`); ``--url`` and ``--token`` default to the
``LIVEKIT_URL`` and ``LIVEKIT_TOKEN`` environment variables. No LiveKit server
runs in this project's tests: the worker is checked by import and argument parsing.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import options
from ..errors import EXIT_ERROR, UsageError, report
from . import LIVEKIT_SAMPLE_RATE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m joyvasa_core.integrations.livekit_worker",
        description="Join a LiveKit room as a voice agent's avatar: the agent's speech in, the "
                    "talking photo and the speech out (docs/live_mode.md, 'Voice agents').")
    parser.add_argument("--url", default=os.environ.get("LIVEKIT_URL"),
                        help="the LiveKit server, wss://... (default: $LIVEKIT_URL)")
    parser.add_argument("--token", default=os.environ.get("LIVEKIT_TOKEN"),
                        help="an access token for the avatar participant (default: $LIVEKIT_TOKEN)")
    parser.add_argument("--image", required=True, type=Path, help="the portrait photo")
    parser.add_argument("--agent-identity", metavar="IDENTITY",
                        help="the agent whose speech to animate (default: the first agent in the room)")
    parser.add_argument("--sample-rate", type=int, default=LIVEKIT_SAMPLE_RATE,
                        help=f"rate of the published audio (Hz, default {LIVEKIT_SAMPLE_RATE})")
    parser.add_argument("--blink", default="off", metavar="auto|off|TIMES", help="natural blinks")
    parser.add_argument("--steps", type=int, help="DDIM steps per window (default: the live default)")
    options.add_model_arguments(parser.add_argument_group(options.MODELS_GROUP))
    options.add_face_arguments(parser.add_argument_group("face"))
    return parser


async def run_avatar(url: str, token: str, generator, agent_identity: str | None = None) -> None:
    """Join the room and publish ``generator``'s frames until the room disconnects."""
    from livekit import rtc
    from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner, DataStreamAudioReceiver

    room = rtc.Room()
    closed = asyncio.Event()
    room.on("disconnected", lambda *_: closed.set())
    await room.connect(url, token)
    width, height = generator.size
    runner = AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room, sender_identity=agent_identity),
                          video_gen=generator,
                          options=AvatarOptions(video_width=width, video_height=height,
                                                video_fps=generator.fps,
                                                audio_sample_rate=generator.sample_rate,
                                                audio_channels=1))
    try:
        await runner.start()
        await closed.wait()
    finally:
        await runner.aclose()
        await generator.aclose()
        await room.disconnect()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        if not args.url or not args.token:
            raise UsageError("--url and --token are needed (or LIVEKIT_URL and LIVEKIT_TOKEN)")
        from . import load_avatar
        from .livekit import JoyVASAVideoGenerator

        settings = {"blink": args.blink, **({"steps": args.steps} if args.steps else {})}
        avatar = load_avatar(args.models_dir, args.image, device=args.device,
                             precision=args.precision, face_backend=args.face_backend,
                             face_index=args.face_index, animal=args.animal, **settings)
        generator = JoyVASAVideoGenerator(avatar=avatar, sample_rate=args.sample_rate)
        asyncio.run(run_avatar(args.url, args.token, generator, args.agent_identity))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - one line naming the cause, as the other commands
        print(f"error: {report(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
