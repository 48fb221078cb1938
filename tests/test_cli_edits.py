"""The command line's expression options in keypoints-only mode (--save-keypoints without --output)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import helpers_pipeline as hp
from helpers_cli import progress_lines
from joyvasa_core import cli
from joyvasa_core.errors import EXIT_ERROR
from joyvasa_core.config import LIP_INDICES
from joyvasa_core.edits.sliders import EYE_BROW_KEYPOINTS, slider_offsets, sliders_from_mapping

PLAIN = ["--sampler", "ddim", "--steps", "2", "--device", "cpu", "--face-backend", "none",
         "--no-stitching", "--driving-option", "pose-friendly", "--seed", "7"]

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    import skimage.data

    folder = tmp_path_factory.mktemp("cli_edits")
    image = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()[:300, 100:400]).save(image)
    speech = folder / "speech.wav"
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello there, this sentence lasts a while."],
                   check=True, capture_output=True)
    models = hp.write_fast_pretrained_weights(folder / "pretrained_weights")
    return {"image": image, "speech": speech, "models": models, "dir": folder}


def keypoints(inputs, name: str, *extra: str) -> dict[str, torch.Tensor]:
    path = inputs["dir"] / f"{name}.safetensors"
    with hp.fast_liveportrait_build():
        code = cli.main([*PLAIN, *map(str, ["--image", inputs["image"], "--audio", inputs["speech"],
                                            "--models-dir", inputs["models"],
                                            "--save-keypoints", path, *extra])])
    assert code == 0
    return load_file(str(path))


@pytest.fixture(scope="module")
def plain_keypoints(inputs):
    return keypoints(inputs, "plain", "--save-motion", inputs["dir"] / "motion_seed7.safetensors")


def test_keypoint_file_layout_determinism_and_nothing_rendered(inputs, plain_keypoints, capsys):
    x_d, x_s = plain_keypoints["x_d"], plain_keypoints["x_s"]
    assert x_d.dtype == x_s.dtype == torch.float32
    assert x_d.ndim == 3 and x_d.shape[1:] == (21, 3) and x_d.shape[0] > 50 and x_s.shape == (21, 3)
    again = keypoints(inputs, "again")
    assert torch.equal(again["x_d"], x_d) and torch.equal(again["x_s"], x_s)
    out, err = capsys.readouterr()
    assert "wrote" in out and "rendering" not in out
    # stderr: the motion windows' progress only (no frame is rendered)
    progress = progress_lines(err)
    assert progress and {label for label, _, _ in progress} == {"motion"}
    assert not list(inputs["dir"].glob("*.mp4"))


def test_smile_moves_exactly_the_smile_keypoints_by_the_slider_vector(inputs, plain_keypoints):
    smiling = keypoints(inputs, "smile", "--expression", "smile=0.8")
    diff = (smiling["x_d"] - plain_keypoints["x_d"]).double()
    delta = slider_offsets(sliders_from_mapping({"smile": 0.8}, torch.float64)).delta_exp
    moved = delta.abs().sum(-1) > 0
    assert (diff[:, ~moved].abs() < 1e-6).all()
    # every frame, frame 0 included: diff_i = k_i * delta (k_i = the frame's scale x multiplier)
    k = (diff[:, moved] * delta[moved]).sum((1, 2)) / delta[moved].square().sum()
    assert (k > 1).all()
    torch.testing.assert_close(diff[:, moved], k[:, None, None] * delta[moved], rtol=0, atol=2e-6)


def test_auto_blinks_move_only_eyes_and_brows_in_separate_blinks(inputs, plain_keypoints):
    blinking = keypoints(inputs, "blink", "--blink", "auto", "--blink-rate", "60")
    diff = (blinking["x_d"] - plain_keypoints["x_d"]).abs().amax(-1)         # [T, 21]
    others = [i for i in range(21) if i not in EYE_BROW_KEYPOINTS]
    assert diff[:, others].max() < 1e-6
    closed = (diff[:, list(EYE_BROW_KEYPOINTS)].amax(-1) > 1e-5).numpy()
    starts = np.flatnonzero(np.diff(closed.astype(int)) == 1)
    assert len(starts) >= 2                          # several blinks, with open eyes between them
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, closed.astype(int), 0])))[::2]
    assert runs.max() <= 10                          # each at most 0.4 s at 25 fps
    assert not closed[-12:].any()                    # none in the last half second


def test_eye_contact_moves_only_eyes_and_brows_as_the_head_turns(inputs, plain_keypoints):
    looking = keypoints(inputs, "eye_contact", "--eye-contact")
    diff = (looking["x_d"] - plain_keypoints["x_d"]).abs().amax(-1)         # [T, 21]
    others = [i for i in range(21) if i not in EYE_BROW_KEYPOINTS]
    assert diff[:, others].max() < 1e-6
    assert diff[0].max() < 1e-6                      # frame 0: the head has not turned yet
    assert (diff[:, 11] > 1e-6).float().mean() > 0.5  # the pupils follow the head's turns


def test_bad_eye_contact_strength_is_refused(inputs, capsys):
    code = cli.main(["--image", str(inputs["image"]), "--audio", str(inputs["speech"]),
                     "--save-keypoints", str(inputs["dir"] / "no.safetensors"),
                     "--eye-contact", "3"])
    assert code == EXIT_ERROR
    assert "error: --eye-contact must be in [0, 2], got 3" in capsys.readouterr().err


def test_output_stays_required_without_save_keypoints(inputs, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--image", str(inputs["image"]), "--audio", str(inputs["speech"])])
    assert info.value.code == 2
    assert "required: --output" in capsys.readouterr().err


def test_bad_expression_fails_before_models_load_and_points_at_it(inputs, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--image", str(inputs["image"]), "--audio", str(inputs["speech"]),
                  "--save-keypoints", "k.safetensors", "--expression", "smile=0.8, wink=30"])
    err = capsys.readouterr().err
    assert "argument --expression: wink=30 is outside the range 0..25 (at column 17)" in err
    assert "  smile=0.8, wink=30\n" + " " * 18 + "^" in err


def test_pose_from_another_seed_and_region_strengths(inputs, plain_keypoints):
    from joyvasa_core.motion import MotionSequence

    other = inputs["dir"] / "motion_seed8.safetensors"
    frozen = "lips=0, eyes=0, brows=0, expression=0"
    # seed 8 itself, expression frozen at frame 0 (strength 0); its motion saved as generated
    b = keypoints(inputs, "seed8_frozen", "--seed", "8", "--strength", frozen,
                  "--save-motion", other)["x_d"]
    # seed 7 with seed 8's head pose, expression frozen too
    a = keypoints(inputs, "seed7_pose8_frozen", "--pose-from", other, "--strength", frozen)["x_d"]
    m_own = MotionSequence.load(inputs["dir"] / "motion_seed7.safetensors")
    assert not torch.equal(m_own.yaw, MotionSequence.load(other).yaw)
    # The two differ only on the lips, which take frame 0's expression absolutely: the head
    # pose of every frame is seed 8's.
    lips = list(LIP_INDICES)
    rest = [i for i in range(21) if i not in LIP_INDICES]
    torch.testing.assert_close(a[:, rest], b[:, rest], rtol=0, atol=1e-6)
    assert (a[:, lips] - b[:, lips]).abs().max() > 1e-4
    assert (a - plain_keypoints["x_d"]).abs().max() > 1e-3


def test_pose_from_a_video_and_expression_from_a_photo(inputs, plain_keypoints):
    """The wiring of both options (their maths: tests/test_edits_mixing.py, test_pipeline.py)."""
    import skimage.data

    from joyvasa_core.video import VideoWriter

    image = np.asarray(Image.open(inputs["image"]))[:288, :288]
    clip = inputs["dir"] / "driving.mp4"
    with VideoWriter(clip, fps=10) as writer:
        writer.write(torch.from_numpy(np.stack([np.roll(image, s, axis=1) for s in range(0, 40, 4)])))
    reference = inputs["dir"] / "reference.png"
    Image.fromarray(skimage.data.chelsea()[:300, 50:350]).save(reference)
    mixed = keypoints(inputs, "video_photo", "--pose-from", clip, "--expression-from", reference,
                      "--expression-from-strength", "0.7")["x_d"]
    clip.unlink()
    assert mixed.shape == plain_keypoints["x_d"].shape
    assert (mixed - plain_keypoints["x_d"]).abs().amax(dim=(1, 2)).min() > 1e-4
