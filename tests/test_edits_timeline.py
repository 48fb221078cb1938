"""Edit text: constants, keyframes, easing and errors that point at the spot (joyvasa_core.edits.timeline)."""
from __future__ import annotations

import pytest
import torch

from joyvasa_core.edits.sliders import SLIDER_NAMES
from joyvasa_core.edits.timeline import EASINGS, EditSyntaxError, ease, parse_timeline, parse_times

SMILE, YAW, BLINK = (SLIDER_NAMES.index(n) for n in ("smile", "rotate_yaw", "blink"))


def at(text: str, *times: float) -> torch.Tensor:
    return parse_timeline(text).sliders(torch.tensor(times, dtype=torch.float64))


def test_constants():
    values = at("smile=0.8, rotate_yaw=5", 0.0, 3.7, 100.0)
    expected = torch.zeros(3, 12, dtype=torch.float64)
    expected[:, SMILE], expected[:, YAW] = 0.8, 5.0
    assert torch.equal(values, expected)
    assert torch.equal(at("", 1.0), torch.zeros(1, 12, dtype=torch.float64))


def test_keyframes_with_every_easing():
    u = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    expected = {"linear": u, "ease-in": u ** 2, "ease-out": 1 - (1 - u) ** 2,
                "ease-in-out": 3 * u ** 2 - 2 * u ** 3, "hold": torch.zeros(3, dtype=torch.float64)}
    for name in EASINGS:
        text = f"smile: 1s=0.2, 3s=1.0 {name}" if name != "linear" else "smile: 1s=0.2, 3s=1.0"
        values = at(text, 0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0)[:, SMILE]
        # before the first key: its value; after the last: the last value; at keys: exact
        assert values[0] == values[1] == 0.2 and values[5] == values[6] == 1.0, name
        torch.testing.assert_close(values[2:5], 0.2 + 0.8 * expected[name], rtol=0, atol=1e-12)


def test_several_statements_units_and_lines():
    text = "smile: 0s=0, 500ms=1 ease-out,\n  2s=1, 2.5s=0 ease-in\nblink: 1=0, 1.2s=-12; rotate_yaw=-3"
    values = at(text, 0.25, 1.0, 1.1, 1.2, 2.25)
    torch.testing.assert_close(values[:, SMILE], torch.tensor([0.75, 1, 1, 1, 0.75], dtype=torch.float64))
    torch.testing.assert_close(values[:, BLINK], torch.tensor([0, 0, -6, -12, -12], dtype=torch.float64))
    assert (values[:, YAW] == -3).all()


def test_ease_is_monotone_and_ends_at_zero_and_one():
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    for i, name in enumerate(EASINGS):
        e = ease(u, torch.full_like(u, i, dtype=torch.long))
        assert e[0] == 0 and e[-1] == 1, name
        assert (e.diff() >= 0).all(), name


@pytest.mark.parametrize("text, column, message", [
    ("smiel=0.8", 1, "unknown slider 'smiel'"),
    ("smile=0.8, rotate_yaw=x", 23, "expected a value for 'rotate_yaw'"),
    ("smile=2", 7, "outside the range -0.3..1.3"),
    ("smile: 1s=0, 0.5s=1", 14, "key times must increase"),
    ("smile: 0s=0, 1s=1 bounce", 19, "unknown easing 'bounce'"),
    ("smile=0.3, smile=0.2", 12, "given twice"),
    ("smile=0.3 blink=2", 11, "expected ',' ';' or the end"),
    ("smile: 1x=3", 8, "plain number with s or ms"),
    ("smile=0.3, blink: 0s=1", 17, "'=' after 'blink'"),
])
def test_errors_point_at_the_spot(text, column, message):
    with pytest.raises(EditSyntaxError) as info:
        parse_timeline(text)
    assert info.value.column == column
    first, line, caret = str(info.value).split("\n")
    assert message in first and f"column {column}" in first
    assert line == "  " + text and caret == "  " + " " * (column - 1) + "^"


def test_error_on_a_later_line_names_it():
    with pytest.raises(EditSyntaxError, match=r"line 2, column 17") as info:
        parse_timeline("smile=0.2\nblink: 0s=0, 1s=-30")
    assert str(info.value).splitlines()[1] == "  blink: 0s=0, 1s=-30"


def test_parse_times():
    assert parse_times("1.2, 3.5s, 4000ms") == [1.2, 3.5, 4.0]
    with pytest.raises(EditSyntaxError, match="column 5"):
        parse_times("1.2 x")
