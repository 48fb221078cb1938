"""Record the reference data of ``tests/test_behaviour_lock.py`` (issue 19, item 8).

The data in ``tests/data/behaviour/`` was made with this script on commit ca7989f
(main before the restructure of issue 19), on CPU, by running the headless
command (``joyvasa_core.cli.main`` with an argv, nothing else of the library)
for the configurations in :data:`CONFIGS`, with the fast tiny models of
``helpers_pipeline.write_fast_pretrained_weights``, two torch threads and fixed
seeds. The test reruns the same argv and compares. The data is worth something
only because it predates the change: rerun this script only to re-record on
purpose (a deliberate change of behaviour, or another platform, see below), and
say so in the commit. From the repository root::

    python3 tests/record_behaviour.py --keep-inputs   # rewrite the outputs from the stored inputs
    python3 tests/record_behaviour.py --check         # run into a temporary folder and compare
    python3 tests/record_behaviour.py                 # also remake the inputs (new clip.mp4 bytes)

``--check`` runs what the test runs and lists every difference; run several
times on ca7989f it reproduced the data bit for bit.

Frames are the ones the command hands to the H.264 encoder (:func:`encoder_input`),
not the decoded MP4, which is not reproducible; the MP4 is checked to decode to
them within the compression error. Exact floats depend on the platform (CPU
kernels, torch, OpenCV, FFmpeg): the metadata records :func:`numerics_signature`,
and the test compares within float rounding only on the same platform.

Files (``tests/data/behaviour/README.md`` says the same for readers):

* ``inputs/``: what the runs read. ``photo.png`` (skimage's astronaut, 49x57,
  odd size), ``reference.png`` (skimage's cameraman, for --expression-from),
  ``speech_short.wav`` (0.5 s) and ``speech_long.wav`` (1.6 s) of
  ``helpers_pipeline.speech_like`` at 16 kHz int16, ``clip.mp4`` (the
  astronaut's head drifting over an 92x80 canvas at 12 fps, frame 2 a face-free
  cutaway; H.264 crf 0), ``pose_motion.safetensors`` (the --save-motion file
  of configuration ``a_plain``, fed to ``--pose-from``). Stored rather than
  regenerated, so that a new numpy, OpenCV or x264 cannot change the inputs.
* ``<config>.safetensors``: ``x_d`` / ``x_s`` (the --save-keypoints file),
  ``motion.<name>`` (each tensor of the --save-motion file) and ``frames``
  (uint8 RGB [T, H, W, 3], the encoder's input), as the configuration writes
  them; metadata: ``argv`` (``{in}`` / ``{out}`` / ``{models}`` for the
  folders), ``commit``, ``platform``, ``models_fingerprint`` (the tiny models'
  values), ``motion_metadata``, and for videos the MP4's ``fps``,
  ``audio_rate`` and ``audio_samples`` (the decoded AAC track's length).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:           # run as a script: the helpers live beside it
    sys.path.insert(0, str(TESTS))
if str(TESTS.parent) not in sys.path:
    sys.path.insert(0, str(TESTS.parent))

DATA = TESTS / "data" / "behaviour"
INPUTS = DATA / "inputs"
RECORDED_ON = "ca7989f"
#: Largest mean |decoded MP4 - encoder input| (levels) of any frame: H.264 at crf 18 with
#: 4:2:0 chroma on the tiny models' noise-like faces loses 8 to 16 levels on average.
MP4_ERROR = 24.0
#: The command's output files, as each configuration names them ({out}/...).
KEYPOINTS, MOTION, VIDEO = "keypoints.safetensors", "motion.safetensors", "video.mp4"


@dataclass(frozen=True)
class Config:
    """One run of the headless command: its argv (placeholders ``{in}``, ``{out}``,
    ``{models}``) and which output files it writes."""

    name: str
    argv: tuple[str, ...]
    what: str

    def args(self, inputs: Path, out: Path, models: Path) -> list[str]:
        return [a.format(**{"in": inputs, "out": out, "models": models}) for a in self.argv]

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(f for f in (KEYPOINTS, MOTION, VIDEO) if "{out}/" + f in self.argv)


COMMON = ("--device", "cpu", "--models-dir", "{models}")
PHOTO = ("--image", "{in}/photo.png")
SHORT, LONG = ("--audio", "{in}/speech_short.wav"), ("--audio", "{in}/speech_long.wav")
DDIM = ("--sampler", "ddim", "--steps", "2")
SAVE_KP = ("--save-keypoints", "{out}/" + KEYPOINTS)
SAVE_MOTION = ("--save-motion", "{out}/" + MOTION)
OUTPUT = ("--output", "{out}/" + VIDEO)
#: b's motion options (issue 19 item 4 makes these stream stages). --pose-scale shows in the
#: saved motion only: --pose-from then replaces the head pose it scaled.
MOTION_OPTIONS = ("--strength", "yaw=0.5, lips=1.2", "--pose-from", "{in}/pose_motion.safetensors",
                  "--pose-eyes", "--expression", "smile=0.6, rotate_yaw=4", "--blink", "auto",
                  "--eye-contact", "1", "--pose-scale", "0.7", "--expression-scale", "1.3")

CONFIGS: tuple[Config, ...] = (
    Config("a_plain",
           (*PHOTO, *SHORT, *COMMON, "--face-backend", "mtcnn", "--sampler", "ddpm", "--seed", "1",
            *SAVE_KP, *SAVE_MOTION, *OUTPUT),
           "photo, official sampler (ddpm), MTCNN detection, default driving; keypoints, motion "
           "and frames (the motion is collected whole because of --save-keypoints)"),
    Config("b_motion_options",
           (*PHOTO, *SHORT, *COMMON, "--face-backend", "mtcnn", *DDIM, "--seed", "2",
            *MOTION_OPTIONS, "--batch-size", "4", *SAVE_KP, *SAVE_MOTION, *OUTPUT),
           "photo with --strength, --pose-from a saved motion, --pose-eyes, --expression, "
           "--blink auto, --eye-contact, --pose-scale/--expression-scale, rendered 4 frames "
           "at a time; keypoints, motion and frames (2 motion windows)"),
    Config("b_motion_options_long",
           (*PHOTO, *LONG, *COMMON, "--face-backend", "mtcnn", "--sampler", "ddpm", "--seed", "2",
            *MOTION_OPTIONS, "--blink-rate", "40", *SAVE_KP, *SAVE_MOTION),
           "b's options on 1.6 s of speech (5 motion windows, the 15-frame saved pose "
           "ping-ponged, blinks), official sampler; keypoints-only mode (nothing rendered)"),
    Config("c_expression_from",
           (*PHOTO, *LONG, *COMMON, "--face-backend", "none", *DDIM, "--seed", "3",
            "--expression-from", "{in}/reference.png", "--expression-from-strength", "0.7",
            "--animation-region", "exp", "--driving-option", "pose-friendly", *SAVE_KP),
           "photo (centred crop, no detection) with --expression-from another photo, "
           "--animation-region exp, --driving-option pose-friendly; keypoints-only mode"),
    Config("d_dubbing",
           ("--video", "{in}/clip.mp4", *SHORT, *COMMON, "--face-backend", "mtcnn", *DDIM,
            "--seed", "4", "--region", "lip", *SAVE_MOTION, *OUTPUT),
           "video dubbing, --region lip: a 4-frame 12 fps clip with a cutaway, tracked with "
           "MTCNN, ping-ponged to the speech; motion and frames"),
)
#: Variants that must reproduce another configuration's data exactly: the plain render
#: without --save-keypoints streams the motion window by window instead of collecting it.
SAME_AS: dict[str, Config] = {
    "a_plain": Config("a_plain_streamed",
                      (*PHOTO, *SHORT, *COMMON, "--face-backend", "mtcnn", "--sampler", "ddpm",
                       "--seed", "1", *SAVE_MOTION, *OUTPUT),
                      "a_plain without --save-keypoints: the motion streams window by "
                      "window; same motion and frames"),
}


# ----------------------------------------------------------------------------- inputs

def make_inputs(folder: Path) -> Path:
    """Write the input files (only the recording does this; the test reads the stored ones)."""
    import cv2
    import skimage.data
    from PIL import Image

    import helpers_cli
    import helpers_pipeline as hp
    import helpers_video as hv

    folder.mkdir(parents=True, exist_ok=True)
    face = skimage.data.astronaut()[28:204, 146:300]              # [176, 154]: the head
    Image.fromarray(cv2.resize(face, (49, 57), interpolation=cv2.INTER_AREA)).save(
        folder / "photo.png")                                          # face box about 28x36 px
    cameraman = skimage.data.camera()[40:300, 150:410]                # [260, 260] grey
    Image.fromarray(np.repeat(cv2.resize(cameraman, (64, 64), interpolation=cv2.INTER_AREA)
                              [..., None], 3, axis=2)).save(folder / "reference.png")
    for name, seconds, seed in (("speech_short.wav", 0.5, 0), ("speech_long.wav", 1.6, 1)):
        helpers_cli.write_wav(folder / name,
                              (hp.speech_like(seconds, seed=seed) * 32767).astype(np.int16))
    # as helpers_video.drifting_astronaut, small: the head (64x56) drifting right over an
    # 80x92 grey canvas, frame 2 a face-free cutaway, at the bottom a bar as long as the
    # frame number
    head = cv2.resize(face, (56, 64), interpolation=cv2.INTER_AREA)
    frames = np.full((4, 80, 92, 3), 90, np.uint8)
    for i in range(4):
        if i == 2:
            frames[i, :, :, 1] = 140
        else:
            frames[i, 6:70, 10 + 5 * i:66 + 5 * i] = head
        frames[i, -4:, :6 * (i + 1)] = 255
    hv.write_clip(folder / "clip.mp4", frames, fps=12)
    return folder


# ----------------------------------------------------------------------------- running

def write_models(folder: Path) -> Path:
    """The fast tiny models in the official file layout (``helpers_pipeline``)."""
    import helpers_pipeline as hp

    return hp.write_fast_pretrained_weights(folder / "pretrained_weights")


def models_fingerprint(models: Path) -> str:
    """SHA-256 over the model folder's tensors (values, not file bytes) and other files."""
    from safetensors.torch import load_file

    digest = hashlib.sha256()

    def feed(value, key: str) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{key}:{t.dtype}:{list(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, np.ndarray):
            digest.update(f"{key}:{value.dtype}:{list(value.shape)}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                feed(value[k], f"{key}/{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                feed(v, f"{key}/{i}")
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            feed(vars(value), key)
        else:
            digest.update(f"{key}={value!r}".encode())

    for path in sorted(p for p in models.rglob("*") if p.is_file()):
        key = path.relative_to(models).as_posix()
        if path.suffix == ".safetensors":
            feed(load_file(str(path)), key)
        elif path.suffix in (".pth", ".pt"):
            feed(torch.load(path, map_location="cpu", weights_only=False), key)
        elif path.suffix == ".pkl":
            import pickle

            feed(pickle.loads(path.read_bytes()), key)
        else:
            digest.update(key.encode() + path.read_bytes())
    return digest.hexdigest()


def numerics_signature() -> dict[str, str]:
    """What the exact floats and H.264 bytes depend on besides the code: the CPU (its
    SIMD kernels and cache-sized blocking in oneDNN, MKL and OpenCV) and the versions of
    torch, OpenCV and PyAV's bundled FFmpeg/x264."""
    import platform

    import av
    import cv2

    cpu = "unknown"
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text().splitlines()
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in info)
                  if k.strip() in ("model name", "cache size")}
        cpu = f"{fields.get('model name', '?')}, cache {fields.get('cache size', '?')}"
    return {"machine": platform.machine(), "cpu": cpu,
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "opencv": cv2.__version__, "pyav": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions["libavcodec"]))}


