"""Where every model file lives: the on-disk layouts, Hugging Face sources and downloads.

Models folder (``models_dir``) layout: the official ``pretrained_weights`` tree
exactly as the JoyVASA README builds it::

    liveportrait/base_models/{appearance_feature_extractor,motion_extractor,
                              warping_module,spade_generator}.pth
    liveportrait/retargeting_models/stitching_retargeting_module.pth
    liveportrait/landmark.onnx
    liveportrait_animals/base_models/*.pth            (variant "animal")
    insightface/models/buffalo_l/{det_10g,2d106det}.onnx
    JoyVASA/motion_generator/<any>.pt                  (motion_generator_hubert_chinese.pt)
    JoyVASA/motion_template/motion_template.pkl        (.safetensors / .json conversions accepted)
    chinese-hubert-base/                               (or TencentGameMate:chinese-hubert-base/)
    wav2vec2-base-960h/

LivePortrait weights may instead come from Kijai's safetensors conversion
(ComfyUI ``models/liveportrait/<name>.safetensors``, animal ones in ``animal/``):
pass that folder in ``extra_dirs``. Every searched folder is tried in order,
official name first, then Kijai's name.

The default models folder is ``$JOYVASA_MODELS_DIR`` if set, else
``~/.cache/joyvasa/pretrained_weights`` (see :func:`default_models_dir`).

The animal variant uses the *human* stitching/retargeting file, as the official
JoyVASA code does ("use human temporarily").
"""
from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

LIVEPORTRAIT_REPO = "KwaiVGI/LivePortrait"
KIJAI_REPO = "Kijai/LivePortrait_safetensors"
JOYVASA_REPO = "jdh-algo/JoyVASA"
#: Audio encoder name -> Hugging Face repo (folder name under the models dir = the name).
AUDIO_ENCODER_REPOS = {
    "chinese-hubert-base": "TencentGameMate/chinese-hubert-base",
    "wav2vec2-base-960h": "facebook/wav2vec2-base-960h",
}
#: Files ``transformers`` needs from an audio-encoder folder; weights: first found of the tuple.
_AUDIO_ENCODER_WEIGHTS = {
    "chinese-hubert-base": ("pytorch_model.bin", "model.safetensors"),
    "wav2vec2-base-960h": ("model.safetensors", "pytorch_model.bin"),
}

MODELS_DIR_ENV = "JOYVASA_MODELS_DIR"
#: Seconds the connectivity probe waits before the downloads are called off.
PROBE_TIMEOUT = 3.0
#: JoyVASA files, relative to the models folder (the repo is downloaded into ``JoyVASA/``).
MOTION_GENERATOR_DIR = "JoyVASA/motion_generator"
MOTION_GENERATOR_FILE = "motion_generator_hubert_chinese.pt"
MOTION_TEMPLATE_DIR = "JoyVASA/motion_template"
MOTION_TEMPLATE_FILE = "motion_template.pkl"
LIVEPORTRAIT_SLOTS = ("appearance_feature_extractor", "motion_extractor", "warping_module",
                      "spade_generator", "stitching_retargeting_module")
VARIANTS = ("human", "animal")


@dataclass(frozen=True)
class ModelFile:
    """One downloadable file: where it goes and where it comes from.

    ``relpath`` is its canonical place relative to a models folder (POSIX
    separators); it must end with ``repo_path``, its path inside the Hugging
    Face repo ``repo_id`` (the leading rest is the download's local subfolder).
    ``also`` lists other accepted places (globs allowed): Kijai's names,
    converted forms, alternative folder names.
    """

    slot: str
    relpath: str
    repo_id: str
    repo_path: str
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.relpath.endswith(self.repo_path):
            raise ValueError(f"{self.relpath!r} must end with {self.repo_path!r}")

    @property
    def local_subdir(self) -> str:
        """Folder (relative to the models folder) the repo is downloaded into."""
        return self.relpath[: len(self.relpath) - len(self.repo_path)].rstrip("/")

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/blob/main/{self.repo_path}"

    def candidates(self, roots: Iterable[Path]) -> Iterator[Path]:
        """Every existing file this entry accepts, in priority order."""
        for root in roots:
            for pattern in (self.relpath, *self.also):
                with contextlib.suppress(OSError):  # e.g. ':' in a folder name on Windows
                    if "*" in pattern:
                        yield from sorted((p for p in root.glob(pattern) if p.is_file()),
                                          reverse=True)
                    elif (root / pattern).is_file():
                        yield root / pattern

    def find(self, models_dir: str | Path, extra_dirs: Iterable[str | Path] = ()) -> Path | None:
        """The file to use: first hit in ``models_dir`` then each of ``extra_dirs``."""
        return next(self.candidates(_roots(models_dir, extra_dirs)), None)


