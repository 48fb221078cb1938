"""A complete tiny ``pretrained_weights`` tree in the official formats, for end-to-end tests.

Real architectures at tiny sizes: LivePortrait from ``helpers_checkpoints``'
``TINY_LIVEPORTRAIT`` (loaded through :func:`tiny_liveportrait_build`, since the
loader builds the full-size networks), a motion generator whose ``args`` name
small sizes (the loader reads them from the file), a 1-layer HuBERT saved as a
``transformers`` folder, and a motion template pickle. All filled with the
reference fill rule. Writing and loading take well under a second.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

import helpers_checkpoints as hcp
from joyvasa_core import model_files
from joyvasa_core.dit.args import MotionGeneratorArgs
from joyvasa_core.dit.audio_encoder import build_audio_encoder
from joyvasa_core.dit.model import build_motion_generator
from joyvasa_core.fill import fill_module_

#: Motion-generator ``args`` for a tiny model (the rest of the official args from the schema).
TINY_GENERATOR_ARGS = dict(motion_feat_dim=70, n_motions=10, n_prev_motions=2, feature_dim=16,
                           audio_model="hubert_zh", n_diff_steps=4, fps=25)
TINY_HUBERT = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=16, conv_dim=(8,) * 7, num_conv_pos_embeddings=8,
                   num_conv_pos_embedding_groups=2)


def write_tiny_hubert(folder: Path) -> Path:
    """``config.json``, ``preprocessor_config.json`` and ``model.safetensors`` of a tiny HuBERT."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    HubertModel(HubertConfig(**TINY_HUBERT)).save_pretrained(str(folder), safe_serialization=True)
    Wav2Vec2FeatureExtractor().save_pretrained(str(folder))
    return folder


def write_tiny_pretrained_weights(root: Path, variant: str = "human") -> Path:
    """Every file :func:`joyvasa_core.model_files.required_files` needs, tiny, under ``root``."""
    with hcp.tiny_backbone():
        hcp.write_official_tree(root, hcp.filled_liveportrait(hcp.TINY_LIVEPORTRAIT), variant)
    hubert = write_tiny_hubert(root / "chinese-hubert-base")
    args = MotionGeneratorArgs(**TINY_GENERATOR_ARGS)
    generator = fill_module_(build_motion_generator(args, build_audio_encoder("hubert_zh", hubert)))
    schema = json.loads((hcp.SCHEMA / "motion_generator.json").read_text())["args_namespace"]
    hcp.write_motion_generator_file(
        root / model_files.MOTION_GENERATOR_DIR / model_files.MOTION_GENERATOR_FILE,
        generator.state_dict(), args={**schema, **TINY_GENERATOR_ARGS})
    hcp.write_motion_template(root / model_files.MOTION_TEMPLATE_DIR / model_files.MOTION_TEMPLATE_FILE,
                              hcp.make_motion_template())
    return root


def tiny_liveportrait_build():
    """Make ``load_liveportrait`` build the tiny configuration (the files above)."""
    return hcp.liveportrait_build(hcp.TINY_LIVEPORTRAIT)
