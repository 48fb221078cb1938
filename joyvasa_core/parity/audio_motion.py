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
from ..settings import MotionSettings
from .dit import filled_generator, guidance_settings
from .fixture import Fixture
from .registry import handler

#: Intermediate-name prefix per audio_model family in the feature fixtures.
_PREFIX = {"wav2vec2": "wav2vec2"}


@handler("dit_audio_feature", "dit_audio_feature_wav2vec2")
def dit_audio_feature(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    model = filled_generator(fx, device, with_audio_encoder=True)
    # Official extract_audio_feature(audio): frame_num defaults to n_motions; a fixture whose
    # audio_feat has another length was called with that frame_num.
    spec = fx.specs.get("audio_feat")
    frame_num = int(spec["shape"][1]) if spec else model.n_motions
    feats = encode_audio(model, fx.tensor("audio").to(device), frame_num=frame_num)
    prefix = _PREFIX.get(model.args.audio_model, "hubert")
    return {"audio_feat": feats.audio_feat, "audio_padded": feats.padded,
            f"{prefix}_conv_features": feats.conv_features,
            f"{prefix}_last_hidden_state": feats.last_hidden_state}


def fixture_template(fx: Fixture) -> MotionTemplate:
    """The motion template: stored ``template.<key>`` tensors, else the sidecar's ``template``."""
    stored = {k.removeprefix("template."): fx.tensor(k).numpy() for k in fx.specs if k.startswith("template.")}
    if not stored and "template" not in fx.meta:
        raise KeyError(f"fixture {fx.name}: no 'template.*' tensors and no sidecar 'template'")
    return MotionTemplate.from_dict(stored or fx.meta["template"])


@handler("gen_motion_sequence_e2e")
def gen_motion_sequence_e2e(fx: Fixture, device: torch.device) -> dict[str, Tensor]:
    model = filled_generator(fx, device, with_audio_encoder=True)
    # Windows and frame count follow from the audio length (the sidecar's 'windows' and
    # 'n_frames' are what the official run found; the output shapes check them).
    guidance = guidance_settings(fx, model)
    settings = MotionSettings(cfg_scale=guidance["cfg_scale"],
                              smoothing=1.0 if fx.meta.get("is_smooth_motion", True) else 0.0)
    seq = generate_motion(model, fixture_template(fx), fx.tensor("audio").to(device),
                          int(fx.meta.get("sample_rate", AUDIO_SAMPLE_RATE)), settings,
                          cfg_mode=guidance["cfg_mode"], threshold=guidance["threshold"],
                          noise=fx.tensor("noise").to(device))
    return {"motion.exp": seq.exp, "motion.scale": seq.scale, "motion.t": seq.t,
            "motion.pitch": seq.pitch[:, None], "motion.yaw": seq.yaw[:, None],
            "motion.roll": seq.roll[:, None], "motion.R": seq.rotation()}