class ModelFilesError(CheckpointError, FileNotFoundError):
    """Model files are missing (and could not be downloaded); lists each and how to get it."""

    def __init__(self, missing: Sequence[ModelFile], models_dir: str | Path,
                 extra_dirs: Iterable[str | Path] = (), reason: str = "") -> None:
        self.missing = list(missing)
        self.models_dir = Path(models_dir)
        self.listed = len(self.missing) > 1     # one line per file (errors.report)
        super().__init__(_missing_message(self.missing, self.models_dir, list(extra_dirs), reason))


def _roots(models_dir: str | Path, extra_dirs: Iterable[str | Path]) -> list[Path]:
    return [Path(models_dir).expanduser(), *(Path(d).expanduser() for d in extra_dirs)]


def default_models_dir() -> Path:
    """``$JOYVASA_MODELS_DIR`` if set, else ``~/.cache/joyvasa/pretrained_weights``."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "joyvasa" / "pretrained_weights"


# --------------------------------------------------------------------------- registry

def liveportrait_files(variant: str = "human", layout: str = "official") -> dict[str, ModelFile]:
    """The five LivePortrait files, slot -> entry.

    ``layout="official"`` gives the ``KwaiVGI/LivePortrait`` tree (Kijai's names
    accepted too); ``layout="kijai"`` gives ``Kijai/LivePortrait_safetensors``
    (relative to a ComfyUI ``models/liveportrait`` folder), e.g. to download those.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if layout not in ("official", "kijai"):
        raise ValueError(f"layout must be 'official' or 'kijai', got {layout!r}")
    out = {}
    for slot in LIVEPORTRAIT_SLOTS:
        animal = variant == "animal" and slot != "stitching_retargeting_module"
        kijai = f"{'animal/' if animal else ''}{slot}.safetensors"
        if slot == "stitching_retargeting_module":
            official = "liveportrait/retargeting_models/stitching_retargeting_module.pth"
        else:
            official = f"{'liveportrait_animals' if animal else 'liveportrait'}/base_models/{slot}.pth"
        if layout == "official":
            out[slot] = ModelFile(slot, official, LIVEPORTRAIT_REPO, official, also=(kijai,))
        else:
            out[slot] = ModelFile(slot, kijai, KIJAI_REPO, kijai, also=(official,))
    return out


def cropper_files() -> dict[str, ModelFile]:
    """Face detector, 106-point and 203-point landmark ONNX models (from KwaiVGI/LivePortrait)."""
    files = {
        "face_detector": "insightface/models/buffalo_l/det_10g.onnx",
        "face_landmarks_106": "insightface/models/buffalo_l/2d106det.onnx",
        "landmarks_203": "liveportrait/landmark.onnx",
    }
    out = {slot: ModelFile(slot, rel, LIVEPORTRAIT_REPO, rel) for slot, rel in files.items()}
    out["landmarks_203"] = ModelFile("landmarks_203", files["landmarks_203"], LIVEPORTRAIT_REPO,
                                     files["landmarks_203"], also=("landmark.onnx",))
    return out


