"""Natural blinks (joyvasa_core.edits.blink): timing statistics, shape, scope and determinism."""
from __future__ import annotations

import pytest
import torch

from joyvasa_core.edits import Blinks, Edits
from joyvasa_core.edits.blink import BLINK_CLOSED_SLIDER, END_MARGIN
from joyvasa_core.edits.sliders import EYE_BROW_KEYPOINTS, SLIDER_NAMES

FINE = 1e-3   # seconds, time grid for shape measurements


def test_rate_and_intervals_over_ten_minutes():
    per_minute = []
    for seed in range(5):
        starts, durations = Blinks(seed=seed, end=600.0).schedule(600.0)
        per_minute.append(len(starts) / 10)
        intervals = starts.diff()
        assert intervals.min() >= 0.5
        cv = float(intervals.std() / intervals.mean())
        assert 0.3 < cv < 0.75, cv                      # random, but not clumped like Poisson (cv 1)
        assert durations.min() >= 0.1 and durations.max() <= 0.4
    assert all(14 <= r <= 21 for r in per_minute), per_minute
    assert 15 <= sum(per_minute) / len(per_minute) <= 19
    fast = len(Blinks(rate=30, seed=0, end=600.0).schedule(600.0)[0]) / 10
    assert 26 <= fast <= 34


def test_each_blink_closes_fast_and_opens_slower_and_blinks_are_separate():
    blinks = Blinks(seed=2, end=30.0)
    starts, durations = blinks.schedule(30.0)
    t = torch.arange(0, 30, FINE, dtype=torch.float64)
    closure = blinks.closure(t)
    assert closure.max() <= 1 and closure.min() >= 0
    for start, duration in zip(starts.tolist(), durations.tolist()):
        inside = (t >= start) & (t <= start + duration)
        shape = closure[inside]
        peak = int(shape.argmax())
        assert shape.max() > 0.999
        assert peak < len(shape) - 1 - peak               # closing shorter than opening
        assert shape[0] < 0.01 and shape[-1] < 0.01        # open again before the next blink
    open_eyes = closure == 0
    assert open_eyes.float().mean() > 0.8                 # the eyes are open most of the time


def test_no_blink_in_the_last_half_second():
    for seed in range(20):
        blinks = Blinks(seed=seed, rate=60, end=7.3)
        t = torch.arange(0, 7.3, FINE, dtype=torch.float64)
        assert blinks.closure(t)[t > 7.3 - END_MARGIN].abs().max() == 0
        assert blinks.closure(t).max() > 0.99


def test_seeded_and_the_same_chunk_by_chunk():
    t = torch.arange(0, 40, 0.04, dtype=torch.float64)
    whole = Blinks(seed=5, end=40.0).closure(t)
    chunked = Blinks(seed=5, end=40.0)
    pieces = torch.cat([chunked.closure(c) for c in t.split(7)])
    assert torch.equal(whole, pieces)
    assert not torch.equal(whole, Blinks(seed=6, end=40.0).closure(t))


def test_explicit_times_and_strength():
    blinks = Blinks(times=[2.0, 0.5], strength=0.5)
    starts, _ = blinks.schedule(100.0)
    assert starts.tolist() == [0.5, 2.0]
    t = torch.arange(0, 4, FINE, dtype=torch.float64)
    sliders = blinks.sliders(t)
    blink = sliders[:, SLIDER_NAMES.index("blink")]
    assert torch.isclose(blink.min(), torch.tensor(-0.5 * BLINK_CLOSED_SLIDER, dtype=torch.float64),
                         atol=1e-3)
    assert (sliders[:, [i for i, n in enumerate(SLIDER_NAMES) if n != "blink"]] == 0).all()
    closed = t[blink < -0.25 * BLINK_CLOSED_SLIDER]
    assert ((closed > 0.5) & (closed < 0.75)).any() and ((closed > 2.0) & (closed < 2.25)).any()
    assert not ((closed > 0.75) & (closed < 2.0)).any()


def test_blinks_move_only_eye_and_brow_keypoints():
    edit = Edits((Blinks(seed=0),)).at(torch.arange(0, 20, 0.04))
    moving = edit.delta_exp.abs().amax(dim=(0, 2)).nonzero().flatten().tolist()
    assert moving == list(EYE_BROW_KEYPOINTS)
    assert edit.delta_rot.abs().max() == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(rate=0), "blink rate"), (dict(strength=3), "blink strength"), (dict(times=[-1.0]), ">= 0"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Blinks(**kwargs)


def test_edits_until_sets_the_clip_end_of_blinks():
    from joyvasa_core.edits import parse_timeline

    t = torch.arange(0, 6, 0.04, dtype=torch.float64)
    open_ended = Edits((Blinks(seed=3, rate=60), parse_timeline("smile=0.5")))
    bounded = open_ended.until(6.0)
    blink = SLIDER_NAMES.index("blink")
    assert open_ended.sliders(t)[t > 5.5, blink].abs().max() > 0
    assert bounded.sliders(t)[t > 5.5, blink].abs().max() == 0
    # the rest of the clip is unchanged, and so is the smile track
    early = t < 4.5
    assert torch.equal(bounded.sliders(t)[early], open_ended.sliders(t)[early])
