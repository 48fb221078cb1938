"""Expression control: the edits stage between relative motion and stitching.

``sliders`` (the editor's twelve sliders -> keypoint offsets), ``timeline``
(constants and eased keyframes from text), ``blink`` (natural blinks),
``gaze`` (eye contact: pupils against the head's turns), ``track`` (their
sum, evaluated per chunk of frames), and two motion-side
stages: ``regions`` (strength per region) and ``mixing`` (pose from another
motion, expression from a reference face).
"""
from .blink import Blinks
from .gaze import EyeContact, with_eye_contact
from .mixing import ExpressionOffset, mix_motion
from .regions import REGION_NAMES, apply_strengths, parse_strengths
from .sliders import SLIDER_NAMES, SLIDER_RANGES, KeypointEdit, slider_offsets
from .timeline import EASINGS, EditSyntaxError, Timeline, parse_timeline, parse_times
from .track import Edits, build_edits

__all__ = ["Blinks", "EyeContact", "with_eye_contact", "ExpressionOffset", "mix_motion", "REGION_NAMES", "apply_strengths",
           "parse_strengths", "SLIDER_NAMES", "SLIDER_RANGES", "KeypointEdit",
           "slider_offsets", "EASINGS", "EditSyntaxError", "Timeline", "parse_timeline",
           "parse_times", "Edits", "build_edits"]