def joyvasa_files() -> dict[str, ModelFile]:
    """Motion generator (any ``.pt`` in its folder accepted) and motion template."""
    gen = f"{MOTION_GENERATOR_DIR}/{MOTION_GENERATOR_FILE}"
    tpl = f"{MOTION_TEMPLATE_DIR}/{MOTION_TEMPLATE_FILE}"
    return {
        "motion_generator": ModelFile("motion_generator", gen, JOYVASA_REPO, gen.split("/", 1)[1],
                                      also=(f"{MOTION_GENERATOR_DIR}/*.pt",)),
        "motion_template": ModelFile("motion_template", tpl, JOYVASA_REPO, tpl.split("/", 1)[1],
                                     also=(f"{MOTION_TEMPLATE_DIR}/motion_template.safetensors",
                                           f"{MOTION_TEMPLATE_DIR}/motion_template.json")),
    }


def audio_encoder_files(name: str = "chinese-hubert-base") -> dict[str, ModelFile]:
    """The ``transformers`` files of an audio encoder folder (``config``, ``preprocessor``, ``weights``)."""
    if name not in AUDIO_ENCODER_REPOS:
        raise ValueError(f"audio encoder must be one of {tuple(AUDIO_ENCODER_REPOS)}, got {name!r}")
    repo = AUDIO_ENCODER_REPOS[name]
    folders = (name, repo.replace("/", ":"))  # the README's clone name on Linux/macOS
    weights, *other_weights = _AUDIO_ENCODER_WEIGHTS[name]
    out = {}
    for key, fname, alts in (("config", "config.json", ()),
                             ("preprocessor", "preprocessor_config.json", ()),
                             ("weights", weights, tuple(other_weights))):
        also = tuple(f"{folder}/{f}" for folder in folders for f in (fname, *alts)
                     if f"{folder}/{f}" != f"{name}/{fname}")
        out[key] = ModelFile(f"{name}/{key}", f"{name}/{fname}", repo, fname, also=also)
    return out


def required_files(variant: str = "human", audio_encoder: str = "chinese-hubert-base",
                   motion_generator: str | None = None, cropper: bool = False) -> list[ModelFile]:
    """The files a talking-head run loads, in the official layout.

    ``motion_generator``: a file name in ``MOTION_GENERATOR_DIR`` (default: any ``.pt``).
    ``cropper``: also the face detector / landmark ONNX models (:func:`cropper_files`;
    note the InsightFace models are licensed for non-commercial research only).
    """
    files = [*liveportrait_files(variant).values(), _motion_generator_file(motion_generator),
             joyvasa_files()["motion_template"], *audio_encoder_files(audio_encoder).values()]
    return files + list(cropper_files().values()) if cropper else files


def download_hint(slot: str, variant: str = "human") -> str:
    """How to get the file of ``slot``: its source repo/path and where it goes."""
    if slot in LIVEPORTRAIT_SLOTS:
        off = liveportrait_files(variant)[slot]
        kj = liveportrait_files(variant, layout="kijai")[slot]
        return (f"Download {off.repo_id} file {off.repo_path} to <models dir>/{off.relpath} "
                f"({off.url}), or {kj.repo_id} file {kj.repo_path} into ComfyUI/models/liveportrait.")
    registry = {**joyvasa_files(), **cropper_files(),
                **{mf.slot: mf for n in AUDIO_ENCODER_REPOS for mf in audio_encoder_files(n).values()}}
    mf = registry.get(slot)
    if mf is None:
        return "Replace it with the original download."
    return f"Download {mf.repo_id} file {mf.repo_path} to <models dir>/{mf.relpath} ({mf.url})."


# --------------------------------------------------------------------------- resolution

def resolve(files: Mapping[str, ModelFile], models_dir: str | Path,
            extra_dirs: Iterable[str | Path] = ()) -> dict[str, Path]:
    """slot -> path of every file; one :class:`ModelFilesError` lists all missing."""
    extra_dirs = list(extra_dirs)
    found = {slot: mf.find(models_dir, extra_dirs) for slot, mf in files.items()}
    missing = [files[slot] for slot, path in found.items() if path is None]
    if missing:
        raise ModelFilesError(missing, models_dir, extra_dirs)
    return {slot: path for slot, path in found.items() if path is not None}


