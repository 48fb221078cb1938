"""The talking head as a voice agent's avatar: adapters for agent frameworks.

Each adapter is a module of its own that imports its framework when it is itself
imported, never before (``import joyvasa_core`` imports none of them):

* :mod:`.pipecat`: ``JoyVASAVideoService``, a Pipecat processor between the TTS
  and the transport's output;
* :mod:`.livekit`: ``JoyVASAVideoGenerator``, a LiveKit Agents avatar
  ``VideoGenerator``, and :mod:`.livekit_worker`, the avatar participant's worker.

They install with ``pip install -r requirements-agents.txt`` (docs/live_mode.md,
"Voice agents"). What they share lives here: :func:`load_avatar` turns the
adapters' arguments into the values a live session takes, once, at the edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..driving import DrivingSettings
from ..live import LiveSession, LiveSettings
from ..pipeline import JoyVASAModels
from ..sources import PhotoSource

#: Rate (Hz) of the audio the LiveKit avatar publishes by default (its runner's audio source).
LIVEKIT_SAMPLE_RATE = 24000


@dataclass(frozen=True)
class Avatar:
    """What an adapter animates: loaded models, the photo's face and the live settings."""

    models: JoyVASAModels
    face: PhotoSource
    settings: LiveSettings = LiveSettings()
    driving: DrivingSettings = DrivingSettings()

    def session(self, sample_rate: int | None = None) -> LiveSession:
        """A new live session of this face (one per stream or conversation); ``sample_rate``:
        the speech's, when known (the idle frames before it carry silence at that rate)."""
        return LiveSession(self.models, self.face, self.settings, self.driving,
                           sample_rate=sample_rate)


def live_settings(**settings) -> LiveSettings:
    """Keyword settings -> :class:`LiveSettings`: the WebSocket ``start`` settings
    (``mode``, ``chunk``, ``lookahead``, ``steps``, ``seed``, ``cfg_scale``, ``smoothing``,
    ``pose_scale``, ``expression_scale``, ``expression``, ``blink``, ``eye_contact``),
    checked by the same parser; a bad one raises ValueError naming it."""
    from ..serve.protocol import parse_start

    return parse_start({"sample_rate": 16000, **settings})[1]


def load_avatar(models_dir: str | Path | None, image, *, device: str = "auto",
                precision: str = "auto", face_backend: str = "auto", face_index: int = 0,
                animal: bool = False, **settings) -> Avatar:
    """Load the models (``models_dir``: the ``pretrained_weights`` folder, None: the
    default one, missing files downloaded) and the face of ``image`` (a path or an
    ``[H, W, 3]`` uint8 array; ``animal``: the animal LivePortrait weights); ``settings``:
    as :func:`live_settings`."""
    from ..face.image_io import load_image
    from ..job import ModelOptions
    from ..pipeline import extract_face

    if image is None:
        raise ValueError("the avatar needs the photo to animate: pass image= (a path or an "
                         "[H, W, 3] uint8 array), or avatar= an Avatar already loaded")
    live = live_settings(**settings)                    # bad settings fail before the models load
    options = ModelOptions(models_dir=None if models_dir is None else Path(models_dir),
                           variant="animal" if animal else "human", device=device,
                           precision=precision)
    models = options.load()
    face = extract_face(models, load_image(image), face_backend=face_backend, face_index=face_index)
    return Avatar(models, face, live)
