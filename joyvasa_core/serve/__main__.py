"""``python -m joyvasa_core.serve --models-dir DIR --image PHOTO``: the live server (see the package).

The model and face options and the one-line error are the headless command's
(:mod:`joyvasa_core.options`, :mod:`joyvasa_core.errors`); the live options are
the defaults of every stream's start message.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import options
from ..errors import EXIT_ERROR, UsageError, report
from ..live import LIVE_MOTION, MODES, LiveSettings
from . import MAX_STREAMS


def build_parser() -> argparse.ArgumentParser:
    defaults = LiveSettings()
    parser = argparse.ArgumentParser(
        prog="python -m joyvasa_core.serve",
        description="Serve a live talking head of one photo: GET / is the page, WebSocket /live "
                    "takes s16le PCM and sends JPEG frames (protocol: docs/live_mode.md).")
    parser.add_argument("--image", required=True, type=Path, help="the portrait photo")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    parser.add_argument("--max-streams", type=int, default=MAX_STREAMS,
                        help=f"streams served at once; a start beyond them gets an error "
                             f"(default {MAX_STREAMS})")
    parser.add_argument("--send-buffer", type=int, metavar="BYTES",
                        help="each connection's kernel send buffer: frames a slow reader may leave "
                             "unread before its stream waits (default: the system's)")
    options.add_model_arguments(parser.add_argument_group(options.MODELS_GROUP))
    options.add_face_arguments(parser.add_argument_group("face"))
    live = parser.add_argument_group("live defaults (a client's start message may override them)")
    live.add_argument("--mode", default=defaults.mode, choices=MODES)
    live.add_argument("--chunk", type=int, default=defaults.chunk, help="frames committed per step")
    live.add_argument("--lookahead", type=int, default=defaults.lookahead,
                      help="frames of audio waited for beyond the committed ones")
    live.add_argument("--steps", type=int, default=LIVE_MOTION.steps, help="DDIM steps per window")
    live.add_argument("--seed", type=int, default=LIVE_MOTION.seed)
    live.add_argument("--expression", default="", metavar="TEXT",
                      help="expression edits, as the headless command's (docs/expression_control.md)")
    live.add_argument("--blink", default="off", metavar="auto|off|TIMES",
                      help="natural blinks (auto: seeded by --seed)")
    live.add_argument("--eye-contact", type=float, nargs="?", const=1.0, default=0.0,
                      metavar="STRENGTH", help="keep the eyes on the camera (0-2, 1 when given alone)")
    return parser


def _check_flags(defaults: dict) -> None:
    """Each live default as a start setting; a bad one is a :class:`UsageError` naming its flag."""
    from . import ProtocolError, parse_start

    for key, value in defaults.items():
        try:
            parse_start({"sample_rate": 16000}, {key: value})
        except ProtocolError as exc:
            detail = " ".join(str(exc).removeprefix("bad start setting: ").split())
            raise UsageError(f"--{key.replace('_', '-')} {value!r}: {detail}") from None
    parse_start({"sample_rate": 16000}, defaults)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must lie in 0..65535, got {args.port}")
        if args.max_streams < 1:
            raise ValueError(f"--max-streams must be 1 or more, got {args.max_streams}")
        if args.send_buffer is not None and args.send_buffer < 4096:
            raise ValueError(f"--send-buffer must be 4096 bytes or more, got {args.send_buffer}")
        defaults = {"mode": args.mode, "chunk": args.chunk, "lookahead": args.lookahead,
                    "steps": args.steps, "seed": args.seed, "expression": args.expression,
                    "blink": args.blink, "eye_contact": args.eye_contact}
        from ..face.image_io import load_image
        from ..pipeline import extract_face
        from . import LiveServer

        _check_flags(defaults)                          # a bad flag fails before the models load
        model_options = options.model_options(args)
        image = load_image(args.image)
        models = model_options.load()
        face = extract_face(models, image, face_backend=args.face_backend,
                            face_index=args.face_index)
        server = LiveServer(models, face, defaults, max_streams=args.max_streams,
                            send_buffer=args.send_buffer)
    except Exception as exc:  # noqa: BLE001 - one line naming the cause, as the headless command
        print(f"error: {report(exc)}", file=sys.stderr)
        return EXIT_ERROR

    async def run() -> None:
        async with server.serve(args.host, args.port) as listening:
            port = listening.sockets[0].getsockname()[1]        # the one picked when --port is 0
            print(f"serving http://{args.host}:{port}/ (WebSocket ws://{args.host}:{port}/live)",
                  flush=True)
            await asyncio.get_running_loop().create_future()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
