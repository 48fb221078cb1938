"""Named defaults in one place: architecture sizes and official settings.

The LivePortrait sizes equal the official ``models.yaml`` ``model_params``; they
fix the checkpoint layouts, so they are constants, not user options.
"""
from __future__ import annotations

from typing import Any

APPEARANCE_FEATURE_EXTRACTOR: dict[str, Any] = dict(
    image_channel=3, block_expansion=64, num_down_blocks=2, max_features=512,
    reshape_channel=32, reshape_depth=16, num_resblocks=6,
)
MOTION_EXTRACTOR: dict[str, Any] = dict(num_kp=21, backbone="convnextv2_tiny")
WARPING_MODULE: dict[str, Any] = dict(
    num_kp=21, block_expansion=64, max_features=512, num_down_blocks=2,
    reshape_channel=32, estimate_occlusion_map=True,
    dense_motion_params=dict(block_expansion=32, max_features=1024, num_blocks=5,
                             reshape_depth=16, compress=4),
)
SPADE_GENERATOR: dict[str, Any] = dict(upscale=2, block_expansion=64, max_features=512,
                                       num_down_blocks=2)
STITCHING_RETARGETING: dict[str, dict[str, Any]] = dict(
    stitching=dict(input_size=126, hidden_sizes=[128, 128, 64], output_size=65),
    lip=dict(input_size=65, hidden_sizes=[128, 128, 64], output_size=63),
    eye=dict(input_size=66, hidden_sizes=[256, 256, 128, 128, 64], output_size=63),
)

#: Sub-dict names inside ``stitching_retargeting_module.pth`` -> our part names.
STITCHING_FILE_PARTS: dict[str, str] = dict(
    retarget_shoulder="stitching", retarget_mouth="lip", retarget_eye="eye",
)

# Rendering geometry.
NUM_KP = 21
SOURCE_SIZE = 256          # F and M input resolution (pixels)
RENDER_SIZE = 512          # G output resolution (pixels)

# Official crop (LivePortrait CropConfig as JoyVASA's app uses it).
CROP_SCALE = 2.3
CROP_VX_RATIO = 0.0
CROP_VY_RATIO = -0.125
CROP_DSIZE = 512

# Audio / motion.
AUDIO_SAMPLE_RATE = 16000  # Hz, what the audio encoders expect
AUDIO_PAD_BEFORE = 1280    # samples (2 frames at 25 fps) added before the speech
AUDIO_PAD_AFTER = 640      # samples (1 frame) added after
DEFAULT_FPS = 25
DEFAULT_CFG_SCALE = 2.8    # official inference CLI default
POSE_EMA_ALPHA = 0.01      # official smooth_(method='ema')
LIP_INDICES = (6, 12, 14, 17, 19, 20)  # keypoints whose exp is taken absolutely
