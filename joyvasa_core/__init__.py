"""JoyVASA core: a plain PyTorch library (no ComfyUI imports).

Turns one portrait plus a speech recording into talking-head frames:
LivePortrait's F/M/W/G/S networks render, JoyVASA's diffusion transformer
turns audio into LivePortrait motion.
"""

__version__ = "0.1.0"
