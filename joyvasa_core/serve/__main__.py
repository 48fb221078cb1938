"""``python -m joyvasa_core.serve --models-dir DIR --image PHOTO``: the live server (see the package)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from ..devices import DEVICE_CHOICES, PRECISION_CHOICES
from ..live import MODES, LiveSettings


def build_parser() -> argparse.ArgumentParser:
    defaults = LiveSettings()
    parser = argparse.ArgumentParser(
        prog="python -m joyvasa_core.serve",
        description="Serve a live talking head of one photo: GET / is the page, WebSocket /live "
                    "takes s16le PCM and sends JPEG frames (protocol: README.md, Live mode).")
    parser.add_argument("--models-dir", required=True, help="the official pretrained_weights folder")
    parser.add_argument("--image", required=True, help="the portrait photo")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--precision", default="auto", choices=PRECISION_CHOICES)
    parser.add_argument("--face-backend", default="auto", help="auto|onnx|mtcnn|none")
    parser.add_argument("--animal", action="store_true", help="the animal LivePortrait weights")
    live = parser.add_argument_group("live defaults (a client's start message may override them)")
    live.add_argument("--mode", default=defaults.mode, choices=MODES)
    live.add_argument("--chunk", type=int, default=defaults.chunk, help="frames committed per step")
    live.add_argument("--lookahead", type=int, default=defaults.lookahead,
                      help="frames of audio waited for beyond the committed ones")
    live.add_argument("--steps", type=int, default=defaults.steps, help="DDIM steps per window")
    live.add_argument("--seed", type=int, default=defaults.seed)
    live.add_argument("--expression", default=defaults.expression, metavar="TEXT",
                      help="expression edits, as the headless command's (README, Expression control)")
    live.add_argument("--blink", default=defaults.blink, metavar="auto|off|TIMES",
                      help="natural blinks (auto: seeded by --seed)")
    live.add_argument("--eye-contact", type=float, nargs="?", const=1.0, default=defaults.eye_contact,
                      metavar="STRENGTH", help="keep the eyes on the camera (0-2, 1 when given alone)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        settings = LiveSettings(mode=args.mode, chunk=args.chunk, lookahead=args.lookahead,
                                steps=args.steps, seed=args.seed, expression=args.expression,
                                blink=args.blink, eye_contact=args.eye_contact)
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must lie in 0..65535, got {args.port}")
        from ..face.image_io import load_image
        from ..pipeline import extract_face, load_models
        from . import LiveServer

        image = load_image(args.image)
        models = load_models(args.models_dir, variant="animal" if args.animal else "human",
                             device=args.device, precision=args.precision)
        face = extract_face(models, image, face_backend=args.face_backend)
        server = LiveServer(models, face, settings)
    except Exception as exc:  # noqa: BLE001 - one line naming the cause, as the headless command
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 1

    async def run() -> None:
        async with server.serve(args.host, args.port):
            print(f"serving http://{args.host}:{args.port}/ (WebSocket ws://{args.host}:{args.port}/live)",
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
