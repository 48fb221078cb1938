"""The WebSocket ``/live`` protocol's messages in, checked into values (docs/live_mode.md).

One home for what a client may send and how each bad message is answered:
:func:`parse_start` turns a ``start`` message into (sample rate,
:class:`~joyvasa_core.live.LiveSettings`), :func:`read_text` a text message into
its JSON object, :func:`read_pcm` a binary message into samples. Each raises
:class:`ProtocolError` naming the fix, and the server answers it with one
``{"type": "error"}`` message of at most :data:`MAX_ERROR_CHARS` characters
(a value the client sent is quoted shortened, never echoed whole).
"""
from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from ..edits import build_edits
from ..live import LIVE_MOTION, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, LiveSettings

#: Largest WebSocket message accepted (bytes): 1 MiB is 32 s of 16 kHz s16le speech. A larger
#: one closes the connection with code 1009 (message too big; websockets' ``max_size``).
MAX_MESSAGE_BYTES = 1 << 20
#: Longest error message sent back (characters).
MAX_ERROR_CHARS = 300
#: ``start`` settings a client may send, beside ``sample_rate``: the session's own, the motion
#: sampler's (:class:`~joyvasa_core.settings.MotionSettings`) and the edits (as the headless
#: command's --expression, --blink and --eye-contact).
SESSION_SETTINGS = ("mode", "chunk", "lookahead")
MOTION_SETTINGS = ("steps", "seed", "cfg_scale", "smoothing", "pose_scale", "expression_scale")
EDIT_SETTINGS = ("expression", "blink", "eye_contact")
CLIENT_SETTINGS = SESSION_SETTINGS + MOTION_SETTINGS + EDIT_SETTINGS
_NUMBERS = ("cfg_scale", "smoothing", "pose_scale", "expression_scale", "eye_contact")
_TEXTS = ("mode", "expression", "blink")
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlist = _SHORT.maxdict = 6
_SHORT.maxlevel = 2


class ProtocolError(ValueError):
    """A client message that breaks the protocol; answered with an error message."""


def short(value: object) -> str:
    """A value a client sent, quoted in at most about 40 characters."""
    return _SHORT.repr(value)


def error_text(message: str) -> str:
    """``message`` cut to :data:`MAX_ERROR_CHARS` characters (the error the client reads)."""
    return message if len(message) <= MAX_ERROR_CHARS else message[:MAX_ERROR_CHARS - 3] + "..."


def read_text(message: str) -> dict:
    """A text message -> its JSON object; raises ProtocolError for anything else."""
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):      # RecursionError: nested thousands of levels deep
        raise ProtocolError(f"text messages must be JSON objects, got {short(message)}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"text messages must be JSON objects like {{\"type\": \"start\", ...}}, "
                            f"got {type(data).__name__} {short(data)}")
    return data


def read_pcm(message: bytes) -> np.ndarray:
    """A binary message -> s16le samples ``[N]`` int16; raises ProtocolError for an odd length."""
    if len(message) % 2:
        raise ProtocolError(f"an audio message of {len(message)} bytes: s16le PCM has 2 bytes "
                            "per sample, so send an even number of bytes")
    return np.frombuffer(message, dtype="<i2").copy()


def parse_start(message: Mapping, defaults: Mapping[str, object] | None = None) -> tuple[int, LiveSettings]:
    """A ``start`` message -> (sample rate, session settings); raises ProtocolError naming the fix.

    defaults: start settings (:data:`CLIENT_SETTINGS`) the server applies when the
    client does not send them (the server's command-line flags); the rest are
    :class:`~joyvasa_core.live.LiveSettings`' defaults. The edits are built here,
    once per stream (automatic blinks seeded by the stream's seed).
    """
    rate = message.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(f"start needs an integer sample_rate in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} "
                            f"(Hz of the PCM you will send), got {short(rate)}")
    unknown = sorted(set(message) - {"type", "sample_rate", *CLIENT_SETTINGS})
    if unknown:
        raise ProtocolError(f"unknown start settings {short(unknown)}; allowed: sample_rate, "
                            f"{', '.join(CLIENT_SETTINGS)}")
    given = {**(defaults or {}), **{k: v for k, v in message.items() if k in CLIENT_SETTINGS}}
    for key, value in given.items():
        if key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProtocolError(f"start setting {key} must be a number, got {short(value)}")
            given[key] = float(value)
        elif key in _TEXTS and not isinstance(value, str):
            raise ProtocolError(f"start setting {key} must be text, got {short(value)}")
        elif key == "seed" and isinstance(value, int) and not 0 <= value < 2**63:
            raise ProtocolError(f"start setting seed must be a whole number in 0..2**63-1 "
                                f"(the noise generator's range), got {short(value)}")
    try:
        motion = replace(LIVE_MOTION, **{k: given[k] for k in MOTION_SETTINGS if k in given})
        edits = build_edits(given.get("expression"), given.get("blink", "off"), seed=motion.seed,
                            eye_contact=given.get("eye_contact", 0.0))
        return rate, LiveSettings(motion=motion, edits=edits,
                                  **{k: given[k] for k in SESSION_SETTINGS if k in given})
    except ValueError as exc:
        raise ProtocolError(f"bad start setting: {exc}") from None