def resolve_liveportrait(models_dir: str | Path, variant: str = "human",
                         extra_dirs: Iterable[str | Path] = ()) -> dict[str, Path]:
    """Paths of the five LivePortrait files (official ``.pth`` or Kijai ``.safetensors``)."""
    return resolve(liveportrait_files(variant), models_dir, extra_dirs)


def _motion_generator_file(name: str | None) -> ModelFile:
    mf = joyvasa_files()["motion_generator"]
    if name is None:
        return mf
    rel = f"{MOTION_GENERATOR_DIR}/{name}"
    return ModelFile(mf.slot, rel, mf.repo_id, rel.split("/", 1)[1])


def resolve_motion_generator(models_dir: str | Path, name: str | None = None,
                             extra_dirs: Iterable[str | Path] = ()) -> Path:
    """The motion-generator ``.pt``: ``MOTION_GENERATOR_DIR/name`` if ``name`` is given,
    else the official name, else the last ``*.pt`` (by name) in that folder."""
    mf = _motion_generator_file(name)
    return resolve({mf.slot: mf}, models_dir, extra_dirs)[mf.slot]


def resolve_motion_template(models_dir: str | Path, extra_dirs: Iterable[str | Path] = ()) -> Path:
    """The motion template (``.pkl``, or a converted ``.safetensors`` / ``.json``)."""
    mf = joyvasa_files()["motion_template"]
    return resolve({mf.slot: mf}, models_dir, extra_dirs)[mf.slot]


def resolve_audio_encoder(models_dir: str | Path, name: str = "chinese-hubert-base",
                      extra_dirs: Iterable[str | Path] = ()) -> Path:
    """The ``transformers`` folder of audio encoder ``name`` (all its files in one folder)."""
    paths = resolve(audio_encoder_files(name), models_dir, extra_dirs)
    folder = paths["config"].parent
    if any(p.parent != folder for p in paths.values()):
        raise CheckpointError(f"{name}: config.json, preprocessor_config.json and the weights "
                              f"must be in one folder, found {sorted(map(str, paths.values()))}.\n"
                              f"Fix: put them all in {Path(models_dir) / name}.")
    return folder


def missing_files(models_dir: str | Path, files: Iterable[ModelFile] | None = None,
                  extra_dirs: Iterable[str | Path] = ()) -> list[ModelFile]:
    """Entries of ``files`` (default :func:`required_files`) found in none of the folders."""
    extra_dirs = list(extra_dirs)
    files = required_files() if files is None else files
    return [mf for mf in files if mf.find(models_dir, extra_dirs) is None]


