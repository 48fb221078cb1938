"""JoyVASA's audio-to-motion diffusion transformer (official ``DitTalkingHead``).

* :mod:`.args` — :class:`MotionGeneratorArgs` from a checkpoint's ``args``.
* :mod:`.schedule` — :class:`DiffusionSchedule` value object (+ checkpoint buffers).
* :mod:`.denoiser` — :class:`DenoisingNetwork` (positional tables, diagonal cross-attention).
* :mod:`.model` — :class:`MotionGenerator` and :func:`build_motion_generator`.
* :mod:`.samplers` — DDPM / DDIM steps, classifier-free guidance, :func:`sample_window`.
* :mod:`.loading` — :func:`load_motion_generator` for the official ``.pt`` file.
* :mod:`.audio_encoder` — HuBERT / wav2vec2 audio features.
"""
from .args import MotionGeneratorArgs
from .denoiser import DenoisingNetwork
from .model import MotionGenerator, build_motion_generator
from .samplers import cfg_combine, ddim_step, ddpm_step, sample_window
from .schedule import DiffusionSchedule

__all__ = ["DenoisingNetwork", "DiffusionSchedule", "MotionGenerator", "MotionGeneratorArgs",
           "build_motion_generator", "cfg_combine", "ddim_step", "ddpm_step", "sample_window"]
