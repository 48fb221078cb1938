"""Parity handler for fixture ``audio_resample``: the official speech front end.

The official inference reads speech with ``librosa.load(path, sr=16000,
mono=True)``: the channel mean, then soxr HQ resampling to 16 kHz. Each case
``<case>`` of the fixture holds ``waveform.<case>`` [C, N] float32 at the
sidecar's ``cases.<case>.sample_rate`` and the reference ``wave16k.<case>`` [M];
the handler runs every case through :func:`joyvasa_core.audio.prepare_waveform`,
the function every speech path of the product uses.
"""
from __future__ import annotations

import torch

from ..audio import prepare_waveform
from ..config import AUDIO_SAMPLE_RATE
from .fixture import Fixture
from .registry import handler

_INPUT, _OUTPUT = "waveform.", "wave16k."


@handler("audio_resample")
def run_audio_resample(fx: Fixture, device: torch.device) -> dict[str, torch.Tensor]:
    cases = fx.meta.get("cases", {})
    out: dict[str, torch.Tensor] = {}
    for name in fx.names("input"):
        if not name.startswith(_INPUT):
            continue
        case = name[len(_INPUT):]
        if case not in cases or "sample_rate" not in cases[case]:
            raise KeyError(f"the sidecar gives no cases.{case}.sample_rate for input {name}")
        waveform = fx.tensor(name).to(device)
        out[_OUTPUT + case] = prepare_waveform(waveform, int(cases[case]["sample_rate"]),
                                               target_rate=AUDIO_SAMPLE_RATE, allow_silence=True)
    return out
