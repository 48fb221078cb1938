"""Expression control: the edits stage between relative motion and stitching.

``sliders`` (the editor's twelve sliders -> keypoint offsets), ``timeline``
(constants and eased keyframes from text), ``blink`` (natural blinks) and
``track`` (their sum, evaluated per chunk of frames).
"""
from .blink import Blinks
from .sliders import SLIDER_NAMES, SLIDER_RANGES, KeypointEdit, slider_offsets
from .timeline import EASINGS, EditSyntaxError, Timeline, parse_timeline, parse_times
from .track import Edits, build_edits

__all__ = ["Blinks", "SLIDER_NAMES", "SLIDER_RANGES", "KeypointEdit", "slider_offsets", "EASINGS",
           "EditSyntaxError", "Timeline", "parse_timeline", "parse_times", "Edits",
           "build_edits"]