@contextlib.contextmanager
def encoder_input(frames: list[np.ndarray]):
    """Append to ``frames`` each video frame the command hands to the H.264 encoder, as
    uint8 RGB [H, W, 3], by wrapping ``av.open`` (PyAV's API, not the library's); the
    frames still go on to the encoder unchanged.

    Why the encoder's input and not the decoded MP4: the MP4 is not reproducible. PyAV
    leaves the encoder's thread count automatic, and the same 15 frames written 60 times
    in one process came out as two different H.264 streams (about one in ten, decoding up
    to 39 levels apart; single-threaded libx264 too, when PyAV converts RGB to YUV inside
    ``encode``). And one pixel one level off changes the whole stream (rate control), so
    a tolerance on decoded frames means nothing. The encoder's input is exactly the
    rendered, pasted-back frames, and the MP4 is checked to decode to them (within the
    compression error) separately.
    """
    import av

    original = av.open

    class Stream:
        """A video stream that keeps a copy of each frame it encodes."""

        def __init__(self, stream):
            object.__setattr__(self, "_stream", stream)

        def __getattr__(self, name):
            return getattr(self._stream, name)

        def __setattr__(self, name, value):
            setattr(self._stream, name, value)

        def encode(self, frame=None):
            if frame is not None:
                frames.append(frame.to_ndarray(format="rgb24").copy())
            return self._stream.encode(frame)

    class Output:
        """A write container whose video streams are :class:`Stream`."""

        def __init__(self, container):
            self._container = container

        def __getattr__(self, name):
            return getattr(self._container, name)

        def __enter__(self):
            self._container.__enter__()
            return self

        def __exit__(self, *exc):
            return self._container.__exit__(*exc)

        def add_stream(self, *args, **kwargs):
            stream = self._container.add_stream(*args, **kwargs)
            return Stream(stream) if stream.type == "video" else stream

    def open_(file, mode="r", *args, **kwargs):
        container = original(file, mode, *args, **kwargs)
        return Output(container) if mode == "w" else container

    av.open = open_
    try:
        yield frames
    finally:
        av.open = original