def _missing_message(missing: Sequence[ModelFile], models_dir: Path, extra_dirs: list,
                     reason: str) -> str:
    head = f"{len(missing)} model file(s) missing" + (f" and {reason}" if reason else "") + ":"
    lines = [head]
    for mf in missing:
        alt = f" (or {', '.join(mf.also)})" if mf.also else ""
        lines.append(f"  - {mf.slot}: expected {models_dir / mf.relpath}{alt}; "
                     f"source {mf.repo_id} {mf.repo_path}")
    if extra_dirs:
        lines.append("  also searched: " + ", ".join(str(d) for d in extra_dirs))
    lines.append("Fix: download them into that folder, e.g.")
    groups: dict[tuple[str, str], list[str]] = {}
    for mf in missing:
        groups.setdefault((mf.repo_id, mf.local_subdir), []).append(mf.repo_path)
    for (repo, subdir), paths in groups.items():
        target = models_dir / subdir if subdir else models_dir
        lines.append(f"  huggingface-cli download {repo} {' '.join(paths)} --local-dir {target}")
    lines.append("or let JoyVASA download them on first use while online.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- downloads

def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (now or when huggingface_hub was imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_unreachable(timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the Hugging Face endpoint cannot be reached, or None when a TCP connection opens.

    One connection attempt (to the proxy when one is configured) of at most
    ``timeout`` seconds, so a machine without network fails in a moment instead of
    after huggingface_hub's retries with backoff on every file. The endpoint is
    ``$HF_ENDPOINT`` (default https://huggingface.co).
    """
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    url = urllib.parse.urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    else:
        proxy, target = None, url
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        via = f" (through the proxy {proxy})" if proxy else ""
        return f"{endpoint}{via} cannot be reached: {exc.strerror or exc}"
    return None


def _short(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` cut to ``limit`` characters (a hub error's text
    can run to thousands)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import (are_progress_bars_disabled, disable_progress_bars,
                                       enable_progress_bars)

    was_disabled = are_progress_bars_disabled()
    if not enabled and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def download_missing(models_dir: str | Path, files: Iterable[ModelFile] | None = None,
                     progress: bool = True, extra_dirs: Iterable[str | Path] = (),
                     on_file: Callable[[int, int, ModelFile], None] | None = None
                     ) -> dict[str, Path]:
    """Download every entry of ``files`` (default :func:`required_files`) found nowhere.

    Files go to ``models_dir / relpath`` via ``huggingface_hub.hf_hub_download``.
    ``progress`` shows huggingface_hub's progress bars; ``on_file(done, total, file)``
    is called after each file (for a UI progress bar). Returns slot -> path of the
    downloaded files. Offline (``HF_HUB_OFFLINE=1``), when the endpoint cannot be
    reached (:func:`hub_unreachable`, one probe of a few seconds) or on any download failure,
    raises one :class:`ModelFilesError` listing every file still missing
    and the folder to put it in.
    """
    models_dir = Path(models_dir).expanduser()
    extra_dirs = list(extra_dirs)
    todo = missing_files(models_dir, files, extra_dirs)
    if not todo:
        return {}
    if hub_offline():
        raise ModelFilesError(todo, models_dir, extra_dirs,
                                     "cannot be downloaded because HF_HUB_OFFLINE is set")
    unreachable = hub_unreachable()
    if unreachable:
        raise ModelFilesError(todo, models_dir, extra_dirs,
                              f"cannot be downloaded: {unreachable}")
    from huggingface_hub import hf_hub_download

    done: dict[str, Path] = {}
    with _progress_bars(progress):
        for i, mf in enumerate(todo):
            local_dir = models_dir / mf.local_subdir if mf.local_subdir else models_dir
            try:
                hf_hub_download(mf.repo_id, mf.repo_path, local_dir=local_dir)
            except Exception as exc:  # offline, HTTP, disk: report everything still missing
                raise ModelFilesError(
                    todo[i:], models_dir, extra_dirs,
                    f"could not be downloaded ({_short(exc)})") from exc
            path = mf.find(models_dir, extra_dirs)
            if path is None:
                raise ModelFilesError(todo[i:], models_dir, extra_dirs,
                                             f"{mf.repo_path} did not arrive in {local_dir}")
            done[mf.slot] = path
            if on_file is not None:
                on_file(i + 1, len(todo), mf)
    return done


def ensure_files(models_dir: str | Path, variant: str = "human",
                 audio_encoder: str = "chinese-hubert-base", motion_generator: str | None = None,
                 download: bool = True, extra_liveportrait_dirs: Iterable[str | Path] = (),
                 cropper: bool = False, progress: bool = True,
                 on_file: Callable[[int, int, ModelFile], None] | None = None) -> None:
    """Make sure every file of :func:`required_files` is present.

    Missing ones are downloaded when ``download`` (see :func:`download_missing`);
    otherwise, or when that fails, one :class:`ModelFilesError` lists them all.
    LivePortrait files are also looked for in ``extra_liveportrait_dirs`` (Kijai's folder).
    """
    files = required_files(variant, audio_encoder, motion_generator, cropper)
    extra = list(extra_liveportrait_dirs)
    if download:
        download_missing(models_dir, files, progress, extra, on_file)
        return
    missing = missing_files(models_dir, files, extra)
    if missing:
        raise ModelFilesError(missing, Path(models_dir).expanduser(), extra,
                              "automatic download is off")
