"""joyvasa_core/options.py: argv -> a checked Job and ModelOptions, one value per concept."""
from __future__ import annotations

from pathlib import Path

import pytest

from joyvasa_core import options
from joyvasa_core.errors import UsageError


def job_of(*argv: str):
    return options.job_from_args(options.parse_args(list(argv)))


def test_flags_become_the_values_the_library_reads(tmp_path: Path):
    job = job_of("--image", "face.png", "--audio", "a.wav", "--output", str(tmp_path / "o.mp4"),
                 "--seed", "7", "--cfg-scale", "2", "--sampler", "ddim", "--steps", "12",
                 "--smoothing", "0.5", "--pose-scale", "0.8", "--expression-scale", "1.2",
                 "--pe-variant", "legacy", "--cuda-graphs", "--animation-region", "exp",
                 "--driving-option", "pose-friendly", "--no-stitching", "--driving-multiplier",
                 "1.1", "--batch-size", "3", "--crop-only", "--strength", "yaw=0.5",
                 "--expression", "smile=0.5", "--blink", "auto", "--eye-contact")
    m = job.motion
    assert (m.seed, m.cfg_scale, m.sampler, m.steps, m.smoothing, m.pose_scale,
            m.expression_scale, m.pe_variant, m.cuda_graphs) == (7, 2.0, "ddim", 12, 0.5, 0.8, 1.2,
                                                                 "legacy", True)
    d = job.driving
    assert (d.animation_region, d.driving_option, d.flag_stitching, d.driving_multiplier) == \
        ("exp", "pose-friendly", False, 1.1)
    assert job.render.batch_size == 3 and job.render.cuda_graphs       # one flag, both stages
    assert job.outputs.paste is False and job.outputs.video == tmp_path / "o.mp4"
    assert job.source.image == Path("face.png") and job.source.video is None
    assert job.edits.strength is not None and job.edits.keypoints is not None
    assert len(job.edits.keypoints.tracks) == 2 and job.edits.keypoints.eye_contact_tracks


def test_a_video_takes_its_region_from_region_not_animation_region(tmp_path: Path):
    job = job_of("--video", "clip.mp4", "--audio", "a.wav", "--output", str(tmp_path / "o.mp4"),
                 "--region", "exp", "--animation-region", "pose", "--loop", "loop")
    assert job.driving.animation_region == "exp" and job.source.loop == "loop"
    photo = job_of("--image", "f.png", "--audio", "a.wav", "--output", str(tmp_path / "o.mp4"),
                   "--region", "exp", "--animation-region", "pose")
    assert photo.driving.animation_region == "pose"


def test_model_options(tmp_path: Path):
    args = options.parse_args(["--image", "f.png", "--audio", "a.wav", "--output", "o.mp4",
                               "--models-dir", str(tmp_path), "--animal", "--device", "cpu",
                               "--precision", "bf16"])
    m = options.model_options(args)
    assert (m.models_dir, m.variant, m.device, m.precision) == (tmp_path, "animal", "cpu", "bf16")
    args.models_dir = Path(__file__)
    with pytest.raises(UsageError, match="is a file; pass the pretrained_weights folder"):
        options.model_options(args)


@pytest.mark.parametrize("flag, value, message", [
    ("--cfg-scale", "inf", "--cfg-scale must be a finite number"),
    ("--steps", "0", "--steps must be >= 1"),
    ("--eye-contact", "2.5", r"--eye-contact must be in \[0, 2\], got 2.5"),
    ("--batch-size", "0", "--batch-size must be >= 1"),
    ("--smoothing", "-1", "--smoothing must be >= 0"),
])
def test_bad_numbers_name_their_flag(flag, value, message, tmp_path: Path):
    with pytest.raises(UsageError, match=message):
        job_of("--image", "f.png", "--audio", "a.wav", "--output", str(tmp_path / "o.mp4"),
               flag, value)