@contextlib.contextmanager
def two_torch_threads():
    """Two intra-op threads (the recording's): a reduction split differently rounds differently."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_cli(argv: list[str]) -> list[np.ndarray]:
    """``joyvasa_core.cli.main(argv)`` with the fast models' build and two torch threads;
    returns the frames it handed to the H.264 encoder (:func:`encoder_input`). Raises on a
    non-zero exit status, with the command's stderr."""
    import helpers_pipeline as hp
    from joyvasa_core import cli

    os.environ["HF_HUB_OFFLINE"] = "1"
    err = io.StringIO()
    with hp.fast_liveportrait_build(), two_torch_threads(), encoder_input([]) as frames, \
            contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"joyvasa_core {' '.join(argv)} exited {code}: {err.getvalue()}")
    return frames


def decode_video(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    """The MP4's frames, uint8 [T, H, W, 3] RGB, and its stream facts (fps, audio rate
    and length)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        fps = str(stream.average_rate)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(audio))
        rate = audio.rate
    return torch.from_numpy(frames), {"fps": fps, "audio_rate": str(rate),
                                      "audio_samples": str(samples)}


@dataclass
class Result:
    """What one configuration wrote: ``tensors`` (``x_d``, ``x_s``, ``motion.*`` and
    ``frames``, the encoder's input), ``facts`` (strings: the MP4's fps and audio, the
    motion file's metadata) and ``decoded`` (the MP4's frames; not recorded)."""

    tensors: dict[str, torch.Tensor]
    facts: dict[str, str]
    decoded: torch.Tensor | None


#: What the comparison adds to every recorded argv: the silence gate came after the
#: recording (on by default since), and off it leaves the motion exactly as generated.
LATER_DEFAULTS_OFF = ("--silence-gate", "off")


def run_config(config: Config, inputs: Path, out: Path, models: Path,
               extra: tuple[str, ...] = ()) -> Result:
    """Run one configuration (plus ``extra`` options) into ``out`` and read what it wrote."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    out.mkdir(parents=True, exist_ok=True)
    encoded = run_cli([*config.args(inputs, out, models), *extra])
    tensors: dict[str, torch.Tensor] = {}
    facts: dict[str, str] = {}
    decoded = None
    if KEYPOINTS in config.writes:
        tensors.update(load_file(str(out / KEYPOINTS)))
    if MOTION in config.writes:
        tensors.update({f"motion.{k}": v for k, v in load_file(str(out / MOTION)).items()})
        with safe_open(str(out / MOTION), framework="pt") as f:
            facts["motion_metadata"] = json.dumps(f.metadata(), sort_keys=True)
    if VIDEO in config.writes:
        tensors["frames"] = torch.from_numpy(np.stack(encoded))
        decoded, video_facts = decode_video(out / VIDEO)
        facts.update(video_facts)
    elif encoded:
        raise RuntimeError(f"{config.name} encoded {len(encoded)} frames but writes no video")
    return Result(tensors, facts, decoded)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=TESTS, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(data: Path, work: Path, *, new_inputs: bool) -> None:
    """Run every configuration and write ``data`` (inputs too when ``new_inputs``)."""
    from safetensors.torch import save_file

    inputs = data / "inputs"
    if new_inputs:
        make_inputs(inputs)
    models = write_models(work)
    fingerprint = models_fingerprint(models)
    commit = _commit()
    platform = json.dumps(numerics_signature(), sort_keys=True)
    for config in CONFIGS:
        result = run_config(config, inputs, work / config.name, models)
        tensors, meta = result.tensors, result.facts
        if config.name == "a_plain" and new_inputs:   # b's --pose-from reads this file
            shutil.copyfile(work / config.name / MOTION, inputs / "pose_motion.safetensors")
        save_file(tensors, str(data / f"{config.name}.safetensors"),
                  metadata={"argv": json.dumps(list(config.argv)), "commit": commit,
                            "models_fingerprint": fingerprint, "platform": platform, **meta})
        print(f"{config.name}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items()))


def compare(data: Path, work: Path) -> list[str]:
    """Rerun every configuration (and the variants) and list how they differ from ``data``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    models = write_models(work)
    problems = []
    for config in (*CONFIGS, *SAME_AS.values()):
        ref_name = next((k for k, v in SAME_AS.items() if v is config), config.name)
        expected = load_file(str(data / f"{ref_name}.safetensors"))
        with safe_open(str(data / f"{ref_name}.safetensors"), framework="pt") as f:
            expected_meta = f.metadata()
        result = run_config(config, data / "inputs", work / config.name, models,
                            LATER_DEFAULTS_OFF)
        got, meta = result.tensors, result.facts
        for key, value in got.items():
            ref = expected[key]
            if value.shape != ref.shape or not torch.equal(value, ref):
                diff = ((value.double() - ref.double()).abs().max().item()
                        if value.shape == ref.shape else "shape")
                problems.append(f"{config.name} {key}: max |diff| {diff}")
        if result.decoded is not None:
            error = (result.decoded.double() - got["frames"].double()).abs()
            if (result.decoded.shape != got["frames"].shape
                    or error.mean(dim=(1, 2, 3)).max() > MP4_ERROR):
                problems.append(f"{config.name}: the MP4 does not decode to the frames encoded "
                                f"({list(result.decoded.shape)}, mean |error| {error.mean():.2f})")
            print(f"{config.name}: MP4 vs encoder input, mean |error| {error.mean():.2f}, "
                  f"worst frame {error.mean(dim=(1, 2, 3)).max():.2f}")
        for key, value in meta.items():
            if expected_meta.get(key) != value:
                problems.append(f"{config.name} {key}: {value} != {expected_meta.get(key)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="record into a temporary folder and compare with the stored data")
    parser.add_argument("--keep-inputs", action="store_true",
                        help="re-record the outputs from the stored inputs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.check:
            problems = compare(DATA, Path(tmp))
            print("\n".join(problems) or "all configurations reproduce the stored data exactly")
            return 1 if problems else 0
        DATA.mkdir(parents=True, exist_ok=True)
        record(DATA, Path(tmp), new_inputs=not args.keep_inputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
