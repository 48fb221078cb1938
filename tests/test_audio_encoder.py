"""Audio encoders: checkpoint layout, pretrained folders, and the official feature path."""
from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch import nn

from conftest import PARITY, SCHEMA
from helpers_precision import assert_float32_close, to_float64
from joyvasa_core.dit.audio_encoder import (AudioFeatures, build_audio_encoder, encode_audio,
                                            encoder_hidden_states, pad_audio)
from joyvasa_core.fill import fill_module_
from joyvasa_core.parity.fixture import Fixture

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
FAMILIES = {"hubert_zh": (transformers.HubertModel, transformers.HubertConfig),
            "wav2vec2": (transformers.Wav2Vec2Model, transformers.Wav2Vec2Config)}


def tiny_generator(audio_model: str, feature_dim: int = 24, attn: str = "sdpa") -> nn.Module:
    """A stand-in generator: a tiny filled encoder plus a filled ``audio_feature_map``."""
    model_cls, config_cls = FAMILIES[audio_model]
    encoder = model_cls._from_config(config_cls(**TINY), attn_implementation=attn).eval()
    holder = nn.Module()
    holder.audio_encoder = encoder
    holder.audio_feature_map = nn.Linear(TINY["hidden_size"], feature_dim)
    return fill_module_(holder)


@pytest.mark.slow
@pytest.mark.parametrize("audio_model,schema", [("hubert_zh", "motion_generator.json"),
                                                ("wav2vec2", "motion_generator_wav2vec2.json")])
def test_default_encoder_has_the_checkpoint_layout(audio_model, schema):
    meta = json.loads((SCHEMA / schema).read_text())
    entries = meta.get("entries_audio_encoder") or meta["entries"]
    expected = {e["key"]: e["shape"] for e in entries if e["key"].startswith("audio_encoder.")}
    encoder = build_audio_encoder(audio_model)
    ours = {"audio_encoder." + k: list(v.shape) for k, v in encoder.state_dict().items()}
    assert ours == expected
    assert not encoder.training and encoder.config._attn_implementation == "sdpa"


def test_pretrained_folder_round_trip(tmp_path):
    src = tiny_generator("hubert_zh").audio_encoder
    src.save_pretrained(tmp_path)
    loaded = build_audio_encoder("hubert_zh", tmp_path)
    assert isinstance(loaded, transformers.HubertModel) and not loaded.training
    for key, value in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_build_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_audio_encoder("hubert_zh", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown audio_model"):
        build_audio_encoder("whisper")


@pytest.mark.parametrize("n", [16000, 16080, 16123, 16250, 16300, 16399, 64000])
def test_pad_audio_gives_one_conv_frame_per_320_samples(n):
    encoder = tiny_generator("hubert_zh").audio_encoder
    padded = pad_audio(torch.randn(2, n))
    assert encoder.feature_extractor(padded).shape[-1] == n // 320
    if n == 64000:
        assert padded.shape == (2, 64080)


def test_pad_audio_reflects_twice():
    x = torch.arange(64000, dtype=torch.float32)[None]
    padded = pad_audio(x)[0]
    once = torch.nn.functional.pad(x[:, None], (20, 20), mode="reflect")
    torch.testing.assert_close(padded, torch.nn.functional.pad(once, (20, 20), mode="reflect")[0, 0],
                               atol=0, rtol=0)                  # copies
    assert padded[:41].tolist() == list(range(20)) + list(range(20, 0, -1)) + [0]  # reflect of a reflect


@pytest.mark.parametrize("audio_model", sorted(FAMILIES))
def test_encode_audio_matches_the_plain_transformers_forward(audio_model):
    """At 2 features per frame the resampling steps are identities: the encoder is the plain model."""
    model = tiny_generator(audio_model)
    audio = torch.randn(2, 16000)                      # 1 s at 25 fps: 25 frames, 50 conv frames
    with torch.inference_mode():
        feats = encode_audio(model, audio, fps=25)
        plain = model.audio_encoder(pad_audio(audio)).last_hidden_state
        ref = encode_audio(to_float64(model), audio.double(), fps=25)
    assert isinstance(feats, AudioFeatures)
    assert feats.conv_features.shape == (2, 16, 50) and feats.last_hidden_state.shape == (2, 50, 32)
    assert feats.audio_feat.shape == (2, 25, 24)
    assert_float32_close(plain, feats.last_hidden_state, ref.last_hidden_state)
    pairs = (plain[:, 0::2] + plain[:, 1::2]) / 2     # linear 2L -> L, align_corners=False
    assert_float32_close(model.audio_feature_map(pairs), feats.audio_feat, ref.audio_feat)


def test_encoder_resamples_conv_features_to_the_frame_count():
    model = tiny_generator("hubert_zh")
    padded = pad_audio(torch.randn(1, 16000))
    with torch.inference_mode():
        conv, hidden = encoder_hidden_states(model.audio_encoder, padded, fps=30, frame_num=60)
    assert conv.shape[-1] == 50 and hidden.shape == (1, 60, 32)


def test_sdpa_matches_eager_attention():
    sdpa, eager = tiny_generator("hubert_zh"), tiny_generator("hubert_zh", attn="eager")
    audio = torch.randn(1, 32000)
    with torch.inference_mode():
        a, b = encode_audio(sdpa, audio, fps=25), encode_audio(eager, audio, fps=25)
        ref = encode_audio(to_float64(eager), audio.double(), fps=25)
    assert_float32_close(a.audio_feat, b.audio_feat, ref.audio_feat)


@pytest.mark.slow
@pytest.mark.parametrize("name,prefix", [("dit_audio_feature", "hubert"),
                                         ("dit_audio_feature_wav2vec2", "wav2vec2")])
def test_parity_audio_features(name, prefix):
    from joyvasa_core.parity.audio_motion import dit_audio_feature

    fx = Fixture.open(PARITY, name)
    with torch.inference_mode():
        out = dit_audio_feature(fx, torch.device("cpu"))
    names = ["audio_feat", f"{prefix}_conv_features", f"{prefix}_last_hidden_state", "audio_padded"]
    for key in (n for n in names if n in fx.specs):
        torch.testing.assert_close(out[key], fx.tensor(key), atol=1e-4, rtol=1e-4)
