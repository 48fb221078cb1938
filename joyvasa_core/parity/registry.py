"""Which code path runs which fixture, and how closely each output must match.

A handler takes a :class:`Fixture` and a device and returns the full-size
output tensors by name; it must read every input and setting from the fixture.
Handler modules register themselves with :func:`handler` and are listed in
``HANDLER_MODULES`` so the runner can import them.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch

from .fixture import Fixture

Handler = Callable[[Fixture, torch.device], dict[str, torch.Tensor]]

HANDLER_MODULES = (
    "joyvasa_core.parity.lp_render",
    "joyvasa_core.parity.lp_keypoints",
    "joyvasa_core.parity.dit",
    "joyvasa_core.parity.audio_motion",
    "joyvasa_core.parity.crop",
    "joyvasa_core.parity.audio_resample",
    "joyvasa_core.parity.edits",
)

_HANDLERS: dict[str, Handler] = {}

#: (fixture glob, output glob) -> (atol, rtol); the first match wins.
#: Values follow the reference README section 5 ("suggested tolerances").
TOLERANCES: list[tuple[str, str, float, float]] = [
    ("spade_generator", "*", 1e-3, 1e-4),
    ("pipeline_motion", "render.*", 1e-3, 1e-4),
    ("dit_sample_full", "*", 1e-3, 1e-3),
    # Noise-target steps divide by sqrt(alpha_t) (31.6 at t = T): the reference's own
    # float32 output differs from a float64 recomputation by 2.4e-4 at t = 500.
    ("dit_sample_step", "noise.*", 1e-3, 1e-4),
    ("gen_motion_sequence_e2e", "*", 1e-3, 1e-3),
    ("crop", "*img_crop*", 1.0, 0.0),      # uint8 images: +-1 level
    ("crop", "paste_back", 1.0, 0.0),
    ("audio_resample", "*", 1e-5, 0.0),    # README section 5: soxr gives librosa's samples
    # Plain float32 arithmetic (reference README section 5); the stored float32 sliders are
    # themselves rounded from the reference's float64 values: one float32 ulp of the angle.
    ("expression_edit", "*", 1e-6, 1.2e-7),
    ("*", "*", 1e-4, 1e-4),
]


def handler(*fixture_names: str) -> Callable[[Handler], Handler]:
    """Register a function as the handler of the named fixtures."""
    def register(fn: Handler) -> Handler:
        for name in fixture_names:
            _HANDLERS[name] = fn
        return fn
    return register


def find_handler(fixture_name: str) -> Handler | None:
    import importlib

    for module in HANDLER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a handler module not written yet
            if exc.name != module:
                raise
    return _HANDLERS.get(fixture_name)


def tolerance(fixture_name: str, output_name: str) -> tuple[float, float]:
    for fx_glob, out_glob, atol, rtol in TOLERANCES:
        if fnmatch.fnmatchcase(fixture_name, fx_glob) and fnmatch.fnmatchcase(output_name, out_glob):
            return atol, rtol
    raise AssertionError("unreachable: the table ends with a catch-all")
