"""joyvasa_core/settings.py: MotionSettings is checked where it is built."""
from __future__ import annotations

import math

import pytest

from joyvasa_core.settings import MotionSettings


def test_defaults_are_the_official_settings():
    s = MotionSettings()
    assert (s.sampler, s.steps, s.cfg_scale, s.smoothing, s.pe_variant) == ("ddpm", None, 2.8, 1.0, "head")
    assert MotionSettings(cfg_scale=None).cfg_scale is None      # no guidance (parity fixtures)


@pytest.mark.parametrize("bad, message", [
    (dict(sampler="euler"), "sampler must be one of"),
    (dict(pe_variant="rope"), "pe_variant must be one of"),
    (dict(steps=0), "steps must be a whole number >= 1"),
    (dict(steps=2.5), "steps must be a whole number >= 1"),
    (dict(seed=True), "seed must be a whole number"),
    (dict(cfg_scale=-1.0), "cfg_scale must be >= 0"),
    (dict(smoothing=math.nan), "smoothing must be a finite number"),
    (dict(pose_scale=math.inf), "pose_scale must be a finite number"),
])
def test_bad_settings_name_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        MotionSettings(**bad)
