"""load_motion_generator on tiny official-format checkpoints ({'args', 'model', 'iter'})."""
from __future__ import annotations

import argparse
import pathlib

import pytest
import torch
import transformers

from joyvasa_core.dit.args import MotionGeneratorArgs
from joyvasa_core.dit.loading import load_motion_generator
from joyvasa_core.dit.model import build_motion_generator
from joyvasa_core.errors import CheckpointError
from joyvasa_core.fill import fill_module_

CKPT_ARGS = dict(motion_feat_dim=6, n_motions=8, n_prev_motions=3, feature_dim=16, n_diff_steps=5,
                 audio_model="hubert_zh", fps=25, pad_mode="zero", use_indicator=True,
                 n_layers=6, data_root=pathlib.PurePosixPath("data"))
TINY_HUBERT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                   conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3),
                   num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)


@pytest.fixture
def tiny_encoder_dir(tmp_path):
    folder = tmp_path / "hubert"
    transformers.HubertModel(transformers.HubertConfig(**TINY_HUBERT)).save_pretrained(folder)
    return folder


def tiny_reference(encoder_dir, **overrides):
    """A filled tiny generator; n_layers=8 as the official constructor builds it
    (a small width keeps it light)."""
    from joyvasa_core.dit.audio_encoder import build_audio_encoder

    args = MotionGeneratorArgs.from_checkpoint_args(CKPT_ARGS, **overrides)
    return fill_module_(build_motion_generator(args, build_audio_encoder(args.audio_model, encoder_dir)))


def save(path, state_dict, **args):
    ns = argparse.Namespace(**{**CKPT_ARGS, **args})
    torch.save({"args": ns, "model": state_dict, "iter": 123}, path)
    return path


def test_round_trip_with_encoder_folder(tmp_path, tiny_encoder_dir):
    ref = tiny_reference(tiny_encoder_dir)
    path = save(tmp_path / "mg.pt", ref.state_dict())
    model = load_motion_generator(path, tiny_encoder_dir)
    assert not model.training and model.args.n_layers == 8
    assert model.load_report.iteration == 123
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    ours, theirs = model.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_te_table_is_rebuilt_and_file_buffers_are_used(tmp_path, tiny_encoder_dir):
    ref = tiny_reference(tiny_encoder_dir)
    sd = ref.state_dict()
    sd["denoising_net.TE.pe"] = torch.zeros_like(sd["denoising_net.TE.pe"])   # popped, as officially
    sd["diffusion_sched.betas"] = sd["diffusion_sched.betas"] + 1.0            # loaded from the file
    model = load_motion_generator(save(tmp_path / "mg.pt", sd), tiny_encoder_dir)
    assert torch.equal(model.denoising_net.TE.pe, ref.denoising_net.TE.pe)
    assert torch.equal(model.diffusion_sched.betas, sd["diffusion_sched.betas"])


def test_missing_denoiser_weight_raises(tmp_path, tiny_encoder_dir):
    sd = tiny_reference(tiny_encoder_dir).state_dict()
    del sd["denoising_net.feature_proj.weight"]
    with pytest.raises(CheckpointError, match="denoising_net.feature_proj.weight"):
        load_motion_generator(save(tmp_path / "mg.pt", sd), tiny_encoder_dir)


def test_encoder_weights_may_come_from_the_folder_only(tmp_path, tiny_encoder_dir):
    ref = tiny_reference(tiny_encoder_dir)
    sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("audio_encoder.")}
    sd["extra.key"] = torch.zeros(1)
    model = load_motion_generator(save(tmp_path / "mg.pt", sd), tiny_encoder_dir, dtype=torch.float16)
    report = model.load_report
    assert report.unexpected == ["extra.key"] and all(k.startswith("audio_encoder.") for k in report.missing)
    assert model.denoising_net.feature_proj.weight.dtype == torch.float16
    assert model.diffusion_sched.alpha_bars.dtype == torch.float32
    folder = transformers.HubertModel.from_pretrained(tiny_encoder_dir).state_dict()
    assert all(torch.equal(v.half(), model.audio_encoder.state_dict()[k]) for k, v in folder.items())


def test_shape_mismatch_names_the_args(tmp_path, tiny_encoder_dir):
    sd = tiny_reference(tiny_encoder_dir, n_diff_steps=7).state_dict()
    with pytest.raises(CheckpointError, match="n_diff_steps=5"):
        load_motion_generator(save(tmp_path / "mg.pt", sd), tiny_encoder_dir)
