"""Parity handlers for the audio feature path and the end-to-end motion generation.

The motion generator is built from the sidecar ``config`` with its audio encoder
and filled with the fill rule (``filled_generator``); every input (audio,
injected noise, template — stored ``template.*`` tensors, else the sidecar's
``template`` — and the cfg settings) is read from the fixture.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..audio import AUDIO_SAMPLE_RATE
from ..dit.audio_encoder import encode_audio
from ..generate import generate_motion
from ..motion import MotionTemplate
from .dit import filled_generator
from .fixture import Fixture
from .registry import handler

#: Intermediate-name prefix per audio_model family in the feature fixtures.
_PREFIX = {"wav2vec2": "wav2vec2"}


@handler("dit_audio_feature", "dit_audio_feature_wav2vec2")
def dit_audio_feature(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    model = filled_generator(fx, device, with_audio_encoder=True)
    feats = encode_audio(model, fx.tensor("audio").to(device), frame_num=model.n_motions)
    prefix = _PREFIX.get(model.args.audio_model, "hubert")
    return {"audio_feat": feats.audio_feat, "audio_padded": feats.padded,
            f"{prefix}_conv_features": feats.conv_features,
            f"{prefix}_last_hidden_state": feats.last_hidden_state}


@handler("gen_motion_sequence_e2e")
def gen_motion_sequence_e2e(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    model = filled_generator(fx, device, with_audio_encoder=True)
    stored = {k.split(".", 1)[1]: fx.tensor(k).numpy() for k in fx.specs if k.startswith("template.")}
    template = MotionTemplate.from_dict(stored or fx.meta["template"])
    seq = generate_motion(model, template, fx.tensor("audio").to(device), AUDIO_SAMPLE_RATE,
                          cfg_scale=float(fx.meta["cfg_scale"]), cfg_mode=fx.meta.get("cfg_mode"),
                          noise=fx.tensor("noise").to(device), smoothing=1.0)
    return {"motion.exp": seq.exp, "motion.scale": seq.scale, "motion.t": seq.t,
            "motion.pitch": seq.pitch[:, None], "motion.yaw": seq.yaw[:, None],
            "motion.roll": seq.roll[:, None], "motion.R": seq.rotation()}
